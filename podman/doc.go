// Package podman runs cells as rootless Podman containers through the
// Podman v5 API bindings, against the user's own Podman service (its
// socket-activated podman.socket) or one the backend starts and stops itself.
//
// Every container runs the cell's static binary, bind-mounted read-only into
// an empty per-cell root directory, with no network unless granted, a
// read-only root and a private /tmp, no capabilities, no new privileges, the
// user's own uid (keep-id), the session dir as its only writable mount, and
// the labels [LabelSession], [LabelCell] and [LabelBase], by which teardown
// and [Launcher.CollectDead] find it. Containers without those labels, the
// user's own, are never touched.
package podman
