package podmanhelper

import (
	"os"
	"path/filepath"
	"strings"

	"github.com/cellproject/cell/internal/rundir"
)

// privPrefix names the podman backend's private dirs under the runtime dir
// (the podman package's privPrefix: each holds the lock its live backend
// keeps).
const privPrefix = ".podman-"

// DeadBackends reports whether a podman backend under base died without
// closing: its private dir is left and its lock is free. Only such a
// backend can have left containers for the next root to collect, so this
// cheap look decides whether collection needs the helper at all.
func DeadBackends(base string) bool {
	entries, err := os.ReadDir(base)
	if err != nil {
		return false
	}
	for _, e := range entries {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), privPrefix) {
			continue
		}
		lockPath := filepath.Join(base, e.Name(), "lock")
		if _, err := os.Stat(lockPath); err != nil {
			// No lock: a backend opening right now, or one that died
			// before it took its lock, which made no container.
			continue
		}
		lock, err := rundir.TryLock(lockPath)
		if err != nil {
			continue // held: a live backend
		}
		lock.Close()
		return true
	}
	return false
}
