package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/cellproject/cell/allowlist"
	"github.com/cellproject/cell/internal/audit"
	"github.com/cellproject/cell/internal/backends"
	"github.com/cellproject/cell/internal/capsid"
	"github.com/cellproject/cell/internal/cellspec"
	"github.com/cellproject/cell/internal/rundir"
	"github.com/cellproject/cell/policy"
)

func runDoctor(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fl := newFlags("doctor", stderr)
	alPath := fl.String("allowlist", "", "allowlist file to check (default as for serve)")
	bwrapBin := fl.String("bwrap", "", "bubblewrap binary (default bwrap on PATH)")
	podmanBin := fl.String("podman", "", "podman binary (default podman on PATH)")
	setUsage(fl, `Usage: cellroot doctor [flags]

Reports what this machine can do for Cell: the runtime dir, the allowlist,
each backend (available or not, whether it can enforce resource limits,
with the reason, and which layers of the sandbox it applies here: see
docs/capsid.md) and where the audit goes. Exits 1 when the allowlist exists
but is invalid or no sandboxing backend is available.

Flags:
`)
	if code, ok := parseFlags(fl, args); !ok {
		return code
	}
	code := 0
	base, err := rundir.Base()
	if err != nil {
		fmt.Fprintf(stdout, "runtime dir: PROBLEM: %v\n", err)
		code = 1
	} else {
		fmt.Fprintf(stdout, "runtime dir: %s\n", base)
	}

	path, err := rundir.AllowlistPath(*alPath)
	if err == nil {
		var al *allowlist.File
		al, err = allowlist.Load(path)
		if err == nil {
			fmt.Fprintf(stdout, "allowlist:   %s (%d cells)\n", path, len(al.Cells))
		}
	}
	switch {
	case errors.Is(err, fs.ErrNotExist):
		fmt.Fprintf(stdout, "allowlist:   %s is missing: every spawn will be denied\n", path)
	case err != nil:
		fmt.Fprintf(stdout, "allowlist:   PROBLEM: %v\n", err)
		code = 1
	}

	// The probes are the root's own: find the user's Podman service or
	// start one, reach the systemd user manager. Everything opened here is
	// closed again at once.
	caps := backends.Open(ctx, backends.Options{Base: base, Bwrap: *bwrapBin, Podman: *podmanBin, WantPodman: true, PodmanNow: true})
	closeCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	defer caps.Close(closeCtx)
	names := make([]string, 0, len(caps.Capabilities))
	for b := range caps.Capabilities {
		names = append(names, string(b))
	}
	sort.Strings(names)
	sandboxed := false
	for _, b := range names {
		c := caps.Capabilities[cellspec.Backend(b)]
		status := "unavailable"
		if c.Available {
			status = "available, limits not enforced"
			if c.EnforcesLimits {
				status = "available, limits enforced"
			}
			sandboxed = sandboxed || cellspec.Backend(b) != cellspec.Process
		}
		fmt.Fprintf(stdout, "backend %-8s %s: %s\n", b, status, c.Reason)
		if c.Available {
			fmt.Fprintf(stdout, "               layers: %s\n", layerReport(cellspec.Backend(b), c))
		}
		if cellspec.Backend(b) == cellspec.Podman && c.Available {
			fmt.Fprintf(stdout, "               podman service: %s\n", caps.Podman)
			if !c.EnforcesLimits {
				fmt.Fprintln(stdout, "               a podman cell with limits is denied unless its entry says accept_unenforced_limits = true")
			}
		}
	}
	if b, why := policy.AutoChoice(caps.Capabilities); b != cellspec.Auto {
		fmt.Fprintf(stdout, "backend auto     runs cells on %s (the strongest available: scope, then podman, then bwrap)\n", b)
	} else {
		fmt.Fprintf(stdout, "backend auto     %s\n", why)
	}
	if !sandboxed {
		fmt.Fprintln(stdout, "PROBLEM: no sandboxing backend is available; only cells the allowlist runs as \"process\" can start")
		code = 1
	}
	if _, err := audit.NewJournal(func(error) {}); err != nil {
		fmt.Fprintf(stdout, "audit:       structured log on stderr only (%v)\n", err)
	} else {
		fmt.Fprintln(stdout, "audit:       structured log on stderr and the systemd journal")
	}
	return code
}

// layerReport says which capsid layers backend b applies here, and limits.
func layerReport(b cellspec.Backend, c policy.Capability) string {
	if b == cellspec.Process {
		return "none: no sandbox (only for cells the allowlist trusts)"
	}
	var parts []string
	for _, l := range capsid.Layers {
		state := "yes"
		if slices.Contains(c.Missing, l) {
			state = "MISSING (a cell runs here only if its accept_missing_layers names it)"
		}
		parts = append(parts, string(l)+" "+state)
	}
	limits := "yes"
	if !c.EnforcesLimits {
		limits = "no"
	}
	return strings.Join(append(parts, "limits "+limits), ", ")
}
