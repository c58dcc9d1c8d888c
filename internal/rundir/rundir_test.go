package rundir

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestBaseForCreatesPrivateDir(t *testing.T) {
	xdg := t.TempDir()
	dir, err := BaseFor(xdg, os.Getuid())
	if err != nil {
		t.Fatal(err)
	}
	if dir != filepath.Join(xdg, "cell") {
		t.Fatalf("dir = %s", dir)
	}
	st, err := os.Stat(dir)
	if err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("mode = %v, %v; want 0700", st.Mode(), err)
	}
}

func TestBaseForRefusesUnsafeDirs(t *testing.T) {
	xdg := t.TempDir()
	if err := os.Mkdir(filepath.Join(xdg, "cell"), 0o777); err != nil {
		t.Fatal(err)
	}
	os.Chmod(filepath.Join(xdg, "cell"), 0o777)
	if _, err := BaseFor(xdg, os.Getuid()); !errors.Is(err, ErrUnsafe) {
		t.Errorf("world-writable: err = %v, want ErrUnsafe", err)
	}

	xdg2 := t.TempDir()
	target := t.TempDir()
	if err := os.Symlink(target, filepath.Join(xdg2, "cell")); err != nil {
		t.Fatal(err)
	}
	if _, err := BaseFor(xdg2, os.Getuid()); !errors.Is(err, ErrUnsafe) {
		t.Errorf("symlink: err = %v, want ErrUnsafe", err)
	}

	if _, err := BaseFor(t.TempDir(), os.Getuid()+1); !errors.Is(err, ErrUnsafe) {
		t.Errorf("other owner: err = %v, want ErrUnsafe", err)
	}
	if _, err := BaseFor("relative/dir", os.Getuid()); err == nil {
		t.Error("a relative XDG_RUNTIME_DIR was accepted")
	}
}

func TestSessionsListsEveryTrace(t *testing.T) {
	base := t.TempDir()
	id, dir, lock, err := NewSession(base)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if !ValidSessionID(id) || filepath.Dir(dir) != base {
		t.Fatalf("NewSession = %q, %q", id, dir)
	}
	// The new session's root lock is held: a collector leaves it alone.
	if other, err := TryLock(RootLockPath(base, id)); !errors.Is(err, ErrLocked) {
		if other != nil {
			other.Close()
		}
		t.Fatalf("the new session's lock: %v, want ErrLocked", err)
	}
	orphan := "0123456789abcdef"
	os.WriteFile(RootLockPath(base, orphan), nil, 0o600)
	os.WriteFile(filepath.Join(base, "not-a-session"), nil, 0o600)
	os.Mkdir(filepath.Join(base, "..evil"), 0o700)
	ids, err := Sessions(base)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{orphan, id}
	if id < orphan {
		want = []string{id, orphan}
	}
	if len(ids) != 2 || ids[0] != want[0] || ids[1] != want[1] {
		t.Fatalf("Sessions = %v, want %v", ids, want)
	}
}

func TestTryLock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.lock")
	f, err := TryLock(path)
	if err != nil {
		t.Fatal(err)
	}
	// flock locks belong to the open file description: a second open in
	// the same process conflicts too.
	if _, err := TryLock(path); !errors.Is(err, ErrLocked) {
		t.Fatalf("second lock: err = %v, want ErrLocked", err)
	}
	f.Close()
	g, err := TryLock(path)
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	g.Close()
}

// TestRemoveAllWhateverTheModes builds what a cell could leave: dirs of mode
// 0500 and 0000 holding files and more dirs.
func TestRemoveAllWhateverTheModes(t *testing.T) {
	build := func() string {
		top := filepath.Join(t.TempDir(), "sess")
		deep := filepath.Join(top, "a", "b")
		if err := os.MkdirAll(deep, 0o700); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(deep, "f"), []byte("x"), 0o400)
		os.Chmod(deep, 0o500)
		os.Chmod(filepath.Join(top, "a"), 0o000)
		t.Cleanup(func() { openUp(top); os.RemoveAll(top) })
		return top
	}
	if os.Getuid() != 0 {
		// The control: what os.RemoveAll alone leaves.
		top := build()
		if err := os.RemoveAll(top); err == nil {
			t.Fatal("os.RemoveAll removed a 0000 dir: the control shows nothing")
		}
	}
	top := build()
	if err := RemoveAll(top); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(top); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s still exists: %v", top, err)
	}
}

func TestCheckSocketPath(t *testing.T) {
	dir := "/run/user/1000/cell/0123456789abcdef" // 36 bytes
	long := ""
	for len(dir)+1+len(long)+len(".sock") < MaxSocketPath {
		long += "a"
	}
	if err := CheckSocketPath(dir, long); err != nil {
		t.Fatalf("%d-byte path: %v", len(SocketPath(dir, long)), err)
	}
	if err := CheckSocketPath(dir, long+"a"); !errors.Is(err, ErrPathTooLong) {
		t.Fatalf("%d-byte path: %v, want ErrPathTooLong", len(SocketPath(dir, long+"a")), err)
	}
}

// TestDeadPrivate: a podman launcher's private dir is dead when its lock is
// free, or when it has none and is past the age of one being opened.
func TestDeadPrivate(t *testing.T) {
	base := t.TempDir()
	mk := func(name string) string {
		dir := filepath.Join(base, PodmanPrivatePrefix+name)
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	held := mk("held")
	lock, err := TryLock(filepath.Join(held, "lock"))
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	free := mk("free")
	os.WriteFile(filepath.Join(free, "lock"), nil, 0o600)
	young := mk("young")
	old := mk("old")
	ago := time.Now().Add(-2 * privateYoung)
	os.Chtimes(old, ago, ago)

	for _, c := range []struct {
		dir      string
		dead     bool
		withLock bool
	}{{held, false, false}, {free, true, true}, {young, false, false}, {old, true, false}} {
		l, dead, err := DeadPrivate(c.dir)
		if err != nil {
			t.Fatalf("%s: %v", c.dir, err)
		}
		if dead != c.dead || (l != nil) != c.withLock {
			t.Errorf("%s: dead %v, lock %v; want dead %v, lock %v", filepath.Base(c.dir), dead, l != nil, c.dead, c.withLock)
		}
		if l != nil {
			l.Close()
		}
	}
}

func TestValidSessionID(t *testing.T) {
	for id, want := range map[string]bool{
		"0123456789abcdef":  true,
		"0123456789ABCDEF":  false,
		"0123456789abcde":   false,
		"0123456789abcdef0": false,
		"0123456789abcdeg":  false,
		"../3456789abcdef":  false,
		"":                  false,
	} {
		if got := ValidSessionID(id); got != want {
			t.Errorf("ValidSessionID(%q) = %v, want %v", id, got, want)
		}
	}
}
