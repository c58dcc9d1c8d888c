// Package hostcap finds out which backends can run cells on this machine and
// which of them can enforce resource limits, for the root's backend choice
// and for `cellroot doctor`.
package hostcap

import (
	"context"
	"os/exec"

	"github.com/cellproject/cell/bwrap"
	"github.com/cellproject/cell/cellspec"
	"github.com/cellproject/cell/policy"
)

// Options say where the tools are.
type Options struct {
	// Bwrap is the bubblewrap binary; empty means "bwrap" on PATH.
	Bwrap string
}

// Report is what Detect found.
type Report struct {
	// BwrapPath is the resolved bubblewrap binary, empty when not found.
	BwrapPath    string
	Capabilities map[cellspec.Backend]policy.Capability
}

// Detect probes every backend. It runs a trivial bubblewrap sandbox, so it
// takes a few milliseconds.
func Detect(ctx context.Context, opts Options) Report {
	r := Report{Capabilities: map[cellspec.Backend]policy.Capability{
		cellspec.Process: {Available: true, Reason: "no sandbox and no cgroup limits: only for cells the allowlist trusts"},
		cellspec.Podman:  {Reason: "the podman backend is not part of this build yet"},
		cellspec.Scope:   {Reason: "the systemd scope backend is not part of this build yet"},
	}}
	name := opts.Bwrap
	if name == "" {
		name = "bwrap"
	}
	path, err := exec.LookPath(name)
	if err != nil {
		r.Capabilities[cellspec.Bwrap] = policy.Capability{Reason: "bubblewrap not found (" + err.Error() + "); install it: apt-get install bubblewrap"}
		return r
	}
	if err := bwrap.Probe(ctx, path); err != nil {
		r.Capabilities[cellspec.Bwrap] = policy.Capability{Reason: err.Error()}
		return r
	}
	r.BwrapPath = path
	r.Capabilities[cellspec.Bwrap] = policy.Capability{Available: true,
		Reason: "namespaces only: bubblewrap alone cannot enforce memory, CPU or pids limits"}
	return r
}
