//go:build integration || vmlab

package integration

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cellproject/cell/cell"
	"github.com/cellproject/cell/internal/testutil"
	"github.com/cellproject/cell/wire"
)

// podmanHelpers lists the pids of the podman helpers serving runtime dir base.
func podmanHelpers(t *testing.T, base string) []int {
	t.Helper()
	var pids []int
	for _, p := range processes(t) {
		if p.state != "Z" && strings.Contains(p.cmdline, "cellroot-podman") && strings.Contains(p.cmdline, base) {
			pids = append(pids, p.pid)
		}
	}
	return pids
}

// podmanPrivateDirs lists the podman backends' private dirs under base.
func podmanPrivateDirs(t *testing.T, base string) []string {
	t.Helper()
	entries, err := os.ReadDir(base)
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".podman-") {
			dirs = append(dirs, e.Name())
		}
	}
	return dirs
}

// TestLeanRootHelperOnlyForPodmanCells: a root whose allowlist allows podman
// cells runs no helper until one is spawned, then exactly one, and none
// after the session.
func TestLeanRootHelperOnlyForPodmanCells(t *testing.T) {
	requirePodman(t)
	s, _ := startSession(t, podmanAllowlist)
	base := filepath.Dir(s.Dir())
	if got := call(t, s, "trusted", "pid", ""); got == "" {
		t.Fatal("the process cell did not answer")
	}
	if h := podmanHelpers(t, base); len(h) != 0 {
		t.Fatalf("podman helpers %v run before any podman cell", h)
	}
	if got := call(t, s, "probe", "pid", ""); got == "" {
		t.Fatal("the podman cell did not answer")
	}
	if h := podmanHelpers(t, base); len(h) != 1 {
		t.Fatalf("podman helpers %v with a podman cell running, want one", h)
	}
	s.Close()
	requireGone(t, base, s.ID())
	requireNoContainers(t, s.ID())
	waitFor(t, "no podman helper is left", func() bool { return len(podmanHelpers(t, base)) == 0 })
	requireEmptyRuntime(t, base)
}

// TestLeanRootSIGKILLedHelperGoesAndNextRootCollects: the helper dies with a
// SIGKILLed root, so do the session's cells and containers; what Podman
// kept (a stray container of the session, the dead backend's private dir)
// the next root collects, starting a helper for it without any podman cell.
func TestLeanRootSIGKILLedHelperGoesAndNextRootCollects(t *testing.T) {
	requirePodman(t)
	o := startPodmanOwner(t)
	root := o.rootPid(t)
	helpers := podmanHelpers(t, o.base)
	if len(helpers) != 1 {
		t.Fatalf("podman helpers of the session: %v, want one", helpers)
	}
	dead := podmanPrivateDirs(t, o.base)
	if len(dead) != 1 {
		t.Fatalf("podman private dirs: %v, want the helper's one", dead)
	}
	stray := "cell-" + o.report.Session + "-stray"
	args := []string{"create", "--network", "none", "--name", stray, "--label", "cell.session=" + o.report.Session,
		"--label", "cell.name=stray", "--label", "cell.base=" + o.base, "--rootfs", strayRoot(t), "/testcell"}
	if out, err := execPodman(args...); err != nil {
		t.Fatalf("podman %v: %v\n%s", args, err, out)
	}
	t.Cleanup(func() { execPodman("rm", "--force", stray) })

	if err := syscall.Kill(root, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	requireNoProcesses(t, o.report.Session, root, helpers[0])
	waitFor(t, "the helper is gone with its root", func() bool { return len(podmanHelpers(t, o.base)) == 0 })
	if d := podmanPrivateDirs(t, o.base); !slices.Equal(d, dead) {
		t.Fatalf("private dirs after the kill: %v, want the dead %v left for collection", d, dead)
	}

	// The next root runs no podman cell, yet collects.
	s, _ := startSessionIn(t, podmanAllowlist)
	requireGone(t, o.base, o.report.Session, root)
	requireNoContainers(t, o.report.Session)
	waitFor(t, "the dead backend's private dir is collected", func() bool {
		return !slices.Contains(podmanPrivateDirs(t, o.base), dead[0])
	})
	s.Close()
	requireNoContainers(t, s.ID())
	requireEmptyRuntime(t, o.base)
}

func execPodman(args ...string) ([]byte, error) {
	return exec.Command("podman", args...).CombinedOutput()
}

// leanAllowlist has a bwrap cell and a podman cell.
const leanAllowlist = `
version = 1

[cell.probe]
exec = "@BIN@/testcell"
backend = "bwrap"

[cell.pod]
exec = "@BIN@/testcell"
backend = "podman"
`

// TestLeanRootWithoutUsableHelper: a root whose podman helper is missing or
// broken serves bwrap cells, and refuses podman cells with the reason.
func TestLeanRootWithoutUsableHelper(t *testing.T) {
	requirePodman(t)
	broken := filepath.Join(t.TempDir(), "cellroot-podman")
	if err := os.WriteFile(broken, []byte("#!/bin/sh\necho not a helper >&2\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, helper string
		code         wire.Code
		reason       []string
	}{
		{"missing", filepath.Join(t.TempDir(), "no-such-helper"), wire.CodeDenied, []string{"podman helper", "no-such-helper", "no such file"}},
		{"broken", broken, wire.CodeSpawnFailed, []string{"podman unavailable", broken, "exited 3"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			isolatedRuntime(t)
			log := &testutil.SyncBuffer{}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			s, err := cell.Start(ctx, cell.OwnerOptions{
				Cellroot:  filepath.Join(binDir(t), "cellroot"),
				Allowlist: writeAllowlist(t, leanAllowlist),
				Args:      []string{"--log-format", "json", "--podman-helper", c.helper},
				Stderr:    io.MultiWriter(log, testutil.LogWriter(t)),
			})
			if err != nil {
				t.Fatalf("start session: %v", err)
			}
			defer s.Close()
			if got := call(t, s, "probe", "pid", ""); got == "" {
				t.Fatal("the bwrap cell did not answer")
			}
			_, err = s.Grow(testCtx(t), "pod")
			if !wire.IsCode(err, c.code) {
				t.Fatalf("grow pod: %v, want %s", err, c.code)
			}
			for _, r := range c.reason {
				if !strings.Contains(err.Error(), r) {
					t.Errorf("the refusal %q does not say %q", err, r)
				}
			}
			// Still serving bwrap cells after the refusal.
			if got := call(t, s, "probe", "pid", ""); got == "" {
				t.Fatal("the bwrap cell did not answer after the podman refusal")
			}
			if c.name == "missing" && !strings.Contains(log.String(), `"backend":"podman","available":false`) {
				t.Errorf("the root's log does not report podman unavailable:\n%s", log.String())
			}
		})
	}
}

// isHostCache tells the root's cache of what it learnt about the host (the
// bubblewrap probe), which outlives sessions on purpose, from their leftovers.
func isHostCache(e os.DirEntry) bool { return e.Name() == ".bwrap-probe" }
