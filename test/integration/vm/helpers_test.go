//go:build vmlab

package vm

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cellproject/cell/cell"

	"github.com/cellproject/cell/internal/testutil"
	"github.com/cellproject/cell/internal/testutil/harness"
)

func binDir(t *testing.T) string {
	t.Helper()
	return harness.BinDir(t, "cellroot", "testcell")
}

func testCtx(t *testing.T, limit time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Scaled(t, limit))
	t.Cleanup(cancel)
	return ctx
}

func writeAllowlist(t *testing.T, path, text string) string {
	t.Helper()
	binDir(t)
	return harness.WriteAllowlist(t, path, text)
}

// startSession execs a root for this test with the given allowlist.
func startSession(t *testing.T, allowlistText string) (*cell.Session, *testutil.SyncBuffer) {
	t.Helper()
	binDir(t)
	return harness.StartSession(t, 2*time.Minute, allowlistText, "--ready-timeout", testutil.Scaled(t, 90*time.Second).String())
}

func call(t *testing.T, s *cell.Session, name, method, arg string) (string, error) {
	t.Helper()
	return harness.Call(testCtx(t, 3*time.Minute), t, s, name, method, arg)
}

// systemctl runs systemctl --user and returns its output.
func systemctl(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("systemctl", append([]string{"--user", "--no-pager"}, args...)...).CombinedOutput()
	if err != nil {
		t.Logf("systemctl --user %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// sessionUnits lists the loaded units of the session: its slice
// (app-cell_<session>.slice), its scopes (cell-<session>-....scope), and the
// cell.slice an earlier naming left active after every session.
func sessionUnits(t *testing.T, session string) []string {
	t.Helper()
	out := systemctl(t, "list-units", "--all", "--plain", "--no-legend", "cell-"+session+"*", "app-cell_"+session+"*", "cell.slice")
	var units []string
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			units = append(units, f[0])
		}
	}
	return units
}

// sessionProcesses lists live processes whose command line or environment
// names the session.
func sessionProcesses(session string) []string {
	entries, _ := os.ReadDir("/proc")
	var left []string
	for _, e := range entries {
		pid := e.Name()
		if pid[0] < '0' || pid[0] > '9' || pid == fmt.Sprint(os.Getpid()) {
			continue
		}
		stat, _ := os.ReadFile("/proc/" + pid + "/stat")
		if i := bytes.LastIndexByte(stat, ')'); i < 0 || i+2 >= len(stat) || stat[i+2] == 'Z' {
			continue
		}
		cmd, _ := os.ReadFile("/proc/" + pid + "/cmdline")
		env, _ := os.ReadFile("/proc/" + pid + "/environ")
		if bytes.Contains(cmd, []byte(session)) || bytes.Contains(env, []byte("CELL_SESSION="+session+"\x00")) {
			left = append(left, pid+": "+string(bytes.ReplaceAll(cmd, []byte{0}, []byte{' '})))
		}
	}
	return left
}

// requireGone waits until nothing of the session remains: no process, no
// unit of its slice, no session dir.
func requireGone(t *testing.T, session, dir string) {
	t.Helper()
	deadline := time.Now().Add(testutil.Scaled(t, 60*time.Second))
	for {
		procs := sessionProcesses(session)
		units := sessionUnits(t, session)
		_, dirErr := os.Stat(dir)
		if len(procs) == 0 && len(units) == 0 && os.IsNotExist(dirErr) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("session %s left: processes %v, units %v, dir %s (%v)", session, procs, units, dir, dirErr)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// journalEntries reads the user's journal entries with the given field match.
func journalEntries(t *testing.T, match string) []map[string]any {
	t.Helper()
	out, err := exec.Command("journalctl", "--user", "-o", "json", "--no-pager", match).Output()
	if err != nil {
		t.Logf("journalctl --user %s: %v", match, err)
	}
	var entries []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var e map[string]any
		if json.Unmarshal(sc.Bytes(), &e) == nil {
			entries = append(entries, e)
		}
	}
	return entries
}

// vmSlowdown is how many times slower this guest ran the lab's calibration
// job than the host did, or than an idle host does when the host was busy
// ($CELL_VMLAB_SLOWDOWN, set by guest.sh), for the figures a test must
// reach at an idle host's speed.
func vmSlowdown(t *testing.T) float64 {
	t.Helper()
	f, err := strconv.ParseFloat(os.Getenv("CELL_VMLAB_SLOWDOWN"), 64)
	if err != nil || f < 1 {
		t.Fatalf("CELL_VMLAB_SLOWDOWN=%q: the lab's guest.sh must set it to a number of at least 1", os.Getenv("CELL_VMLAB_SLOWDOWN"))
	}
	return f
}
