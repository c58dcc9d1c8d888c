// Package atomicfile replaces a file's contents so that readers see either
// the old file or the new one, whole, and never a torn write: the one way
// Cell writes the files a user or another process may read at any moment
// (the allowlist, trust.toml, a session's record).
package atomicfile

import (
	"fmt"
	"os"
	"path/filepath"
)

// Write puts data at path with mode perm: it writes a temporary file in the
// same directory, syncs it, renames it over path and syncs the directory,
// so that a crash leaves the old contents or the new, and no stray
// temporary file on failure.
func Write(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("atomic write %s: %w", path, err)
	}
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("atomic write %s: %w", path, err)
	}
	if err := tmp.Chmod(perm); err != nil {
		return fmt.Errorf("atomic write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("atomic write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("atomic write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		done = true
		return fmt.Errorf("atomic write %s: %w", path, err)
	}
	done = true
	// The rename is durable only once the directory entry is.
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}
