// Package hostcap finds out which backends can run cells on this machine and
// which of them can enforce resource limits, for the root's backend choice
// and for `cellroot doctor`.
package hostcap

import (
	"context"
	"os"

	"github.com/cellproject/cell/bwrap"
	"github.com/cellproject/cell/internal/capsid"
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
	path, err := bwrap.Find(opts.Bwrap)
	if err != nil {
		r.Capabilities[cellspec.Bwrap] = policy.Capability{Reason: err.Error()}
		return r
	}
	if _, err := bwrap.ProbeCached(ctx, path, opts.ProbeCache); err != nil {
		r.Capabilities[cellspec.Bwrap] = policy.Capability{Reason: err.Error()}
		return r
	}
	r.BwrapPath = path
	missing := BwrapMissing(ctx, path)
	r.Capabilities[cellspec.Bwrap] = policy.Capability{Available: true, Missing: missing,
		Reason: "namespaces only: bubblewrap alone cannot enforce memory, CPU or pids limits"}
	r.Capabilities[cellspec.Scope] = detectScope(ctx, opts.Scope)
	if c := r.Capabilities[cellspec.Scope]; c.Available {
		c.Missing = missing
		r.Capabilities[cellspec.Scope] = c
	}
	if c := r.Capabilities[cellspec.Podman]; c.Available {
		c.Missing = PodmanMissing()
		r.Capabilities[cellspec.Podman] = c
	}
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

// BwrapMissing lists the capsid layers a sandbox of the bubblewrap at path
// cannot apply (the bwrap and scope backends): an option it does not know,
// or a filter the policy cannot be compiled into here.
func BwrapMissing(ctx context.Context, path string) []capsid.Layer {
	return bwrap.FeaturesOf(ctx, path).Missing()
}

// PodmanMissing lists the capsid layers the podman backend cannot apply: the
// profile carries the filter and the user namespace block, so both go when
// the policy has no rendering for this architecture. The runtime always
// makes a fresh session keyring, and the /tmp bound is a mount option. The
// profile itself is rendered for each container, whose launch fails when it
// cannot be.
func PodmanMissing() []capsid.Layer {
	if !capsid.Supported() {
		return []capsid.Layer{capsid.Filter, capsid.UsernsBlock}
	}
	return nil
}
