package supervisor

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/cellproject/cell/internal/rundir"
)

func TestLineWriterPrefixesWholeLines(t *testing.T) {
	var out bytes.Buffer
	w := newLineWriter(&out)
	a, b := w.prefixed("eye"), w.prefixed("retina")
	a.Write([]byte("hel"))
	b.Write([]byte("one\ntw"))
	a.Write([]byte("lo\n"))
	b.Write([]byte("o\n"))
	want := "[retina] one\n[eye] hello\n[retina] two\n"
	if out.String() != want {
		t.Fatalf("output %q, want %q", out.String(), want)
	}
	a.Write(bytes.Repeat([]byte("x"), maxPartialLine+1))
	if !strings.HasPrefix(out.String()[len(want):], "[eye] xxx") {
		t.Fatal("an endless line was not flushed at the bound")
	}
	if newLineWriter(nil).prefixed("x") != nil {
		t.Fatal("discarded output should give a nil writer")
	}
}

func TestProcessStartTime(t *testing.T) {
	a, err := processStartTime(os.Getpid())
	if err != nil || a == 0 {
		t.Fatalf("start time of self: %d, %v", a, err)
	}
	if b, _ := processStartTime(os.Getpid()); a != b {
		t.Fatal("start time of one process changed")
	}
	if _, err := processStartTime(1 << 30); err == nil {
		t.Fatal("start time of a pid that cannot exist")
	}
}

// TestCollect: a dead session's recorded process is killed and its files
// removed; a live session (its lock held) and a recorded pid whose start
// time no longer matches are left alone.
func TestCollect(t *testing.T) {
	base := t.TempDir()
	log := zap.NewNop()

	leftover := exec.Command("sleep", "60")
	leftover.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := leftover.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { leftover.Wait(); close(exited) }()
	t.Cleanup(func() { leftover.Process.Kill() })
	bystander := exec.Command("sleep", "60")
	bystander.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := bystander.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bystander.Process.Kill(); bystander.Wait() })

	dead, deadDir, deadLock, err := rundir.NewSession(base)
	if err != nil {
		t.Fatal(err)
	}
	deadLock.Close() // its root died
	start, err := processStartTime(leftover.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	record := fmt.Sprintf("%d %d eye\n%d %d reused\ngarbage line\n", leftover.Process.Pid, start, bystander.Process.Pid, start+12345)
	os.WriteFile(rundir.RecordPath(base, dead), []byte(record), 0o600)
	// A root killed while it rewrote the record leaves the temporary file.
	os.WriteFile(rundir.RecordTempPath(base, dead), []byte(record), 0o600)
	os.WriteFile(rundir.RootLockPath(base, dead), nil, 0o600)
	os.WriteFile(filepath.Join(deadDir, "eye.sock"), nil, 0o600)

	_, liveDir, lock, err := rundir.NewSession(base)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()

	ids, err := Collect(base, log)
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != 1 || ids[0] != dead {
		t.Fatalf("collected %v, want [%s]", ids, dead)
	}
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		t.Fatal("the dead session's recorded process still runs")
	}
	if err := bystander.Process.Signal(syscall.Signal(0)); err != nil {
		t.Fatal("a process whose start time did not match was killed")
	}
	for _, p := range []string{deadDir, rundir.RecordPath(base, dead), rundir.RecordTempPath(base, dead), rundir.RootLockPath(base, dead)} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s survived the collection", p)
		}
	}
	if _, err := os.Stat(liveDir); err != nil {
		t.Errorf("the live session's dir was removed: %v", err)
	}
}
