//go:build integration || vmlab

package integration

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cellproject/cell/internal/testutil"

	"github.com/cellproject/cell/cell"
	"github.com/cellproject/cell/internal/rundir"
	"github.com/cellproject/cell/wire"
)

const lifecycleAllowlist = `
version = 1

[cell.sleepy]
exec = "@BIN@/testcell"
args = ["-idle", "500ms"]
backend = "bwrap"

[cell.fragile]
exec = "@BIN@/testcell"
backend = "bwrap"
`

// waitFor polls cond for up to ten seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testutil.Scaled(t, 10*time.Second))
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func listed(t *testing.T, s *cell.Session, key string) bool {
	t.Helper()
	cells, err := s.List(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cells {
		if c.Key == key {
			return true
		}
	}
	return false
}

func TestIdleCellExitsAndIsRegrown(t *testing.T) {
	s, _ := startSession(t, lifecycleAllowlist)
	call(t, s, "sleepy", "pid", "")
	sock, lock := rundir.SocketPath(s.Dir(), "sleepy"), rundir.LockPath(s.Dir(), "sleepy")
	waitFor(t, "the idle cell has exited and its socket and lock are gone", func() bool {
		_, errS := os.Lstat(sock)
		_, errL := os.Lstat(lock)
		return !listed(t, s, "sleepy") && errors.Is(errS, os.ErrNotExist) && errors.Is(errL, os.ErrNotExist)
	})
	if second := call(t, s, "sleepy", "pid", ""); second == "" {
		t.Fatal("regrown cell did not answer")
	}
}

func TestCrashedCellIsAuditedAndItsNameFreed(t *testing.T) {
	s, log := startSession(t, lifecycleAllowlist)
	ctx := testCtx(t)
	conn, err := s.Grow(ctx, "fragile")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Call(ctx, "crash", nil); err == nil {
		t.Fatal("a call that crashes the cell returned no error")
	}
	conn.Close()
	waitFor(t, "the root has noted the crash", func() bool { return !listed(t, s, "fragile") })
	if _, err := os.Lstat(rundir.SocketPath(s.Dir(), "fragile")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the crashed cell's socket remains: %v", err)
	}
	waitFor(t, "the crash is audited with exit status 3", func() bool {
		for _, rec := range auditRecords(log.String()) {
			status, _ := rec["exit_status"].(string)
			if rec["event"] == "exit" && rec["cell"] == "fragile" && strings.Contains(status, "3") {
				return true
			}
		}
		return false
	})
	if got := call(t, s, "fragile", "pid", ""); got == "" {
		t.Fatal("the cell could not be grown again after its crash")
	}
}

func TestStopAndPs(t *testing.T) {
	s, _ := startSession(t, testAllowlist)
	ctx := testCtx(t)
	call(t, s, "probe", "grow", "child")

	out, err := exec.Command(filepath.Join(binDir(t), "cellroot"), "ps").CombinedOutput()
	if err != nil {
		t.Fatalf("cellroot ps: %v\n%s", err, out)
	}
	text := string(out)
	for _, want := range []string{"session " + s.ID(), "probe", "└─ child", "bwrap", "running"} {
		if !strings.Contains(text, want) {
			t.Errorf("cellroot ps lacks %q:\n%s", want, text)
		}
	}

	if err := s.Stop(ctx, "nonexistent"); !wire.IsCode(err, wire.CodeNotFound) {
		t.Errorf("stop of a missing cell: %v, want not_found", err)
	}
	if err := s.Stop(ctx, "child"); err != nil {
		t.Fatalf("stop child: %v", err)
	}
	if listed(t, s, "child") {
		t.Fatal("child still listed after its stop returned")
	}
	if !listed(t, s, "probe") {
		t.Fatal("stopping child stopped its parent")
	}
}

// TestExampleApp runs the example app as a user would and reads what it
// printed: the chain's answer, the denied spawn, and an empty runtime dir.
func TestExampleApp(t *testing.T) {
	_, stderr, base := runExampleApp(t, "bwrap")
	if !strings.Contains(stderr, `"decision":"deny"`) && !strings.Contains(stderr, "deny") {
		t.Errorf("the denied spawn is not in the audit:\n%s", stderr)
	}
	requireEmptyRuntime(t, base)
}

// runExampleApp runs brain with the example allowlist on backend in a runtime
// dir of its own, checks what it printed, and returns its output and that
// runtime dir.
func runExampleApp(t *testing.T, backend string) (stdout, stderr, base string) {
	t.Helper()
	bin := binDir(t)
	base = isolatedRuntime(t)
	tmplPath := "../../examples/allowlist.toml.in"
	if extra := os.Getenv("CELL_VMLAB_EXTRA"); extra != "" {
		// In the VM lab there is no source tree: the template comes on
		// the test disk beside bin/.
		tmplPath = filepath.Join(extra, "allowlist.toml.in")
	}
	tmpl, err := os.ReadFile(tmplPath)
	if err != nil {
		t.Fatal(err)
	}
	text := strings.ReplaceAll(string(tmpl), "@BACKEND@", backend)
	cmd := exec.Command(filepath.Join(bin, "brain"), "-cellroot", filepath.Join(bin, "cellroot"),
		"-allowlist", writeAllowlist(t, text))
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("brain: %v\nstdout:\n%s\nstderr:\n%s", err, out.String(), errOut.String())
	}
	t.Logf("brain printed:\n%s", out.String())
	for _, want := range []string{"eye", "retina", "cone", "denied"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("brain's output lacks %q", want)
		}
	}
	return out.String(), errOut.String(), base
}

// TestAutoFallsBackWithReasons: on a machine without some backend (here:
// no systemd user manager, so no scope), doctor says why, and an auto cell
// runs on the strongest backend there is, which the audit names.
func TestAutoFallsBackWithReasons(t *testing.T) {
	isolatedRuntime(t)
	out, err := exec.Command(filepath.Join(binDir(t), "cellroot"), "doctor").CombinedOutput()
	if err != nil {
		t.Fatalf("cellroot doctor: %v\n%s", err, out)
	}
	lines := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 2 && f[0] == "backend" {
			lines[f[1]] = line
		}
	}
	for _, b := range []string{"scope", "podman", "bwrap", "process", "auto"} {
		line, ok := lines[b]
		if !ok {
			t.Fatalf("doctor says nothing of backend %s:\n%s", b, out)
		}
		if strings.Contains(line, "unavailable") && len(strings.SplitN(line, ": ", 2)) < 2 {
			t.Errorf("doctor gives no reason for %s", line)
		}
	}
	autoLine := lines["auto"]
	picked := ""
	for _, b := range []string{"scope", "podman", "bwrap"} {
		if strings.Contains(autoLine, "runs cells on "+b) {
			picked = b
		}
	}
	if picked == "" || strings.Contains(lines[picked], "unavailable") {
		t.Fatalf("auto picks %q, doctor says: %s / %s", picked, autoLine, lines[picked])
	}

	s, log := startSessionIn(t, `
version = 1
[cell.anywhere]
exec = "@BIN@/testcell"
`)
	if got := call(t, s, "anywhere", "pid", ""); got == "" {
		t.Fatal("the auto cell did not answer")
	}
	waitFor(t, "the audit names the backend auto chose", func() bool {
		for _, rec := range auditRecords(log.String()) {
			if rec["event"] == "spawn" && rec["cell"] == "anywhere" && rec["backend"] == picked {
				return true
			}
		}
		return false
	})
}
