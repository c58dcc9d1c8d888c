// Package scope is the systemd scope backend: each cell's bubblewrap sandbox
// runs in a transient scope of the user's systemd manager, created over D-Bus
// with the cell's memory, CPU and task limits, inside one slice per session.
//
// The sandbox must be in its scope before it runs anything, or a process it
// forks early would stay in the root's cgroup, outside the limits. So the
// root starts a gate (cellroot itself, see RunGate) that waits on a pipe, puts
// the gate's pid in the new scope, waits for systemd to finish the job, and
// only then lets the gate exec bubblewrap.
//
// Scope lifetime follows the root: the gate, and bubblewrap after it, carry a
// death signal from the root (and bubblewrap --die-with-parent), so when the
// root dies, even by SIGKILL, the sandbox dies, the scope empties and systemd
// collects it. At session end the root stops the session's slice, which ends
// any scope left.
package scope
