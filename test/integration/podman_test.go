//go:build integration || vmlab

package integration

import (
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cellproject/cell/internal/hostcap"
	"github.com/cellproject/cell/internal/testutil"
	"github.com/cellproject/cell/wire"
)

// podmanAllowlist runs the test cells as rootless Podman containers.
const podmanAllowlist = `
version = 1

[session]
max_cells = 20
max_depth = 3

[cell.probe]
exec = "@BIN@/testcell"
backend = "podman"
spawn = ["child"]

[cell.child]
exec = "@BIN@/testcell"
backend = "podman"

[cell.limited]
exec = "@BIN@/testcell"
backend = "podman"
limits = { memory = "64M", cpu = 0.5, pids = 32 }

[cell.limitedok]
exec = "@BIN@/testcell"
backend = "podman"
limits = { memory = "64M", cpu = 0.5, pids = 32 }
accept_unenforced_limits = true

[cell.trusted]
exec = "@BIN@/testcell"
backend = "process"

[cell.talker]
exec = "@BIN@/testcell"
backend = "podman"
args = ["-no-such-flag"]
`

// requirePodman fails (never skips) when Podman is missing: these tests
// prove the podman backend and mean nothing without it.
func requirePodman(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("podman"); err != nil {
		t.Fatal("podman is not installed (apt-get install podman runc uidmap; `make test` as root installs it): the podman backend cannot be proven without it")
	}
}

// podmanContainers lists the names of the containers, in any state, whose
// labels match every filter ("cell.session=ID", "cell.base=DIR"), as the
// podman CLI of the test user sees them.
func podmanContainers(t *testing.T, filters ...string) []string {
	t.Helper()
	args := []string{"ps", "--all", "--format", "{{.Names}}"}
	for _, f := range filters {
		args = append(args, "--filter", "label="+f)
	}
	out, err := exec.Command("podman", args...).Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("podman %s: %v\n%s", strings.Join(args, " "), err, stderr)
	}
	return strings.Fields(string(out))
}

// requireNoContainers waits until no container of the session is left and
// no Podman cleanup runs.
func requireNoContainers(t *testing.T, session string) {
	t.Helper()
	deadline := time.Now().Add(testutil.Scaled(t, 15*time.Second))
	for {
		left := podmanContainers(t, "cell.session="+session)
		if len(left) == 0 {
			requireNoCleanups(t)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("session %s left containers: %v", session, left)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// requireNoCleanups waits until no Podman cleanup of an exited container
// runs (conmon starts one for every container): they must not outlive the
// test and load the machine under the next ones.
func requireNoCleanups(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(testutil.Scaled(t, 15*time.Second))
	for {
		var left []string
		for _, p := range processes(t) {
			if p.state != "Z" && strings.Contains(p.cmdline, "container cleanup") {
				left = append(left, "pid "+strconv.Itoa(p.pid)+": "+p.cmdline)
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("podman cleanups still running:\n  %s", strings.Join(left, "\n  "))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestPodmanCellServesSpawnsAndTearsDown(t *testing.T) {
	requirePodman(t)
	s, log := startSession(t, podmanAllowlist)
	base := filepath.Dir(s.Dir())

	if got := call(t, s, "probe", "pid", ""); got == "" {
		t.Fatal("the podman cell did not answer")
	}
	names := podmanContainers(t, "cell.session="+s.ID(), "cell.name=probe")
	if len(names) != 1 {
		t.Fatalf("containers labelled with the session and probe: %v, want exactly one", names)
	}
	t.Logf("probe runs as container %s", names[0])

	// A child through the umbilical, also a container.
	if got := call(t, s, "probe", "grow", "child"); !strings.HasPrefix(got, "ok") {
		t.Fatalf("probe grow child: %s", got)
	}
	if n := podmanContainers(t, "cell.session="+s.ID(), "cell.name=child"); len(n) != 1 {
		t.Fatalf("child containers: %v, want one", n)
	}

	// The environment is exactly the contract.
	var env []string
	if err := json.Unmarshal([]byte(call(t, s, "probe", "env", "")), &env); err != nil {
		t.Fatal(err)
	}
	// Podman itself adds HOME and HOSTNAME, whatever the spec says (see
	// docs/podman.md); nothing else may be there.
	var keys []string
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "HOSTNAME":
			if v != "cell" {
				t.Errorf("HOSTNAME inside the container is %q, want cell", v)
			}
			continue
		case "HOME":
			t.Logf("HOME inside the container: %q (added by Podman)", v)
			continue
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	want := []string{"CELL_NAME", "CELL_RUNTIME_DIR", "CELL_SESSION", "CELL_TOKEN", "CELL_UMBILICAL"}
	if !slices.Equal(keys, want) {
		t.Errorf("environment inside the container has %v (besides HOME and HOSTNAME), want exactly %v", keys, want)
	}

	// No network: a listener on the host's loopback is reachable from an
	// unsandboxed cell but not from the container.
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
	if got := call(t, s, "trusted", "dial", ln.Addr().String()); got != "ok" {
		t.Fatalf("control: an unsandboxed cell cannot dial %s: %s", ln.Addr(), got)
	}
	if got := call(t, s, "probe", "dial", ln.Addr().String()); got == "ok" {
		t.Errorf("the podman cell reached the host's loopback %s: it has a network", ln.Addr())
	}

	// Read-only root, private /tmp, nothing of the host but what is bound.
	home, _ := os.UserHomeDir()
	checks := []struct{ method, arg, want string }{
		{"write", "/cell-was-here", "error read-only file system"},
		{"write", "/tmp/scratch", "ok"},
		{"read", "/etc/shadow", "error no such file or directory"},
		{"read", filepath.Join(home, ".profile"), "error no such file or directory"},
		// The session dir is read-only: the root creates every file in it.
		{"write", filepath.Join(s.Dir(), "note"), "error read-only file system"},
		{"remove", filepath.Join(s.Dir(), "umbilical.sock"), "error read-only file system"},
	}
	for _, c := range checks {
		if got := call(t, s, "probe", c.method, c.arg); got != c.want {
			t.Errorf("%s %s inside the container: %q, want %q", c.method, c.arg, got, c.want)
		}
	}
	// The cell runs as the user's own uid (keep-id): that is why it can
	// connect to the 0600 sockets the root made (probe grow child above).

	allowedOnPodman := false
	for _, rec := range auditRecords(log.String()) {
		if rec["event"] == "spawn" && rec["cell"] == "probe" && rec["decision"] == "allow" && rec["backend"] == "podman" {
			allowedOnPodman = true
		}
	}
	if !allowedOnPodman {
		t.Errorf("no audit record of probe allowed on podman:\n%s", log.String())
	}

	s.Close()
	requireGone(t, base, s.ID())
	requireNoContainers(t, s.ID())
	if left := podmanContainers(t, "cell.base="+base); len(left) != 0 {
		t.Errorf("containers of this runtime dir left: %v", left)
	}
	requireEmptyRuntime(t, base)
}

// requireEmptyRuntime fails when anything is left in the runtime dir (the
// podman backend's private dir, with its service socket and cell roots,
// included) or any process names it (a Podman service the root started).
func requireEmptyRuntime(t *testing.T, base string) {
	t.Helper()
	waitFor(t, "the runtime dir is empty and no process names it", func() bool {
		entries, err := os.ReadDir(base)
		if err != nil || len(slices.DeleteFunc(entries, isHostCache)) != 0 {
			return false
		}
		for _, p := range processes(t) {
			if p.state != "Z" && strings.Contains(p.cmdline, base) {
				t.Logf("still running: pid %d: %s", p.pid, p.cmdline)
				return false
			}
		}
		return true
	})
}

func TestPodmanLimitsDeniedUnlessAccepted(t *testing.T) {
	requirePodman(t)
	s, log := startSession(t, podmanAllowlist)
	ctx := testCtx(t)
	enforced, why := hostcap.RootlessLimits()
	t.Logf("rootless limits enforced here: %v (%s)", enforced, why)

	_, err := s.Grow(ctx, "limited")
	if enforced {
		if err != nil {
			t.Fatalf("limits are enforceable here, yet grow limited: %v", err)
		}
	} else {
		if !wire.IsCode(err, wire.CodeDenied) {
			t.Fatalf("grow limited on a machine that cannot enforce limits: %v, want denied", err)
		}
		if !strings.Contains(err.Error(), "cannot enforce") || !strings.Contains(err.Error(), "cgroup") {
			t.Errorf("the denial does not give the reason: %v", err)
		}
		// The record may reach the log a moment after the reply.
		waitFor(t, "the denial is audited with code limits_unenforceable", func() bool {
			for _, rec := range auditRecords(log.String()) {
				if rec["event"] == "spawn" && rec["cell"] == "limited" && rec["decision"] == "deny" && rec["code"] == "limits_unenforceable" {
					return true
				}
			}
			return false
		})
		if n := podmanContainers(t, "cell.session="+s.ID(), "cell.name=limited"); len(n) != 0 {
			t.Errorf("the denied cell has containers: %v", n)
		}
	}
	if got := call(t, s, "limitedok", "pid", ""); got == "" {
		t.Fatal("the cell that accepts unenforced limits did not answer")
	}
	s.Close()
	requireNoContainers(t, s.ID())
}

// startPodmanOwner runs the owner helper on the podman allowlist: it grows
// probe, which grows child, and reports.
func startPodmanOwner(t *testing.T) *runningOwner {
	t.Helper()
	o := startOwnerWith(t, podmanAllowlist)
	if n := podmanContainers(t, "cell.session="+o.report.Session); len(n) != 2 {
		t.Fatalf("expected the session's two containers (probe, child) before anything is killed, found %v", n)
	}
	return o
}

func TestPodmanOwnerExits(t *testing.T) {
	requirePodman(t)
	o := startPodmanOwner(t)
	root := o.rootPid(t)
	o.cmd.Process.Signal(syscall.SIGKILL)
	o.cmd.Wait()
	requireGone(t, o.base, o.report.Session, root)
	requireNoContainers(t, o.report.Session)
	requireEmptyRuntime(t, o.base)
}

func TestPodmanRootSIGKILLedThenCollected(t *testing.T) {
	requirePodman(t)
	o := startPodmanOwner(t)
	root := o.rootPid(t)

	// A container of the same dead session that did not exit with it (as
	// if its cell ignored the umbilical), and one of the user's own.
	stray := "cell-" + o.report.Session + "-stray"
	user := "users-own-" + o.report.Session
	for _, c := range [][]string{
		{"--name", stray, "--label", "cell.session=" + o.report.Session, "--label", "cell.name=stray", "--label", "cell.base=" + o.base},
		{"--name", user, "--label", "owner=the-user"},
	} {
		args := append([]string{"create", "--network", "none"}, c...)
		args = append(args, "--rootfs", strayRoot(t), "/testcell")
		if out, err := exec.Command("podman", args...).CombinedOutput(); err != nil {
			t.Fatalf("podman %v: %v\n%s", args, err, out)
		}
	}
	t.Cleanup(func() { exec.Command("podman", "rm", "--force", user, stray).Run() })

	if err := syscall.Kill(root, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// The cells go through the umbilical closing; their containers with
	// them. The stray stays until a root runs again.
	requireNoProcesses(t, o.report.Session, root)
	if n := podmanContainers(t, "cell.session="+o.report.Session); !slices.Contains(n, stray) {
		t.Fatalf("the stray container went before any root collected it: %v", n)
	}

	s, _ := startSessionIn(t, podmanAllowlist)
	defer s.Close()
	requireGone(t, o.base, o.report.Session, root)
	requireNoContainers(t, o.report.Session)
	if n := podmanContainers(t, "owner=the-user"); !slices.Contains(n, user) {
		t.Fatalf("the user's own container %s was removed: %v", user, n)
	}
}

// strayRoot is a container root for containers the test makes itself.
func strayRoot(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{"etc", "proc", "dev", "sys", "tmp"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestPodmanExampleApp runs the example app with nothing changed but the
// allowlist's backend.
func TestPodmanExampleApp(t *testing.T) {
	requirePodman(t)
	_, stderr, base := runExampleApp(t, "podman")
	if !strings.Contains(stderr, "podman") {
		t.Errorf("the root's log does not show the cells on podman:\n%s", stderr)
	}
	waitFor(t, "the app's containers are gone", func() bool { return len(podmanContainers(t, "cell.base="+base)) == 0 })
	requireNoCleanups(t)
	requireEmptyRuntime(t, base)
}

// TestPodmanCellOutputReachesTheRootLog: what a cell prints goes to the
// root's log with its key, even when the cell exits at once (its container
// is removed as it exits).
func TestPodmanCellOutputReachesTheRootLog(t *testing.T) {
	requirePodman(t)
	s, log := startSession(t, podmanAllowlist)
	if _, err := s.Grow(testCtx(t), "talker"); err == nil {
		t.Fatal("a cell that exits on a bad flag became ready")
	}
	waitFor(t, "the cell's complaint is in the root's log", func() bool {
		for _, line := range strings.Split(log.String(), "\n") {
			if strings.Contains(line, "[talker]") && strings.Contains(line, "no-such-flag") {
				return true
			}
		}
		return false
	})
	s.Close()
	requireNoContainers(t, s.ID())
}
