// Package process runs a cell as a plain child process and owns the child
// lifecycle every local backend shares: start in a fresh session and process
// group with a death signal tied to a dedicated OS thread, reap exactly once,
// and stop the whole group gracefully, then by force.
//
// The process backend itself is no sandbox: the allowlist names it only for
// trusted development cells. The bwrap backend starts bubblewrap through
// [Launcher.Start] so both share one lifecycle.
package process
