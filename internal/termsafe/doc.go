// Package termsafe makes text a cell chose safe to show on the owner's
// terminal and to put in a log: control characters other than tab become
// visible escapes, invalid UTF-8 becomes U+FFFD, and overlong lines are cut
// with a marker, so that no cell can move the cursor, set the window title
// or forge a line of the root's own.
package termsafe
