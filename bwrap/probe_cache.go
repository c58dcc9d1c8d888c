package bwrap

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/cellproject/cell/internal/capsid"
	"github.com/cellproject/cell/internal/cellspec"
	"github.com/cellproject/cell/quota"
)

// probeCacheName is the cache file in the cache dir (the user's runtime dir).
const probeCacheName = ".bwrap-probe"

// probeCacheMagic starts the file; the number is the format's version.
const probeCacheMagic = "cell bwrap probe 1\n"

// maxProbeCache bounds what is read of the file: a valid one is 84 bytes.
const maxProbeCache = 4 << 10

// ProbeCached is Probe, remembered: a successful probe is recorded in
// cacheDir (the user's private runtime dir) under a key of everything that
// decides its outcome (the bwrap binary's path, size, mtime and inode, the
// kernel release, the uid, the user-namespace sysctls, and the probe's own
// argv), and a later call with the same key returns nil without running a
// sandbox. A missing, malformed, foreign or stale file means a probe, as
// does an empty cacheDir. Failures are not remembered: the user may fix
// them. cached reports whether the answer came from the file.
func ProbeCached(ctx context.Context, bwrapPath, cacheDir string) (cached bool, err error) {
	if bwrapPath == "" {
		bwrapPath = DefaultPath
	}
	path, err := Find(bwrapPath)
	if err != nil {
		return false, fmt.Errorf("probe: %w", err)
	}
	if cacheDir == "" {
		return false, Probe(ctx, path)
	}
	key, keyErr := probeKey(path)
	file := filepath.Join(cacheDir, probeCacheName)
	if keyErr == nil {
		if got, err := readProbeCache(file); err == nil && got == key {
			return true, nil
		}
	}
	if err := Probe(ctx, path); err != nil {
		return false, err
	}
	if keyErr == nil {
		// A cache that cannot be written costs the next start a probe,
		// nothing more.
		_ = writeProbeCache(file, key)
	}
	return false, nil
}

// probeKey hashes what decides a probe's outcome.
func probeKey(path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	var ino uint64
	if st, ok := statIno(fi); ok {
		ino = st
	}
	h := sha256.New()
	field := func(s string) { fmt.Fprintf(h, "%d:%s\n", len(s), s) }
	field(path)
	field(strconv.FormatInt(fi.Size(), 10))
	field(strconv.FormatInt(fi.ModTime().UnixNano(), 10))
	field(strconv.FormatUint(ino, 10))
	field(strconv.Itoa(os.Getuid()))
	for _, f := range []string{"/proc/sys/kernel/osrelease", "/proc/sys/user/max_user_namespaces",
		"/proc/sys/kernel/unprivileged_userns_clone", "/proc/sys/kernel/apparmor_restrict_unprivileged_userns"} {
		b, _ := os.ReadFile(f) // a missing setting is part of the key too
		field(f + "=" + strings.TrimSpace(string(b)))
	}
	field(strings.Join(probeArgs(path), "\x00"))
	return hex.EncodeToString(h.Sum(nil)), nil
}

// probeArgs stands for the sandbox Probe runs in the cache key: a cell's
// options, with every layer, around the host root made read-only. Probe's
// own argv also depends on what this bwrap supports, which the binary's
// identity in the key already covers; this covers a change of the code.
func probeArgs(path string) []string {
	o := Options{SeccompFD: 3, DisableUserns: true, TmpSize: capsid.TmpSize(quota.Limits{})}
	args := append([]string{"--ro-bind", "/", "/"}, Args(cellspec.Spec{Exec: path}, o)...)
	return append(args, "--", path, "--version")
}

// errProbeCache is a cache file that is not exactly what writeProbeCache
// writes.
var errProbeCache = errors.New("bwrap: malformed probe cache")

// parseProbeCache returns the key of a cache file's contents: the magic
// line, then 64 lowercase hex digits and a newline, nothing else.
func parseProbeCache(data []byte) (string, error) {
	rest, ok := bytes.CutPrefix(data, []byte(probeCacheMagic))
	if !ok {
		return "", fmt.Errorf("%w: no header", errProbeCache)
	}
	if len(rest) != 2*sha256.Size+1 || rest[len(rest)-1] != '\n' {
		return "", fmt.Errorf("%w: %d bytes after the header", errProbeCache, len(rest))
	}
	key := rest[:2*sha256.Size]
	for _, c := range key {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return "", fmt.Errorf("%w: %q in the key", errProbeCache, c)
		}
	}
	return string(key), nil
}

// readProbeCache reads the key from file, which must be a regular file of
// ours with mode 0600 (not a link: the runtime dir is private, but a file
// in it is trusted only when it is exactly what we write).
func readProbeCache(file string) (string, error) {
	f, err := os.OpenFile(file, os.O_RDONLY|noFollow, 0)
	if err != nil {
		return "", err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", err
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o600 || !ownedByUs(fi) {
		return "", fmt.Errorf("%w: %s is not a 0600 file of ours (%s)", errProbeCache, file, fi.Mode())
	}
	data, err := io.ReadAll(io.LimitReader(f, maxProbeCache))
	if err != nil {
		return "", err
	}
	return parseProbeCache(data)
}

// writeProbeCache replaces file atomically with key.
func writeProbeCache(file, key string) error {
	tmp, err := os.CreateTemp(filepath.Dir(file), probeCacheName+".tmp-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.WriteString(probeCacheMagic + key + "\n"); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), file)
}
