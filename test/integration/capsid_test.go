//go:build integration || vmlab

package integration

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cellproject/cell/cell"
	"github.com/cellproject/cell/internal/testutil"
	"github.com/cellproject/cell/test/integration/capsidprobe"
)

// capsidAllowlist runs the probe cell on each host backend, beside a
// process-backend control, and a static C program on each.
const capsidAllowlist = `
version = 1

[session]
max_cells = 20

[cell.ctl]
exec = "@BIN@/testcell"
backend = "process"

[cell.capbwrap]
exec = "@BIN@/testcell"
backend = "bwrap"

[cell.cappodman]
exec = "@BIN@/testcell"
backend = "podman"

[cell.capbwrapmem]
exec = "@BIN@/testcell"
backend = "bwrap"
limits = { memory = "128M" }
accept_unenforced_limits = true

[cell.cappodmanmem]
exec = "@BIN@/testcell"
backend = "podman"
limits = { memory = "128M" }
accept_unenforced_limits = true

[cell.cbwrap]
exec = "@CPROG@"
backend = "bwrap"

[cell.cpodman]
exec = "@CPROG@"
backend = "podman"

[cell.cctl]
exec = "@CPROG@"
backend = "process"
`

// staticCProgram builds a static C program with glibc (gcc and libc6-dev
// from Debian): threads, fork and wait, memory maps and randomness, then a
// line for the root's log.
func staticCProgram(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Fatal("gcc is not installed: apt-get install gcc libc6-dev (needed to prove a static C program runs under the capsid)")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "cprog.c")
	prog, err := os.ReadFile(filepath.Join("testdata", "cprog.c"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(src, prog, 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "cprog")
	if out, err := exec.Command("gcc", "-static", "-O1", "-pthread", "-o", bin, src).CombinedOutput(); err != nil {
		t.Fatalf("gcc -static (apt-get install gcc libc6-dev): %v\n%s", err, out)
	}
	// The sandboxes bind the binary from the host: every user on the path
	// must be able to reach it.
	os.Chmod(dir, 0o755)
	return bin
}

// TestCapsidHost tries every row of the capsid issue's table and every
// forbidden call on bwrap and podman, each beside a process-backend control
// that shows the probe succeeds, or at least reaches the kernel, where no
// sandbox stops it.
func TestCapsidHost(t *testing.T) {
	requirePodman(t)
	cprog := staticCProgram(t)
	desc, secret := capsidprobe.OwnerKey(t)
	s, log := startSession(t, strings.ReplaceAll(capsidAllowlist, "@CPROG@", cprog))
	probe := func(cellName, arg string) string { return call(t, s, cellName, "capsid", arg) }
	sandboxes := []string{"capbwrap", "cappodman"}
	capsidprobe.Check(t, probe, "ctl", sandboxes, desc, secret, capsidprobe.Options{KernelMayLack: true, TmpBoundMiB: 64})

	// With a memory limit, /tmp is bounded by it (and counted in it where
	// the limit is enforced); without, by the 64 MiB default.
	for _, c := range []string{"capbwrapmem", "cappodmanmem"} {
		if got := probe(c, "tmpsize"); got != "size 128 MiB" {
			t.Errorf("%s with memory = 128M: /tmp %s", c, got)
		}
	}
	for _, c := range sandboxes {
		if got := probe(c, "tmpsize"); got != "size 64 MiB" {
			t.Errorf("%s without limits: /tmp %s", c, got)
		}
	}

	// Terminal-safe relay of what a cell writes.
	for _, sb := range sandboxes {
		probe(sb, "emit")
	}
	waitFor(t, "both cells' escape sequences shown as text in the root's output", func() bool {
		return strings.Count(log.String(), capsidprobe.EmitLine) >= 2
	})
	if capsidprobe.RawEmit(log.String()) {
		t.Error("a raw escape sequence or carriage return of a cell reached the root's output")
	}

	// The static C program runs to its end on every backend.
	for _, c := range []string{"cctl", "cbwrap", "cpodman"} {
		s.Grow(testCtx(t), c) // it exits instead of serving: the grow fails
		want := "[" + c + "] cprog static glibc ok"
		waitFor(t, c+" printed its line", func() bool { return strings.Contains(log.String(), want) })
	}
}

// TestCapsidMissingLayerRefused runs the root with a real bubblewrap behind
// a wrapper whose --help hides --disable-userns, as a bubblewrap too old
// for it would: a bwrap cell is refused unless its entry accepts exactly
// that weakness, and the audit names what was missing. The filter still
// stops nested user namespaces in the cell that runs.
func TestCapsidMissingLayerRefused(t *testing.T) {
	real, err := exec.LookPath("bwrap")
	if err != nil {
		t.Fatal("bubblewrap is not installed (apt-get install bubblewrap)")
	}
	grep, err := exec.LookPath("grep")
	if err != nil {
		t.Fatal(err)
	}
	old := filepath.Join(t.TempDir(), "bwrap")
	script := "#!/bin/sh\nif [ \"$1\" = --help ]; then " + real + " --help | " + grep + " -v -e --disable-userns; exit 0; fi\nexec " + real + " \"$@\"\n"
	if err := os.WriteFile(old, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	isolatedRuntime(t)
	log := &testutil.SyncBuffer{}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := cell.Start(ctx, cell.OwnerOptions{
		Cellroot: filepath.Join(binDir(t), "cellroot"),
		Allowlist: writeAllowlist(t, `
version = 1

[cell.strict]
exec = "@BIN@/testcell"
backend = "bwrap"

[cell.wrongly]
exec = "@BIN@/testcell"
backend = "bwrap"
accept_missing_layers = ["bounded_tmp"]

[cell.accepting]
exec = "@BIN@/testcell"
backend = "bwrap"
accept_missing_layers = ["userns_block"]
`),
		Args:   []string{"--log-format", "json", "--bwrap", old},
		Stderr: io.MultiWriter(log, testutil.LogWriter(t)),
	})
	if err != nil {
		t.Fatalf("start session: %v", err)
	}
	t.Cleanup(func() { s.Close() })

	for _, name := range []string{"strict", "wrongly"} {
		if _, err := s.Grow(testCtx(t), name); err == nil || !strings.Contains(err.Error(), "userns_block") {
			t.Errorf("%s on a bwrap without --disable-userns: %v, want a denial naming userns_block", name, err)
		}
	}
	if got := call(t, s, "accepting", "capsid", "userns"); !strings.HasPrefix(got, "errno") {
		t.Errorf("accepting cell: nested user namespace: %q; the filter must still stop it", got)
	}
	if got := call(t, s, "accepting", "capsid", "seccomp"); got != "mode 2" {
		t.Errorf("accepting cell: %s", got)
	}
	// Denials in a row are audited as a burst (the first in full, the rest
	// in one record when the burst ends): end the session so that every
	// record is out.
	s.Close()
	testutil.WaitOutput(t, log, `"event":"session_end"`)
	codes := map[string]string{}
	for _, r := range auditRecords(log.String()) {
		if r["event"] == "spawn" {
			codes[fmt.Sprint(r["cell"])] = fmt.Sprint(r["code"], " ", r["missing_layers"])
		}
	}
	want := map[string]string{"strict": "layers_missing <nil>", "wrongly": "layers_missing <nil>", "accepting": "ok userns_block"}
	for c, w := range want {
		if codes[c] != w {
			t.Errorf("audit of %s: %q, want %q", c, codes[c], w)
		}
	}
}
