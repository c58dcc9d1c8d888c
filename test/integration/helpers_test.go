//go:build integration || vmlab

package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cellproject/cell/cell"

	"github.com/cellproject/cell/internal/testutil"
	"github.com/cellproject/cell/internal/testutil/harness"
)

// testAllowlist is the allowlist most tests run under; @BIN@ is the binary dir.
const testAllowlist = `
version = 1

[session]
max_cells = 40
max_depth = 3

[cell.probe]
exec = "@BIN@/testcell"
backend = "bwrap"
spawn = ["child", "counter"]

[cell.child]
exec = "@BIN@/testcell"
backend = "bwrap"
spawn = ["grandchild"]

[cell.grandchild]
exec = "@BIN@/testcell"
backend = "bwrap"
spawn = ["greatgrandchild"]

[cell.greatgrandchild]
exec = "@BIN@/testcell"
backend = "bwrap"

[cell.outsider]
exec = "@BIN@/testcell"
backend = "bwrap"

[cell.netcell]
exec = "@BIN@/testcell"
backend = "bwrap"
network = true

[cell.trusted]
exec = "@BIN@/testcell"
backend = "process"

[cell.counter]
exec = "@BIN@/testcell"
backend = "bwrap"
`

// binDir is where run-tests.sh put the binaries under test.
func binDir(t *testing.T) string {
	t.Helper()
	dir := harness.BinDir(t, "cellroot", "testcell", "brain", "eye", "retina", "cone")
	if _, err := exec.LookPath("bwrap"); err != nil {
		t.Fatal("bubblewrap is not installed (apt-get install bubblewrap): these tests prove the bwrap sandbox and cannot run without it")
	}
	return dir
}

// env gives each test its own runtime dir, so that sessions of parallel or
// earlier tests never mix, and returns it.
func isolatedRuntime(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "cellrt")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	t.Setenv("XDG_RUNTIME_DIR", dir)
	return filepath.Join(dir, "cell")
}

func writeAllowlist(t *testing.T, text string) string {
	t.Helper()
	binDir(t)
	return harness.WriteAllowlist(t, filepath.Join(t.TempDir(), "allowlist.toml"), text)
}

// startSession starts a real cellroot as this test's owner.
func startSession(t *testing.T, allowlistText string) (*cell.Session, *testutil.SyncBuffer) {
	t.Helper()
	isolatedRuntime(t)
	return startSessionIn(t, allowlistText)
}

// startSessionIn starts a session in the runtime dir the test already set.
func startSessionIn(t *testing.T, allowlistText string) (*cell.Session, *testutil.SyncBuffer) {
	t.Helper()
	binDir(t)
	return harness.StartSession(t, 20*time.Second, allowlistText)
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Scaled(t, 30*time.Second))
	t.Cleanup(cancel)
	return ctx
}

// call grows name and calls method on it.
func call(t *testing.T, s *cell.Session, name, method, arg string) string {
	t.Helper()
	out, err := harness.Call(testCtx(t), t, s, name, method, arg)
	if err != nil {
		t.Fatalf("%s.%s(%q): %v", name, method, arg, err)
	}
	return out
}

// procInfo is what /proc tells of one process.
type procInfo struct {
	pid     int
	state   string
	cmdline string
	environ []string
}

func (p procInfo) hasEnv(kv string) bool {
	for _, e := range p.environ {
		if e == kv {
			return true
		}
	}
	return false
}

func processes(t *testing.T) []procInfo {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var out []procInfo
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		p := procInfo{pid: pid}
		if i := bytes.LastIndexByte(stat, ')'); i > 0 && i+2 < len(stat) {
			p.state = string(stat[i+2])
		}
		cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		env, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		p.cmdline = string(bytes.ReplaceAll(cmd, []byte{0}, []byte{' '}))
		p.environ = strings.Split(string(env), "\x00")
		out = append(out, p)
	}
	return out
}

// sessionLeftovers lists live processes that belong to the session: any
// whose command line or environment names it (bwrap's argv holds the session
// dir, the cells' environment the session id), plus extra pids given.
func sessionLeftovers(t *testing.T, id string, extra ...int) []string {
	t.Helper()
	var left []string
	for _, p := range processes(t) {
		if p.pid == os.Getpid() || p.state == "Z" {
			continue
		}
		if strings.Contains(p.cmdline, id) || p.hasEnv("CELL_SESSION="+id) {
			left = append(left, fmt.Sprintf("pid %d (%s): %s", p.pid, p.state, p.cmdline))
			continue
		}
		for _, pid := range extra {
			if p.pid == pid {
				left = append(left, fmt.Sprintf("pid %d (%s): %s", p.pid, p.state, p.cmdline))
			}
		}
	}
	return left
}

// requireGone waits until no process of the session remains and its files
// are gone from base, and fails with what is left otherwise.
func requireGone(t *testing.T, base, id string, extra ...int) {
	t.Helper()
	deadline := time.Now().Add(testutil.Scaled(t, 10*time.Second))
	for {
		procs := sessionLeftovers(t, id, extra...)
		var files []string
		for _, name := range []string{id, id + ".lock", id + ".cells"} {
			if _, err := os.Lstat(filepath.Join(base, name)); err == nil {
				files = append(files, filepath.Join(base, name))
			}
		}
		if len(procs) == 0 && len(files) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("session %s left behind:\nprocesses: %s\nfiles: %s", id, strings.Join(procs, "\n  "), strings.Join(files, " "))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// requireNoProcesses waits until no process of the session remains.
func requireNoProcesses(t *testing.T, id string, extra ...int) {
	t.Helper()
	deadline := time.Now().Add(testutil.Scaled(t, 10*time.Second))
	for {
		procs := sessionLeftovers(t, id, extra...)
		if len(procs) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("session %s processes remain:\n  %s", id, strings.Join(procs, "\n  "))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// auditRecords returns the audit records of cellroot's JSON log.
func auditRecords(log string) []map[string]any {
	var recs []map[string]any
	sc := bufio.NewScanner(strings.NewReader(log))
	for sc.Scan() {
		var rec map[string]any
		if json.Unmarshal(sc.Bytes(), &rec) == nil && rec["logger"] == "cellroot.audit" {
			recs = append(recs, rec)
		}
	}
	return recs
}
