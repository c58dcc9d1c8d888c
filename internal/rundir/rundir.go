package rundir

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Files inside a session dir.
const (
	// UmbilicalName is the root's listener for the processes of its session.
	UmbilicalName = "umbilical.sock"
)

// ErrUnsafe is wrapped when a directory Cell would use is not private to the
// user: wrong owner, group or world access, or a symlink.
var ErrUnsafe = errors.New("rundir: unsafe directory")

// Base returns the user's Cell runtime dir, creating it when missing:
// $XDG_RUNTIME_DIR/cell, or /tmp/cell-UID when XDG_RUNTIME_DIR is unset.
// Either way it must be a real directory owned by the user with mode 0700.
func Base() (string, error) {
	return BaseFor(os.Getenv("XDG_RUNTIME_DIR"), os.Getuid())
}

// BaseFor is Base with the environment made explicit.
func BaseFor(xdgRuntimeDir string, uid int) (string, error) {
	var dir string
	if xdgRuntimeDir != "" {
		if !filepath.IsAbs(xdgRuntimeDir) {
			return "", fmt.Errorf("XDG_RUNTIME_DIR %q is not an absolute path", xdgRuntimeDir)
		}
		dir = filepath.Join(xdgRuntimeDir, "cell")
	} else {
		dir = filepath.Join(os.TempDir(), fmt.Sprintf("cell-%d", uid))
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", fmt.Errorf("create runtime dir: %w", err)
	}
	if err := CheckPrivate(dir, uid); err != nil {
		return "", err
	}
	return dir, nil
}

// NewSession creates a fresh session under base: it takes the session's
// root lock first and only then creates the dir, so that a collector, which
// removes whatever has no held lock, can never take a session being born
// for a dead one. It returns the id, the dir and the held lock.
func NewSession(base string) (id, dir string, lock *os.File, err error) {
	for range 3 {
		var raw [sessionIDLen / 2]byte
		if _, err := rand.Read(raw[:]); err != nil {
			return "", "", nil, fmt.Errorf("session id: %w", err)
		}
		id = hex.EncodeToString(raw[:])
		lock, err = TryLock(RootLockPath(base, id))
		if errors.Is(err, ErrLocked) {
			continue // a collector removed it under us: take another id
		}
		if err != nil {
			return "", "", nil, fmt.Errorf("session %s: %w", id, err)
		}
		dir = filepath.Join(base, id)
		if err := os.Mkdir(dir, 0o700); err != nil {
			os.Remove(lock.Name())
			lock.Close()
			return "", "", nil, fmt.Errorf("create session dir: %w", err)
		}
		return id, dir, lock, nil
	}
	return "", "", nil, fmt.Errorf("new session: %w", err)
}

// Sessions lists, sorted, the ids of every session that has a trace under
// base: its dir, its root lock or its record.
func Sessions(base string) ([]string, error) {
	entries, err := os.ReadDir(base)
	if err != nil {
		return nil, fmt.Errorf("list sessions: %w", err)
	}
	seen := map[string]bool{}
	for _, e := range entries {
		id := strings.TrimSuffix(strings.TrimSuffix(e.Name(), ".lock"), ".cells")
		if ValidSessionID(id) {
			seen[id] = true
		}
	}
	ids := make([]string, 0, len(seen))
	for id := range seen {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids, nil
}

// sessionIDLen is the length of the ids NewSession makes: 8 random bytes in
// lower-case hex.
const sessionIDLen = 16

// ValidSessionID reports whether id has the form NewSession gives. Garbage
// collection only ever touches what such an id names. A loop, not a regexp:
// a regexp compiled at init is paid by every root start.
func ValidSessionID(id string) bool {
	if len(id) != sessionIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// SocketPath is where the cell instance key listens inside a session dir.
func SocketPath(sessionDir, key string) string { return filepath.Join(sessionDir, key+".sock") }

// RootLockPath is held (flock) by the live root of session id for its whole
// life; a session whose root lock can be taken belongs to a dead root. It sits
// beside the session dir, not in it, because cells can write in the session
// dir and must not be able to make a live session look dead.
func RootLockPath(base, id string) string { return filepath.Join(base, id+".lock") }

// RecordPath is where the root of session id records its cells' processes,
// for the collection of a dead session; outside the session dir for the same
// reason as RootLockPath.
func RecordPath(base, id string) string { return filepath.Join(base, id+".cells") }

// RecordTempPath is where the record is written before it is renamed over
// RecordPath: a root killed in between leaves it, so collection removes it.
func RecordTempPath(base, id string) string { return RecordPath(base, id) + ".tmp" }

// LockPath is the single-instance lock of the cell instance key.
func LockPath(sessionDir, key string) string { return filepath.Join(sessionDir, key+".lock") }

// MaxSocketPath is the longest socket path bind and connect take: sun_path
// holds 108 bytes, one of them the terminating NUL.
const MaxSocketPath = 107

// ErrPathTooLong is wrapped by CheckSocketPath.
var ErrPathTooLong = errors.New("rundir: socket path too long")

// CheckSocketPath reports whether key's socket in sessionDir fits sun_path,
// so that a key which could never become ready is refused before a launch.
func CheckSocketPath(sessionDir, key string) error {
	if p := SocketPath(sessionDir, key); len(p) > MaxSocketPath {
		return fmt.Errorf("%w: %s is %d bytes, sun_path holds %d", ErrPathTooLong, p, len(p), MaxSocketPath)
	}
	return nil
}

// PodmanPrivatePrefix names the podman launcher's private dirs under the
// runtime dir; the dot keeps them apart from session ids.
const PodmanPrivatePrefix = ".podman-"

// privateYoung: a private dir without its lock file may belong to a
// launcher opening right now (it makes the dir, then the lock); one this
// old lost its launcher before the lock, which made no container.
const privateYoung = time.Minute

// DeadPrivate reports whether the private dir dir of a podman launcher is
// dead: its lock is free, or it never got one and is no longer young. A
// dead dir's lock, when it has one, comes back held: close it once the dir
// is removed.
func DeadPrivate(dir string) (lock *os.File, dead bool, err error) {
	lockPath := filepath.Join(dir, "lock")
	if _, err := os.Stat(lockPath); err != nil {
		info, err := os.Stat(dir)
		return nil, err == nil && time.Since(info.ModTime()) >= privateYoung, nil
	}
	lock, err = TryLock(lockPath)
	if errors.Is(err, ErrLocked) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return lock, true, nil
}
