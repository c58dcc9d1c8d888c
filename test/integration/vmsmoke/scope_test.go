//go:build vmlab

package vmsmoke

import (
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	godbus "github.com/godbus/dbus/v5"
)

// userSystemd connects to the user's systemd manager over the session bus
// named by DBUS_SESSION_BUS_ADDRESS; the connection is closed at cleanup.
func userSystemd(t *testing.T, ctx context.Context) *sddbus.Conn {
	t.Helper()
	requireEnv(t, "XDG_RUNTIME_DIR")
	addr := requireEnv(t, "DBUS_SESSION_BUS_ADDRESS")
	conn, err := sddbus.NewUserConnectionContext(ctx)
	if err != nil {
		t.Fatalf("connect to the user's systemd on %s: %v", addr, err)
	}
	t.Cleanup(conn.Close)
	return conn
}

// waitJob waits for a systemd job's result and fails unless it is "done".
func waitJob(t *testing.T, ctx context.Context, what string, ch <-chan string) {
	t.Helper()
	select {
	case res := <-ch:
		if res != "done" {
			t.Fatalf("%s: job result %q, want \"done\"", what, res)
		}
	case <-ctx.Done():
		t.Fatalf("%s: no job result: %v", what, ctx.Err())
	}
}

func TestTransientScopeMemoryMax(t *testing.T) {
	ctx := testContext(t, 3*time.Minute)
	conn := userSystemd(t, ctx)

	sleeper := exec.Command("sleep", "600")
	if err := sleeper.Start(); err != nil {
		t.Fatalf("start sleep: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- sleeper.Wait() }()
	t.Cleanup(func() {
		_ = sleeper.Process.Kill()
		<-exited
		exited <- nil // for a second reader, if any
	})
	pid := sleeper.Process.Pid

	const limit = 48 << 20
	unit := uniqueName(t, "cell-vmsmoke-") + ".scope"
	props := []sddbus.Property{
		sddbus.PropDescription("cell vmsmoke transient scope"),
		sddbus.PropPids(uint32(pid)),
		{Name: "MemoryMax", Value: godbus.MakeVariant(uint64(limit))},
		{Name: "TasksMax", Value: godbus.MakeVariant(uint64(16))},
	}
	ch := make(chan string, 1)
	if _, err := conn.StartTransientUnitContext(ctx, unit, "fail", props, ch); err != nil {
		t.Fatalf("StartTransientUnit %s: %v", unit, err)
	}
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_ = conn.ResetFailedUnitContext(cctx, unit)
	})
	waitJob(t, ctx, "start "+unit, ch)

	rel, err := procCgroup(pid)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(rel) != unit {
		t.Fatalf("sleep (pid %d) is in cgroup %q, want one named %s", pid, rel, unit)
	}
	got, err := readTrimmed(filepath.Join(cgroupRoot, rel, "memory.max"))
	if err != nil {
		t.Fatal(err)
	}
	if got != strconv.Itoa(limit) {
		t.Errorf("%s/memory.max = %q, want %d", rel, got, limit)
	}
	tasks, err := readTrimmed(filepath.Join(cgroupRoot, rel, "pids.max"))
	if err != nil {
		t.Fatal(err)
	}
	if tasks != "16" {
		t.Errorf("%s/pids.max = %q, want 16", rel, tasks)
	}
	prop, err := conn.GetUnitTypePropertyContext(ctx, unit, "Scope", "MemoryMax")
	if err != nil {
		t.Fatalf("read MemoryMax of %s: %v", unit, err)
	}
	if v, ok := prop.Value.Value().(uint64); !ok || v != limit {
		t.Errorf("systemd reports MemoryMax=%v for %s, want %d", prop.Value, unit, limit)
	}
	t.Logf("scope %s in %s: memory.max=%s pids.max=%s", unit, rel, got, tasks)

	stop := make(chan string, 1)
	if _, err := conn.StopUnitContext(ctx, unit, "replace", stop); err != nil {
		t.Fatalf("StopUnit %s: %v", unit, err)
	}
	waitJob(t, ctx, "stop "+unit, stop)
	select {
	case err := <-exited:
		exited <- err
		var ee *exec.ExitError
		if err == nil || !errors.As(err, &ee) {
			t.Errorf("sleep ended with %v after stopping %s, want killed by a signal", err, unit)
		}
	case <-ctx.Done():
		t.Errorf("stopping %s did not end its process %d: %v", unit, pid, ctx.Err())
	}
}
