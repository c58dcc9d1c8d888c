//go:build vmlab

// Package vm proves, inside the VM lab (test/vmlab: systemd user manager,
// cgroup v2 with delegated controllers, journald), what the development
// machines cannot show: cells in transient scopes with enforced limits, the
// socket-activated root, and the journal audit. The binaries under test come
// from $CELL_VMLAB_EXTRA/bin (make integration-vm puts them there).
package vm
