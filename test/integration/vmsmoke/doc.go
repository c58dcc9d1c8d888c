//go:build vmlab

// Package vmsmoke proves the integration lab itself (test/vmlab): it runs
// inside the lab's Debian VM as the lingering unprivileged user and checks
// that every facility the later integration tests rely on is really there
// and really works: cgroup v2 with cpu, memory and pids delegated to the
// user, transient scopes created over D-Bus on the user bus, rootless Podman
// through the v5 bindings against the user's socket-activated podman.socket,
// and the user journal.
//
// The tests never skip: a missing component is a failure that names it, so a
// broken lab cannot pass as a green run. They are built only with the vmlab
// build tag, because the development and CI hosts (not systemd, hybrid
// cgroups) cannot run them; test/vmlab/run.sh compiles them and boots the VM.
package vmsmoke
