// Package hostcap finds out which backends can run cells on this machine and
// which of them can enforce resource limits, for the root's backend choice
// and for `cellroot doctor`.
package hostcap

import (
	"context"
	"os"
	"os/exec"

	"github.com/cellproject/cell/bwrap"
	"github.com/cellproject/cell/internal/cellspec"
	"github.com/cellproject/cell/policy"
)

// Options say where the tools are.
type Options struct {
	// Bwrap is the bubblewrap binary; empty means "bwrap" on PATH.
	Bwrap string
	// ProbeCache is the private dir (the user's runtime dir) where the
	// bubblewrap probe's success is remembered; empty probes every time.
	ProbeCache string
	// Podman checks that the user's Podman service answers (it opens the
	// podman backend); nil means the caller wired no podman backend. Its
	// error is the reason podman is unavailable.
	Podman func(ctx context.Context) error
	// Scope checks that the user's systemd manager answers (it opens the
	// scope backend); nil means the caller wired no scope backend. Scopes
	// run bubblewrap, so they need it too.
	Scope func(ctx context.Context) error
}

// Report is what Detect found.
type Report struct {
	// BwrapPath is the resolved bubblewrap binary, empty when not found.
	BwrapPath    string
	Capabilities map[cellspec.Backend]policy.Capability
}

// Detect probes every backend. It runs a trivial bubblewrap sandbox and
// opts.Podman, which may start a Podman service, so it takes from a few
// milliseconds to a few hundred.
func Detect(ctx context.Context, opts Options) Report {
	r := Report{Capabilities: map[cellspec.Backend]policy.Capability{
		cellspec.Process: {Available: true, Reason: "no sandbox and no cgroup limits: only for cells the allowlist trusts"},
	}}
	r.Capabilities[cellspec.Podman] = detectPodman(ctx, opts.Podman)
	r.Capabilities[cellspec.Scope] = policy.Capability{Reason: "needs bubblewrap, which is unavailable"}
	name := opts.Bwrap
	if name == "" {
		name = "bwrap"
	}
	path, err := exec.LookPath(name)
	if err != nil {
		r.Capabilities[cellspec.Bwrap] = policy.Capability{Reason: "bubblewrap not found (" + err.Error() + "); install it: apt-get install bubblewrap"}
		return r
	}
	if _, err := bwrap.ProbeCached(ctx, path, opts.ProbeCache); err != nil {
		r.Capabilities[cellspec.Bwrap] = policy.Capability{Reason: err.Error()}
		return r
	}
	r.BwrapPath = path
	r.Capabilities[cellspec.Bwrap] = policy.Capability{Available: true,
		Reason: "namespaces only: bubblewrap alone cannot enforce memory, CPU or pids limits"}
	r.Capabilities[cellspec.Scope] = detectScope(ctx, opts.Scope)
	return r
}

// detectScope: available when the user's manager answers; limits enforced
// only where the user's cgroup has the controllers delegated.
func detectScope(ctx context.Context, probe func(context.Context) error) policy.Capability {
	if probe == nil {
		return policy.Capability{Reason: "no scope backend is wired into this command"}
	}
	if err := probe(ctx); err != nil {
		return policy.Capability{Reason: err.Error()}
	}
	enforces, why := RootlessLimits()
	return policy.Capability{Available: true, EnforcesLimits: enforces, Reason: "systemd user scopes: " + why}
}

// detectPodman: available when the probe reaches the service; limits
// enforced only where rootless containers get the cgroup controllers.
func detectPodman(ctx context.Context, probe func(context.Context) error) policy.Capability {
	if probe == nil {
		return policy.Capability{Reason: "no podman backend is wired into this command"}
	}
	if err := probe(ctx); err != nil {
		return policy.Capability{Reason: err.Error()}
	}
	enforces, why := RootlessLimits()
	return policy.Capability{Available: true, EnforcesLimits: enforces, Reason: "rootless Podman: " + why}
}

// RootlessLimits reports whether cgroup limits set for a rootless container
// (Podman's, or a user scope's) take effect on this machine, and why or why
// not, with how to fix it. They do only on a cgroup v2 hierarchy where the
// user's cgroup has the cpu, memory and pids controllers delegated; on
// cgroup v1 or a hybrid hierarchy rootless limits are silently ignored.
func RootlessLimits() (bool, string) {
	return rootlessLimits(os.Getuid())
}
