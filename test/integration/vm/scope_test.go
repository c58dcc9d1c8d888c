//go:build vmlab

package vm

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cellproject/cell/cell"
	"github.com/cellproject/cell/internal/testutil"
)

const scopeAllowlist = `
version = 1

[cell.limited]
exec = "@BIN@/testcell"
backend = "scope"
[cell.limited.limits]
memory = "64M"
cpu = 0.5
pids = 32

[cell.bystander]
exec = "@BIN@/testcell"
backend = "scope"
[cell.bystander.limits]
memory = "64M"

[cell.automatic]
exec = "@BIN@/testcell"
`

// unitOf returns the scope unit the root reports for key.
func unitOf(t *testing.T, s *cell.Session, key string) string {
	t.Helper()
	cells, err := s.List(testCtx(t, time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cells {
		if c.Key == key {
			if c.Backend != "scope" || !strings.HasSuffix(c.ID, ".scope") {
				t.Fatalf("%s runs on backend %q as %q, want a scope", key, c.Backend, c.ID)
			}
			return c.ID
		}
	}
	t.Fatalf("%s is not listed", key)
	return ""
}

func cgroupOf(t *testing.T, unit string) string {
	t.Helper()
	cg := systemctl(t, "show", "-p", "ControlGroup", "--value", unit)
	if cg == "" {
		t.Fatalf("unit %s has no control group", unit)
	}
	return filepath.Join("/sys/fs/cgroup", cg)
}

func readCgroup(t *testing.T, dir, file string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func TestScopeLimitsReadBack(t *testing.T) {
	s, _ := startSession(t, scopeAllowlist)
	if _, err := call(t, s, "limited", "pid", ""); err != nil {
		t.Fatal(err)
	}
	unit := unitOf(t, s, "limited")
	cg := cgroupOf(t, unit)
	if !strings.Contains(cg, "app-cell_"+s.ID()+".slice") {
		t.Errorf("scope cgroup %s is not in the session's slice", cg)
	}
	for file, want := range map[string]string{
		"memory.max": strconv.Itoa(64 << 20),
		"pids.max":   "32",
		"cpu.max":    "50000 100000",
	} {
		if got := readCgroup(t, cg, file); got != want {
			t.Errorf("%s = %q, want %q", file, got, want)
		}
	}
	// The cell itself runs in that cgroup, not merely its launcher.
	procs := strings.Fields(readCgroup(t, cg, "cgroup.procs"))
	testcell := filepath.Join(binDir(t), "testcell")
	found := false
	for _, pid := range procs {
		cmd, _ := os.ReadFile("/proc/" + pid + "/cmdline")
		if strings.HasPrefix(string(cmd), testcell) {
			found = true
		}
	}
	if !found {
		t.Errorf("the cell program is not among the scope's processes %v", procs)
	}
}

func TestScopeMemoryHogKilledAlone(t *testing.T) {
	s, log := startSession(t, scopeAllowlist)
	before, err := call(t, s, "bystander", "pid", "")
	if err != nil {
		t.Fatal(err)
	}
	out, err := call(t, s, "limited", "hog", "")
	if err == nil {
		t.Fatalf("the memory hog answered %q: the 64M limit did not stop it", out)
	}
	after, err := call(t, s, "bystander", "pid", "")
	if err != nil || after != before {
		t.Fatalf("the bystander after the hog: %q %v (before %q)", after, err, before)
	}
	// The kernel's OOM kill, or systemd stopping the scope after it, ends
	// the cell: either way its exit is audited as not a clean one.
	deadline := time.Now().Add(testutil.Scaled(t, 30*time.Second))
	for {
		status := ""
		for _, line := range strings.Split(log.String(), "\n") {
			if strings.Contains(line, `"event":"exit"`) && strings.Contains(line, `"cell":"limited"`) {
				status = line
			}
		}
		if status != "" {
			if strings.Contains(status, `"exit_status":"exited 0"`) {
				t.Fatalf("the hog exited cleanly: %s", status)
			}
			t.Logf("hog ended: %s", status)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no exit record of the killed hog in the audit:\n%s", log.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestScopeForkBombStopsAtPidsLimit(t *testing.T) {
	s, _ := startSession(t, scopeAllowlist)
	out, err := call(t, s, "limited", "fork", "200")
	if err != nil {
		t.Fatal(err)
	}
	var started int
	var rest string
	if _, err := fmt.Sscanf(out, "started %d: %s", &started, &rest); err != nil {
		t.Fatalf("fork answer %q: %v", out, err)
	}
	if started >= 32 || rest == "<nil>" {
		t.Fatalf("fork bomb: %q; want it stopped below pids.max 32", out)
	}
	t.Logf("fork bomb: %s", out)
}

func TestAutoBackendPicksScope(t *testing.T) {
	s, log := startSession(t, scopeAllowlist)
	if _, err := call(t, s, "automatic", "pid", ""); err != nil {
		t.Fatal(err)
	}
	unitOf(t, s, "automatic")
	if !strings.Contains(log.String(), `"backend":"scope"`) {
		t.Errorf("the audit does not name the scope backend:\n%s", log.String())
	}
	out, err := exec.Command(filepath.Join(binDir(t), "cellroot"), "doctor").CombinedOutput()
	if !strings.Contains(string(out), "scope") || !strings.Contains(string(out), "limits enforced") {
		t.Errorf("cellroot doctor (%v) does not report the scope backend with enforced limits:\n%s", err, out)
	}
}

func TestScopeTeardownOwnerExits(t *testing.T) {
	s, _ := startSession(t, scopeAllowlist)
	if _, err := call(t, s, "limited", "pid", ""); err != nil {
		t.Fatal(err)
	}
	if len(sessionUnits(t, s.ID())) == 0 {
		t.Fatal("no unit of the session while a cell runs")
	}
	id, dir := s.ID(), s.Dir()
	s.Close()
	requireGone(t, id, dir)
}

// rootPid finds the cellroot this test process started.
func rootPid(t *testing.T) int {
	t.Helper()
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		cmd, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if len(fields) > 1 && fields[1] == strconv.Itoa(os.Getpid()) && strings.Contains(string(cmd), "serve") {
			pid, _ := strconv.Atoi(e.Name())
			return pid
		}
	}
	t.Fatal("no cellroot child found")
	return 0
}

func TestScopeTeardownRootKilled(t *testing.T) {
	s, _ := startSession(t, scopeAllowlist)
	if _, err := call(t, s, "limited", "pid", ""); err != nil {
		t.Fatal(err)
	}
	id, dir := s.ID(), s.Dir()
	if err := syscall.Kill(rootPid(t), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitNoCellsOrScopes(t, id)
	// The next root collects the dead session's files and empty slice.
	startSession(t, scopeAllowlist)
	requireGone(t, id, dir)
}

// waitNoCellsOrScopes waits until no process and no scope of the session
// remain; the empty slice of a killed root stays until the next root.
func waitNoCellsOrScopes(t *testing.T, id string) {
	t.Helper()
	scopes := func() []string {
		var out []string
		for _, u := range sessionUnits(t, id) {
			if strings.HasSuffix(u, ".scope") {
				out = append(out, u)
			}
		}
		return out
	}
	deadline := time.Now().Add(testutil.Scaled(t, 60*time.Second))
	for len(sessionProcesses(id)) > 0 || len(scopes()) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("after SIGKILL of the root: processes %v, scopes %v", sessionProcesses(id), scopes())
		}
		time.Sleep(500 * time.Millisecond)
	}
}
