//go:build vmlab

package vm

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cellproject/cell/cell"
	"github.com/cellproject/cell/internal/testutil"
)

// installUnits puts the project's socket and service units in the user's
// unit dir, with ExecStart at the binary under test, and starts the socket.
func installUnits(t *testing.T) {
	t.Helper()
	home, _ := os.UserHomeDir()
	unitDir := filepath.Join(home, ".config/systemd/user")
	if err := os.MkdirAll(unitDir, 0o755); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(os.Getenv("CELL_VMLAB_EXTRA"), "deploy")
	for _, name := range []string{"cellroot.socket", "cellroot@.service"} {
		b, err := os.ReadFile(filepath.Join(src, name))
		if err != nil {
			t.Fatalf("unit file: %v (make integration-vm copies deploy/systemd to the test disk)", err)
		}
		text := strings.ReplaceAll(string(b), "%h/.local/bin/cellroot", filepath.Join(binDir(t), "cellroot"))
		if err := os.WriteFile(filepath.Join(unitDir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	systemctl(t, "daemon-reload")
	systemctl(t, "start", "cellroot.socket")
	t.Cleanup(func() {
		systemctl(t, "stop", "cellroot.socket")
		for _, name := range []string{"cellroot.socket", "cellroot@.service"} {
			os.Remove(filepath.Join(unitDir, name))
		}
		systemctl(t, "daemon-reload")
	})
	sock := filepath.Join(os.Getenv("XDG_RUNTIME_DIR"), cell.ActivationSocketName)
	if st, err := os.Stat(sock); err != nil || st.Mode().Type() != os.ModeSocket {
		t.Fatalf("the socket unit did not create %s: %v\n%s", sock, err, systemctl(t, "status", "cellroot.socket"))
	}
}

// rootInstances lists the active cellroot@ service instances.
func rootInstances(t *testing.T) []string {
	t.Helper()
	var units []string
	for _, line := range strings.Split(systemctl(t, "list-units", "--plain", "--no-legend", "--state=active,activating,deactivating", "cellroot@*"), "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			units = append(units, f[0])
		}
	}
	return units
}

func activatedSession(t *testing.T) *cell.Session {
	t.Helper()
	installUnits(t)
	home, _ := os.UserHomeDir()
	writeAllowlist(t, filepath.Join(home, ".config/cell/allowlist.toml"), scopeAllowlist)
	t.Setenv("CELLROOT", "")
	s, err := cell.Start(testCtx(t, 2*time.Minute), cell.OwnerOptions{})
	if err != nil {
		t.Fatalf("start through the socket: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	if _, err := call(t, s, "limited", "pid", ""); err != nil {
		t.Fatal(err)
	}
	if n := len(rootInstances(t)); n != 1 {
		t.Fatalf("%d cellroot@ instances active, want the one for this connection", n)
	}
	return s
}

func waitNoRootInstances(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(testutil.Scaled(t, 60*time.Second))
	for len(rootInstances(t)) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("cellroot@ instances remain: %v", rootInstances(t))
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func TestActivatedRootLivesAsLongAsTheConnection(t *testing.T) {
	s := activatedSession(t)
	id, dir := s.ID(), s.Dir()
	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	waitNoRootInstances(t)
	requireGone(t, id, dir)
}

func TestActivatedRootSIGKILLed(t *testing.T) {
	s := activatedSession(t)
	id, dir := s.ID(), s.Dir()
	units := rootInstances(t)
	pid, err := strconv.Atoi(systemctl(t, "show", "-p", "MainPID", "--value", units[0]))
	if err != nil || pid <= 1 {
		t.Fatalf("MainPID of %s: %v", units[0], err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitNoRootInstances(t)
	waitNoCellsOrScopes(t, id)
	s.Close()
	// The next root (through the socket again) collects the files and the
	// empty slice.
	next, err := cell.Start(testCtx(t, 2*time.Minute), cell.OwnerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	next.Close()
	requireGone(t, id, dir)
}
