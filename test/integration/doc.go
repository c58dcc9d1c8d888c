// Package integration proves Cell end to end against the real components of
// the machine it runs on: the cellroot binary, the SDK, the example app and
// bubblewrap. The binaries come from $CELL_TEST_BIN (test/run-tests.sh builds
// them); a missing binary or component fails the tests, it never skips them.
package integration
