package podmanhelper

import (
	"os"
	"path/filepath"
	"strings"

	"github.com/cellproject/cell/internal/rundir"
)

// DeadBackends reports whether a podman launcher under base died without
// closing: its private dir is left and dead (rundir.DeadPrivate). Only such
// a launcher can have left containers for the next root to collect, so this
// cheap look decides whether collection needs the helper at all.
func DeadBackends(base string) bool {
	entries, err := os.ReadDir(base)
	if err != nil {
		return false
	}
	for _, e := range entries {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), rundir.PodmanPrivatePrefix) {
			continue
		}
		lock, dead, _ := rundir.DeadPrivate(filepath.Join(base, e.Name()))
		if lock != nil {
			lock.Close()
		}
		if dead {
			return true
		}
	}
	return false
}
