//go:build vmlab

package vm

import (
	"context"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cellproject/cell/cell"
	"github.com/cellproject/cell/internal/testutil"
)

// crashAllowlist: probe spawns child, both in scopes, beside a third.
const crashAllowlist = `
version = 1

[cell.probe]
exec = "@BIN@/testcell"
backend = "scope"
spawn = ["child"]
[cell.probe.limits]
memory = "64M"

[cell.child]
exec = "@BIN@/testcell"
backend = "scope"
[cell.child.limits]
memory = "64M"

[cell.bystander]
exec = "@BIN@/testcell"
backend = "scope"
[cell.bystander.limits]
memory = "64M"
`

// TestScopeCrashPoints is the scope part of issue 10's crash-point test:
// start a session, spawn probe (which spawns child) and bystander, then at
// a random moment in the spawns SIGKILL the root or end the owner's
// connection (to the root an owner crash is its umbilical's EOF), start the
// next root, and require that no process, scope, slice or file of the
// session is left. CELL_CRASHPOINTS sets the iterations (default 100);
// CELL_CRASHPOINT_SEED replays a run.
func TestScopeCrashPoints(t *testing.T) {
	n := 100
	if v, err := strconv.Atoi(os.Getenv("CELL_CRASHPOINTS")); err == nil && v > 0 {
		n = v
	}
	seed := time.Now().UnixNano()
	if v, err := strconv.ParseInt(os.Getenv("CELL_CRASHPOINT_SEED"), 10, 64); err == nil {
		seed = v
	}
	t.Logf("scope crash points: %d, seed %d (replay with CELL_CRASHPOINT_SEED=%d)", n, seed, seed)
	rng := rand.New(rand.NewSource(seed))
	allow := writeAllowlist(t, filepath.Join(t.TempDir(), "allowlist.toml"), crashAllowlist)
	start := time.Now()
	for i := 0; i < n; i++ {
		killRoot := rng.Intn(2) == 0
		delay := time.Duration(rng.Int63n(int64(4 * time.Second)))
		id, dir := crashOnce(t, allow, killRoot, delay)
		// The next root collects what the dead session left.
		next := startRoot(t, allow)
		next.Close()
		requireGone(t, id, dir)
		if units := sessionUnits(t, id); len(units) != 0 {
			t.Fatalf("iteration %d (seed %d, kill root %v after %s): units left %v", i, seed, killRoot, delay, units)
		}
	}
	t.Logf("%d scope crash points in %s", n, time.Since(start).Round(time.Second))
}

func startRoot(t *testing.T, allow string) *cell.Session {
	t.Helper()
	s, err := cell.Start(testCtx(t, 2*time.Minute), cell.OwnerOptions{
		Cellroot:  filepath.Join(binDir(t), "cellroot"),
		Allowlist: allow,
		Args:      []string{"--ready-timeout", "90s"},
		Stderr:    io.Discard,
	})
	if err != nil {
		t.Fatalf("start session: %v", err)
	}
	return s
}

// crashOnce runs one session to its crash and returns its id and dir.
func crashOnce(t *testing.T, allow string, killRoot bool, delay time.Duration) (string, string) {
	t.Helper()
	s := startRoot(t, allow)
	root := rootPid(t)
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Scaled(t, 2*time.Minute))
	defer cancel()
	var wg sync.WaitGroup
	for _, name := range []string{"probe", "bystander"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := s.Grow(ctx, name)
			if err != nil {
				return
			}
			if name == "probe" {
				conn.Call(ctx, "grow", []byte("child"))
			}
			conn.Close()
		}()
	}
	time.Sleep(delay)
	if killRoot {
		syscall.Kill(root, syscall.SIGKILL)
	}
	s.Close()
	wg.Wait()
	return s.ID(), s.Dir()
}
