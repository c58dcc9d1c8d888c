//go:build integration || vmlab

package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cellproject/cell/cell"
	"github.com/cellproject/cell/wire"
)

// TestSandboxConfinement asks a bwrap cell to do what a sandbox must forbid,
// and a trusted process cell the same, so that each check is shown able to
// fail: the difference is the sandbox.
func TestSandboxConfinement(t *testing.T) {
	s, _ := startSession(t, testAllowlist)

	home, err := os.UserHomeDir()
	if err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(home, ".cell-test-secret")
	if err := os.WriteFile(secret, []byte("secret"), 0o600); err != nil {
		t.Fatalf("write a file in the user's home: %v", err)
	}
	t.Cleanup(func() { os.Remove(secret) })

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	addr := ln.Addr().String()
	bin := filepath.Join(binDir(t), "testcell")
	// Beside the session dir on the host; inside the sandbox that path falls
	// in the private /tmp or in nothing, so a write must not reach the host.
	outside := filepath.Join(filepath.Dir(s.Dir()), "outside-the-session")

	// The control: a trusted process cell reaches everything.
	for _, c := range []struct{ method, arg string }{
		{"read", secret}, {"dial", addr},
	} {
		if got := call(t, s, "trusted", c.method, c.arg); got != "ok" {
			t.Fatalf("control: trusted cell %s %s = %q, want ok (the probe itself is broken)", c.method, c.arg, got)
		}
	}

	denied := []struct{ what, method, arg string }{
		{"read a file in the user's home", "read", secret},
		{"list the user's home", "read", home},
		{"connect to a TCP listener on the host's loopback", "dial", addr},
		{"write its own binary", "append", bin},
		{"write to /", "write", "/cell-escape"},
		{"write to /var/tmp", "write", "/var/tmp/cell-escape"},
		{"write in the user's home", "write", filepath.Join(home, "cell-escape")},
		{"start a host program", "exec", "/bin/sh"},
		{"remove the root's umbilical socket", "remove", filepath.Join(s.Dir(), "umbilical.sock")},
		{"write in the session dir", "write", filepath.Join(s.Dir(), "probe-was-here")},
	}
	for _, c := range denied {
		if got := call(t, s, "probe", c.method, c.arg); got == "ok" {
			t.Errorf("a sandboxed cell could %s (%s %s)", c.what, c.method, c.arg)
		} else {
			t.Logf("sandboxed cell cannot %s: %s", c.what, got)
		}
	}
	call(t, s, "probe", "write", outside)
	for _, p := range []string{outside, "/var/tmp/cell-escape", filepath.Join(home, "cell-escape")} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s exists on the host after the sandboxed write", p)
			os.Remove(p)
		}
	}

	allowed := []struct{ what, method, arg string }{
		{"write its private /tmp", "write", "/tmp/scratch"},
	}
	for _, c := range allowed {
		if got := call(t, s, "probe", c.method, c.arg); got != "ok" {
			t.Errorf("a sandboxed cell could not %s: %s", c.what, got)
		}
	}
	if _, err := os.Stat(filepath.Join(os.TempDir(), "scratch")); err == nil {
		t.Errorf("the cell's private /tmp leaked onto the host's /tmp")
	}

	var pids []int
	if err := json.Unmarshal([]byte(call(t, s, "probe", "procs", "")), &pids); err != nil {
		t.Fatal(err)
	}
	if len(pids) > 4 {
		t.Errorf("the sandbox's /proc shows %d processes %v: host processes are visible", len(pids), pids)
	}
	for _, pid := range pids {
		if pid == os.Getpid() {
			t.Errorf("the sandbox's /proc shows the test process %d", pid)
		}
	}

	var env []string
	if err := json.Unmarshal([]byte(call(t, s, "probe", "env", "")), &env); err != nil {
		t.Fatal(err)
	}
	// bubblewrap always sets PWD to the sandbox's working dir after its own
	// environment options; it tells the cell nothing of the host.
	contract := 0
	for _, kv := range env {
		switch {
		case strings.HasPrefix(kv, "CELL_"):
			contract++
		case kv == "PWD=/":
		default:
			t.Errorf("the cell's environment holds %q: only the CELL_* contract may pass", kv)
		}
	}
	if contract != 5 {
		t.Errorf("cell environment %v: want exactly CELL_NAME, CELL_SESSION, CELL_RUNTIME_DIR, CELL_UMBILICAL, CELL_TOKEN", env)
	}

	// A cell granted the network reaches the host's loopback: the denial
	// above is the sandbox, not a broken probe.
	if got := call(t, s, "netcell", "dial", addr); got != "ok" {
		t.Errorf("a cell granted the network could not dial %s: %s", addr, got)
	}
}

// TestRecursiveSpawnAndEdges: cells spawn cells through the umbilical
// (probe -> child -> grandchild), and a spawn outside the allowlist's edges
// is refused and audited.
func TestRecursiveSpawnAndEdges(t *testing.T) {
	s, log := startSession(t, testAllowlist)
	ctx := testCtx(t)

	probe, err := s.Grow(ctx, "probe")
	if err != nil {
		t.Fatal(err)
	}
	defer probe.Close()
	if got, err := probe.Call(ctx, "grow", []byte("child")); err != nil || !strings.HasPrefix(string(got), "ok") {
		t.Fatalf("probe grow child: %q %v", got, err)
	}
	child, err := s.Connect(ctx, "child")
	if err != nil {
		t.Fatal(err)
	}
	defer child.Close()
	if got, err := child.Call(ctx, "grow", []byte("grandchild")); err != nil || !strings.HasPrefix(string(got), "ok") {
		t.Fatalf("child grow grandchild: %q %v", got, err)
	}
	got, err := probe.Call(ctx, "grow", []byte("outsider"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(got), string(wire.CodeDenied)) {
		t.Fatalf("probe grew outsider, which is not among its spawn edges: %q", got)
	}
	// max_depth = 3: grandchild (depth 3) may not spawn below itself.
	gc, err := s.Connect(ctx, "grandchild")
	if err != nil {
		t.Fatal(err)
	}
	defer gc.Close()
	if got, err := gc.Call(ctx, "grow", []byte("greatgrandchild")); err != nil || !strings.Contains(string(got), "max_depth") {
		t.Fatalf("grandchild grow greatgrandchild past max_depth: %q %v", got, err)
	}

	cells, err := s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	parents := map[string]string{}
	for _, c := range cells {
		parents[c.Key] = c.Parent
	}
	want := map[string]string{"probe": "", "child": "probe", "grandchild": "child"}
	for k, p := range want {
		if got, ok := parents[k]; !ok || got != p {
			t.Errorf("list: %s has parent %q (present %v), want %q", k, got, ok, p)
		}
	}
	if _, ok := parents["outsider"]; ok {
		t.Error("the denied outsider runs")
	}

	// The owner itself is refused a cell that is not listed, with the code.
	if _, err := s.Grow(ctx, "unlisted"); !wire.IsCode(err, wire.CodeDenied) {
		t.Errorf("owner grow unlisted: %v, want denied", err)
	}

	// The audit reaches this test through the SDK's copy of cellroot's
	// stderr, a moment after the replies.
	count := func() (denials, allows int) {
		for _, rec := range auditRecords(log.String()) {
			if rec["event"] != "spawn" {
				continue
			}
			if rec["decision"] == "deny" {
				denials++
				if rec["cell"] == "outsider" && rec["requester"] != "probe" {
					t.Errorf("audit of the outsider denial names requester %v", rec["requester"])
				}
			} else {
				allows++
			}
		}
		return denials, allows
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		denials, allows := count()
		if denials >= 3 && allows >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("audit has %d denials and %d allows; want every decision (3 and 3 at least):\n%s", denials, allows, log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestConcurrentGrowOneInstance(t *testing.T) {
	s, _ := startSession(t, testAllowlist)
	const n = 20
	errs := make(chan error, n)
	pids := make(chan string, n)
	for range n {
		go func() {
			pid, err := growCounterInProcess(t, s)
			errs <- err
			pids <- pid
		}()
	}
	seen := map[string]bool{}
	for range n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
		seen[<-pids] = true
	}
	if len(seen) != 1 {
		t.Fatalf("%d processes growing one cell reached %d instances: %v", n, len(seen), seen)
	}
	// Count the cell programs themselves, not the bubblewrap processes
	// around them, which carry the same environment.
	testcell := filepath.Join(binDir(t), "testcell")
	count := 0
	for _, p := range processes(t) {
		if p.state != "Z" && strings.HasPrefix(p.cmdline, testcell) && p.hasEnv("CELL_NAME=counter") && p.hasEnv("CELL_SESSION="+s.ID()) {
			count++
		}
	}
	if count != 1 {
		t.Fatalf("found %d counter programs in the session, want 1", count)
	}
}

// growCounterInProcess runs the test binary as another process of the owner
// (with the session's owner environment) that grows counter and prints the
// pid of the instance it reached.
func growCounterInProcess(t *testing.T, s *cell.Session) (string, error) {
	self, err := os.Executable()
	if err != nil {
		return "", err
	}
	cmd := exec.Command(self)
	cmd.Env = append([]string{"CELL_IT_ROLE=grower", "PATH=/usr/bin:/bin"}, s.Env()...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("grow helper: %v: %s", err, stderr.String())
	}
	return strings.TrimSpace(string(out)), nil
}
