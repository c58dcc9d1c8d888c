// Package bench measures how long a cell takes from the spawn request to
// its socket accepting connections, through the session root on each
// sandboxing backend, beside the bare tool (podman run, bwrap) starting the
// same binary in the same run, so that the root's overhead reads as a ratio.
// `make bench` runs it as an unprivileged user and prints the ratios.
package bench
