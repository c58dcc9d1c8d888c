// Package rundir lays out the per-user runtime directory of Cell: where it is,
// that it is safe to use, how session dirs and the per-cell socket and lock
// files inside them are named, and the file locks that mark them live.
package rundir
