//go:build vmlab

package integration

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cellproject/cell/internal/hostcap"
)

// These tests need the VM lab (test/vmlab: cgroup v2 with cpu, memory and
// pids delegated to the user, Podman 5): there the podman backend enforces
// limits, and they prove it from outside the container.

const podmanVMAllowlist = `
version = 1

[cell.limited]
exec = "@BIN@/testcell"
backend = "podman"
limits = { memory = "64M", cpu = 0.5, pids = 32 }

[cell.bystander]
exec = "@BIN@/testcell"
backend = "podman"
limits = { memory = "64M" }
`

// In the lab the binaries under test come on the test disk: run.sh with
// VMLAB_EXTRA set to a folder holding bin/ (cellroot, the examples and
// testcell, as make test builds them).
func init() {
	if os.Getenv("CELL_TEST_BIN") == "" && os.Getenv("CELL_VMLAB_EXTRA") != "" {
		os.Setenv("CELL_TEST_BIN", filepath.Join(os.Getenv("CELL_VMLAB_EXTRA"), "bin"))
	}
}

func requireEnforcingPodman(t *testing.T) {
	t.Helper()
	requirePodman(t)
	if ok, why := hostcap.RootlessLimits(); !ok {
		t.Fatalf("the VM lab must enforce rootless limits, but: %s", why)
	}
}

// containerCgroup is the cgroup v2 dir of the container's main process.
func containerCgroup(t *testing.T, name string) string {
	t.Helper()
	out, err := exec.Command("podman", "inspect", "--format", "{{.State.Pid}}", name).Output()
	if err != nil {
		t.Fatalf("podman inspect %s: %v", name, err)
	}
	pid := strings.TrimSpace(string(out))
	data, err := os.ReadFile("/proc/" + pid + "/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			return filepath.Join("/sys/fs/cgroup", p)
		}
	}
	t.Fatalf("no cgroup v2 line for pid %s: %q", pid, data)
	return ""
}

// limitUpwards reads file in dir and its parents up to the cgroup root and
// returns the first value that is not "max": Podman may set the limit on
// the container's cgroup or on a parent it made for it.
func limitUpwards(t *testing.T, dir, file string) string {
	t.Helper()
	for d := dir; strings.HasPrefix(d, "/sys/fs/cgroup/"); d = filepath.Dir(d) {
		data, err := os.ReadFile(filepath.Join(d, file))
		if err != nil {
			continue
		}
		if v := strings.TrimSpace(string(data)); v != "max" && !strings.HasPrefix(v, "max ") {
			return v
		}
	}
	return "max"
}

func TestPodmanVMLimitsInCgroup(t *testing.T) {
	requireEnforcingPodman(t)
	s, _ := startSession(t, podmanVMAllowlist)
	if got := call(t, s, "limited", "pid", ""); got == "" {
		t.Fatal("limited cell did not answer")
	}
	names := podmanContainers(t, "cell.session="+s.ID(), "cell.name=limited")
	if len(names) != 1 {
		t.Fatalf("containers of limited: %v", names)
	}
	cg := containerCgroup(t, names[0])
	for file, want := range map[string]string{
		"memory.max": "67108864",
		"cpu.max":    "50000 100000",
		"pids.max":   "32",
	} {
		if got := limitUpwards(t, cg, file); got != want {
			t.Errorf("%s of %s: %q, want %q", file, cg, got, want)
		}
	}
}

func TestPodmanVMMemoryHogKilledAlone(t *testing.T) {
	requireEnforcingPodman(t)
	s, log := startSession(t, podmanVMAllowlist)
	if got := call(t, s, "bystander", "pid", ""); got == "" {
		t.Fatal("bystander did not answer")
	}
	ctx := testCtx(t)
	conn, err := s.Grow(ctx, "limited")
	if err != nil {
		t.Fatal(err)
	}
	out, err := conn.Call(ctx, "hog", nil)
	conn.Close()
	if err == nil {
		t.Fatalf("the hog survived its 64M limit: %s", out)
	}
	waitFor(t, "the killed cell is noted", func() bool { return !listed(t, s, "limited") })
	waitFor(t, "the hog's exit is audited", func() bool {
		for _, rec := range auditRecords(log.String()) {
			if rec["event"] == "exit" && rec["cell"] == "limited" {
				// 137 is SIGKILL (the OOM killer) as Podman reports it.
				t.Logf("the hog ended: %v", rec["exit_status"])
				return true
			}
		}
		return false
	})
	if got := call(t, s, "bystander", "pid", ""); got == "" {
		t.Fatal("the bystander died with the hog")
	}
	if !listed(t, s, "bystander") {
		t.Fatal("the root lost the bystander")
	}
}

func TestPodmanVMNoNetwork(t *testing.T) {
	requireEnforcingPodman(t)
	s, _ := startSession(t, podmanVMAllowlist)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if got := call(t, s, "bystander", "dial", ln.Addr().String()); got == "ok" {
		t.Errorf("the podman cell reached the host's loopback %s: it has a network", ln.Addr())
	}
}

// TestPodmanVMUserSocket: with the user's socket-activated podman.socket
// running, the root uses it instead of a service of its own.
func TestPodmanVMUserSocket(t *testing.T) {
	requireEnforcingPodman(t)
	rt := os.Getenv("XDG_RUNTIME_DIR")
	if rt == "" {
		t.Fatal("XDG_RUNTIME_DIR is unset: the lab runs the tests in the user's systemd session")
	}
	if out, err := exec.Command("systemctl", "--user", "start", "podman.socket").CombinedOutput(); err != nil {
		t.Fatalf("systemctl --user start podman.socket: %v\n%s", err, out)
	}
	// The session lives in the user's real runtime dir, where the socket is.
	base := filepath.Join(rt, "cell")
	s, log := startSessionIn(t, podmanVMAllowlist)
	if got := call(t, s, "bystander", "pid", ""); got == "" {
		t.Fatal("bystander did not answer")
	}
	if !strings.Contains(log.String(), `"own":false`) || !strings.Contains(log.String(), filepath.Join(rt, "podman", "podman.sock")) {
		t.Errorf("the root did not use the user's podman.socket:\n%s", log.String())
	}
	s.Close()
	requireGone(t, base, s.ID())
	requireNoContainers(t, s.ID())
}
