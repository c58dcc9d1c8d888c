//go:build vmlab

package vm

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
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
)

func binDir(t *testing.T) string {
	t.Helper()
	extra := os.Getenv("CELL_VMLAB_EXTRA")
	if extra == "" {
		t.Fatal("CELL_VMLAB_EXTRA is unset: run these tests with make integration-vm")
	}
	dir := filepath.Join(extra, "bin")
	for _, b := range []string{"cellroot", "testcell"} {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			t.Fatalf("binary under test missing: %v", err)
		}
	}
	return dir
}

func testCtx(t *testing.T, limit time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Scaled(t, limit))
	t.Cleanup(cancel)
	return ctx
}

func writeAllowlist(t *testing.T, path, text string) string {
	t.Helper()
	text = strings.ReplaceAll(text, "@BIN@", binDir(t))
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// startSession execs a root for this test with the given allowlist.
func startSession(t *testing.T, allowlistText string) (*cell.Session, *testutil.SyncBuffer) {
	t.Helper()
	log := &testutil.SyncBuffer{}
	s, err := cell.Start(testCtx(t, 2*time.Minute), cell.OwnerOptions{
		Cellroot:  filepath.Join(binDir(t), "cellroot"),
		Allowlist: writeAllowlist(t, filepath.Join(t.TempDir(), "allowlist.toml"), allowlistText),
		Args:      []string{"--log-format", "json", "--ready-timeout", testutil.Scaled(t, 90*time.Second).String()},
		Stderr:    io.MultiWriter(log, testutil.LogWriter(t)),
	})
	if err != nil {
		t.Fatalf("start session: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s, log
}

func call(t *testing.T, s *cell.Session, name, method, arg string) (string, error) {
	t.Helper()
	ctx := testCtx(t, 3*time.Minute)
	conn, err := s.Grow(ctx, name)
	if err != nil {
		t.Fatalf("grow %s: %v", name, err)
	}
	defer conn.Close()
	out, err := conn.Call(ctx, method, []byte(arg))
	return string(out), err
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
