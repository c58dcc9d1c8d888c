// Package bwrap builds the bubblewrap command line of a cell's sandbox and
// runs cells in it (the plain-bwrap backend: namespaces, no cgroup limits).
//
// The sandbox sees an empty, read-only root holding only the cell's binary
// (read-only, at its host path), the session dir (read-write, at its host
// path), a private /tmp, a fresh /proc of its own pid namespace and a minimal
// /dev. It runs in new user, pid, ipc, uts, cgroup and network namespaces
// (the network is shared only when the spec grants it), with every capability
// dropped, and dies with bwrap.
package bwrap
