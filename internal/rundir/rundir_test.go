package rundir

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
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
	id, dir, err := NewSession(base)
	if err != nil {
		t.Fatal(err)
	}
	if !ValidSessionID(id) || filepath.Dir(dir) != base {
		t.Fatalf("NewSession = %q, %q", id, dir)
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
