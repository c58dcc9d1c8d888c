//go:build vmlab

package vm

import (
	"strings"
	"testing"
	"time"

	"github.com/cellproject/cell/internal/testutil"
	"github.com/cellproject/cell/internal/testutil/harness"
	"github.com/cellproject/cell/test/integration/capsidprobe"
)

const capsidVMAllowlist = `
version = 1

[session]
max_cells = 20

[cell.ctl]
exec = "@BIN@/testcell"
backend = "process"

[cell.capscope]
exec = "@BIN@/testcell"
backend = "scope"

[cell.cappodman]
exec = "@BIN@/testcell"
backend = "podman"

[cell.capscopemem]
exec = "@BIN@/testcell"
backend = "scope"
limits = { memory = "256M" }

[cell.cappodmanmem]
exec = "@BIN@/testcell"
backend = "podman"
limits = { memory = "256M" }

[cell.cscope]
exec = "@BIN@/cprog"
backend = "scope"

[cell.cpodman]
exec = "@BIN@/cprog"
backend = "podman"
`

// TestCapsidScopeAndPodman5 runs the capsid's probes on the scope backend
// and on Podman 5 (crun) beside a process-backend control, strictly: the
// lab's Debian kernel has every call, so each control must reach the kernel.
// With a memory limit (enforced here) /tmp is bounded by it, and its pages
// count in the cell's memory cgroup.
func TestCapsidScopeAndPodman5(t *testing.T) {
	desc, secret := capsidprobe.OwnerKey(t)
	s, log := startSession(t, capsidVMAllowlist)
	probe := func(cellName, arg string) string {
		out, err := call(t, s, cellName, "capsid", arg)
		if err != nil {
			t.Fatalf("%s capsid %s: %v", cellName, arg, err)
		}
		return out
	}
	sandboxes := []string{"capscope", "cappodman"}
	capsidprobe.Check(t, probe, "ctl", sandboxes, desc, secret, capsidprobe.Options{TmpBoundMiB: 64})
	for _, c := range []string{"capscopemem", "cappodmanmem"} {
		if got := probe(c, "tmpsize"); got != "size 256 MiB" {
			t.Errorf("%s with memory = 256M: /tmp %s", c, got)
		}
		// 96 MiB in /tmp fit in the limit: the cell survives and answers.
		if got := probe(c, "tmpfill"); got != "ok wrote 96 MiB" {
			t.Errorf("%s: /tmp fill within the limit: %q", c, got)
		}
	}
	for _, sb := range sandboxes {
		probe(sb, "emit")
	}
	deadline := time.Now().Add(30 * time.Second)
	for strings.Count(log.String(), capsidprobe.EmitLine) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("the cells' escape sequences never showed as text in the root's output")
		}
		time.Sleep(200 * time.Millisecond)
	}
	if capsidprobe.RawEmit(log.String()) {
		t.Error("a raw escape sequence or carriage return of a cell reached the root's output")
	}

	// The static C program (glibc, built on the host by make
	// integration-vm) runs to its end on scope and on Podman 5.
	harness.BinDir(t, "cprog")
	for _, c := range []string{"cscope", "cpodman"} {
		s.Grow(testCtx(t, time.Minute), c) // it exits instead of serving: the grow fails
		want := "[" + c + "] cprog static glibc ok"
		deadline := time.Now().Add(testutil.Scaled(t, 60*time.Second))
		for !strings.Contains(log.String(), want) {
			if time.Now().After(deadline) {
				t.Fatalf("%s never printed %q", c, want)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
}
