package rundir

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// ErrLocked is returned by TryLock when another process holds the lock.
var ErrLocked = errors.New("rundir: locked by another process")

// CheckPrivate verifies that dir is a directory, not a symlink, owned by uid
// and closed to group and others.
func CheckPrivate(dir string, uid int) error {
	var st unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil {
		return fmt.Errorf("check %s: %w", dir, err)
	}
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFDIR:
		return fmt.Errorf("%w: %s is not a directory", ErrUnsafe, dir)
	case int(st.Uid) != uid:
		return fmt.Errorf("%w: %s is owned by uid %d, not %d", ErrUnsafe, dir, st.Uid, uid)
	case st.Mode&0o077 != 0:
		return fmt.Errorf("%w: %s has mode %#o, want 0700", ErrUnsafe, dir, st.Mode&0o777)
	}
	return nil
}

// TryLock takes an exclusive flock on path (creating it 0600) without
// waiting. The lock lives as long as the returned file stays open, and the
// kernel drops it when the process dies, however it dies.
func TryLock(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock %s: %w", path, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%s: %w", path, ErrLocked)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	// A collector may have locked, then removed, the file between our open
	// and our flock: a lock on an unlinked file guards nothing, and the
	// path now belongs to whoever creates it next.
	var held, named unix.Stat_t
	if unix.Fstat(int(f.Fd()), &held) != nil || unix.Lstat(path, &named) != nil ||
		held.Dev != named.Dev || held.Ino != named.Ino {
		f.Close()
		return nil, fmt.Errorf("%s: removed while being locked: %w", path, ErrLocked)
	}
	return f, nil
}

// Live reports whether session id under base may still be alive: its root
// lock exists and is held. Collection removes the locks of dead sessions, so
// a missing lock means dead; a lock that cannot be checked counts as live,
// so that nothing live is ever removed.
func Live(base, id string) bool {
	if !ValidSessionID(id) {
		return false
	}
	path := RootLockPath(base, id)
	if _, err := os.Stat(path); err != nil {
		return false
	}
	lock, err := TryLock(path)
	if err != nil {
		return true
	}
	lock.Close()
	return false
}

// RemoveAll removes path and everything under it whatever the modes a cell
// left on them: a directory without write or search permission (0500, 0)
// is opened up to 0700 first, since os.RemoveAll alone gives up on it. It
// never follows symlinks.
func RemoveAll(path string) error {
	err := os.RemoveAll(path)
	if err == nil {
		return nil
	}
	openUp(path)
	return os.RemoveAll(path)
}

// openUp makes every directory under path (path included) 0700, top down,
// so that the walk can enter what it opened.
func openUp(path string) {
	var st unix.Stat_t
	if unix.Lstat(path, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return
	}
	unix.Chmod(path, 0o700)
	entries, err := os.ReadDir(path)
	if err != nil {
		return
	}
	for _, e := range entries {
		if e.IsDir() {
			openUp(path + "/" + e.Name())
		}
	}
}
