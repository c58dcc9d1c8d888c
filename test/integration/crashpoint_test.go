//go:build integration || vmlab

package integration

import (
	"context"
	"fmt"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cellproject/cell/cell"
	"github.com/cellproject/cell/internal/testutil"
)

// The crash-point test (issue 10): start a session, spawn a few cells (one
// nested), kill the root or the owner at a random moment in the spawns,
// start the next root, and look for anything left: processes, containers
// (with --external), files. CELL_CRASHPOINTS sets the iterations per backend
// (make crashpoints: 100; make test: 2); CELL_CRASHPOINT_SEED replays a run.

func crashIterations(t *testing.T) int {
	t.Helper()
	v := os.Getenv("CELL_CRASHPOINTS")
	if v == "" {
		return 2
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("CELL_CRASHPOINTS=%q is not a positive count", v)
	}
	return n
}

func crashSeed(t *testing.T) int64 {
	t.Helper()
	if v := os.Getenv("CELL_CRASHPOINT_SEED"); v != "" {
		seed, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			t.Fatalf("CELL_CRASHPOINT_SEED=%q: %v", v, err)
		}
		return seed
	}
	return time.Now().UnixNano()
}

// crashBackend is one backend's run: the allowlist, the cells the owner
// spawns beside probe (which spawns child), and how long spawns take here.
type crashBackend struct {
	name      string
	allowlist string
	other     string
	window    time.Duration
	podman    bool
}

func TestCrashPoints(t *testing.T) {
	n, seed := crashIterations(t), crashSeed(t)
	t.Logf("crash points: %d per backend, seed %d (replay with CELL_CRASHPOINT_SEED=%d)", n, seed, seed)
	for _, b := range []crashBackend{
		{name: "bwrap", allowlist: testAllowlist, other: "counter", window: 600 * time.Millisecond},
		{name: "podman", allowlist: podmanAllowlist, other: "limitedok", window: 3 * time.Second, podman: true},
	} {
		t.Run(b.name, func(t *testing.T) {
			if b.podman {
				requirePodman(t)
			}
			rng := rand.New(rand.NewSource(seed))
			base := isolatedRuntime(t)
			allow := writeAllowlist(t, b.allowlist)
			start := time.Now()
			collected := map[string]int{}
			for i := 0; i < n; i++ {
				mode := rng.Intn(3)
				delay := time.Duration(rng.Int63n(int64(b.window)))
				what := fmt.Sprintf("%s iteration %d (seed %d): %s", b.name, i, seed, [...]string{
					"kill the owner after " + delay.String(), "kill the root after " + delay.String(),
					"kill the root inside a launch, " + (delay / 16).String() + " after its first sign"}[mode])
				switch mode {
				case 0:
					crashOwner(t, b, allow, delay)
				case 1:
					crashRoot(t, b, allow, delay, false)
				case 2:
					// Aimed at the launch itself: the moment the backend's
					// first process for a cell appears (conmon, bwrap), plus
					// a little, is when a create or start is cut short.
					crashRoot(t, b, allow, delay/16, true)
				}
				for k, v := range requireNothingLeft(t, b, base, allow, what) {
					collected[k] += v
				}
			}
			// What the next roots found to collect shows that the kills
			// hit the spawns, not only quiet moments.
			t.Logf("%d crash points in %s; the next roots collected: %v", n, time.Since(start).Round(time.Second), collected)
		})
	}
}

// crashRoot runs a session owned by this process and SIGKILLs its root
// delay after the spawns began or, when aimed, delay after the first process
// of a launch (conmon or bwrap naming the session) appeared.
func crashRoot(t *testing.T, b crashBackend, allow string, delay time.Duration, aimed bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := cell.Start(ctx, cell.OwnerOptions{
		Cellroot:  filepath.Join(binDir(t), "cellroot"),
		Allowlist: allow,
		Stderr:    io.Discard,
	})
	if err != nil {
		t.Fatalf("start session: %v", err)
	}
	root := rootPidOf(t, s)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		if conn, err := s.Grow(ctx, "probe"); err == nil {
			conn.Call(ctx, "grow", []byte("child"))
			conn.Close()
		}
	}()
	go func() {
		defer wg.Done()
		if conn, err := s.Grow(ctx, b.other); err == nil {
			conn.Close()
		}
	}()
	if aimed {
		waitLaunchSign(s.ID(), 10*time.Second)
	}
	time.Sleep(delay)
	syscall.Kill(root, syscall.SIGKILL)
	wg.Wait()
	s.Close()
}

// waitLaunchSign polls until a conmon or bwrap process names the session.
func waitLaunchSign(session string, limit time.Duration) {
	end := time.Now().Add(limit)
	for time.Now().Before(end) {
		entries, _ := os.ReadDir("/proc")
		for _, e := range entries {
			cmd, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
			if err == nil && strings.Contains(string(cmd), session) && (strings.Contains(string(cmd), "conmon") || strings.Contains(string(cmd), "bwrap")) {
				return
			}
		}
		time.Sleep(time.Millisecond)
	}
}

// crashOwner runs the owner helper (TestMain's "owner" role: it grows probe,
// which grows child) and SIGKILLs it delay after its start.
func crashOwner(t *testing.T, b crashBackend, allow string, delay time.Duration) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), "CELL_IT_ROLE=owner",
		"CELL_IT_CELLROOT="+filepath.Join(binDir(t), "cellroot"), "CELL_IT_ALLOWLIST="+allow)
	cmd.Stderr = testutil.LogWriter(t)
	stdin, err := cmd.StdinPipe() // held open: the helper waits on it
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(delay)
	cmd.Process.Kill()
	cmd.Wait()
}

// requireNothingLeft starts the next root in the same runtime dir (which
// collects what the dead session left), ends it, and then requires that
// nothing of any session is left: no file under base, no process naming
// base, no conmon or runc init of ours, no container of ours in Podman,
// external ones included.
// It returns how often the next root's log reported each kind of collection.
func requireNothingLeft(t *testing.T, b crashBackend, base, allow, what string) map[string]int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var log testutil.SyncBuffer
	next, err := cell.Start(ctx, cell.OwnerOptions{
		Cellroot:  filepath.Join(binDir(t), "cellroot"),
		Allowlist: allow,
		Stderr:    &log,
	})
	if err != nil {
		t.Fatalf("%s: the next root did not start: %v", what, err)
	}
	next.Close()
	found := map[string]int{}
	for _, kind := range []string{"collected dead session", "killed conmon and runc processes", "removed containers of dead sessions"} {
		if n := strings.Count(log.String(), kind); n > 0 {
			found[kind] = n
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		left := leftovers(t, b, base)
		if len(left) == 0 {
			return found
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: left behind after the next root:\n  %s\nthe next root's log:\n%s", what, strings.Join(left, "\n  "), log.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func leftovers(t *testing.T, b crashBackend, base string) []string {
	t.Helper()
	var left []string
	entries, _ := os.ReadDir(base)
	for _, e := range entries {
		if !isHostCache(e) {
			left = append(left, "file "+filepath.Join(base, e.Name()))
		}
	}
	uid := uint32(os.Getuid())
	for _, p := range processes(t) {
		if p.pid == os.Getpid() || p.state == "Z" {
			continue
		}
		var st unix.Stat_t
		if unix.Stat(fmt.Sprintf("/proc/%d", p.pid), &st) != nil || st.Uid != uid {
			continue
		}
		env := strings.Join(p.environ, "\n")
		runcInit := strings.Contains(p.cmdline, "runc") && strings.Contains(p.cmdline, " init")
		conmon := strings.HasPrefix(p.cmdline, "conmon") || strings.Contains(p.cmdline, "/conmon ")
		if strings.Contains(p.cmdline, base) || strings.Contains(env, base) || runcInit || (conmon && strings.Contains(p.cmdline, "cell-")) {
			left = append(left, fmt.Sprintf("process %d (%s): %s", p.pid, p.state, p.cmdline))
		}
	}
	if b.podman {
		out, err := exec.Command("podman", "ps", "--all", "--external", "--format", "{{.ID}} {{.Names}} {{.State}}").Output()
		if err != nil {
			t.Fatalf("podman ps --all --external: %v", err)
		}
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && strings.HasPrefix(f[1], "cell-") {
				left = append(left, "container "+line)
			}
		}
	}
	return left
}
