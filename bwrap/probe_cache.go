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
const probeCacheMagic = "cell bwrap probe 2\n"

// featuresTag starts the line after the key: the binary's Features, learnt
// with the probe and valid under the same key (its identity is in it).
const featuresTag = "features "

// maxProbeCache bounds what is read of the file: a valid one is 97 bytes.
const maxProbeCache = 4 << 10

// ProbeCached is Probe, remembered: a successful probe is recorded in
// cacheDir (the user's private runtime dir) under a key of everything that
// decides its outcome (the bwrap binary's path, size, mtime and inode, the
// kernel release, the uid, the user-namespace sysctls, and the probe's own
// argv), together with the binary's [Features], and a later call with the
// same key returns nil without running a sandbox or bwrap --help: the
// features are taken from the file for [FeaturesOf] in this process. A
// missing, malformed, foreign or stale file means a probe, as does an empty
// cacheDir. Failures are not remembered: the user may fix them. cached
// reports whether the answer came from the file.
func ProbeCached(ctx context.Context, bwrapPath, cacheDir string) (cached bool, err error) {
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
		if got, f, err := readProbeCache(file); err == nil && got == key {
			features.Store(path, f)
			return true, nil
		}
	}
	if err := Probe(ctx, path); err != nil {
		return false, err
	}
	// The probe's sandbox asked bwrap for its features; only an answer
	// bwrap gave is worth remembering. A cache that cannot be written
	// costs the next start a probe, nothing more.
	if f, ok := features.Load(path); ok && keyErr == nil {
		_ = writeProbeCache(file, key, f.(Features))
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

// formatProbeCache is the cache file's contents: the magic line, the key,
// and the features as three digits 0 or 1 (Seccomp, DisableUserns,
// TmpfsSize).
func formatProbeCache(key string, f Features) string {
	bit := func(b bool) string {
		if b {
			return "1"
		}
		return "0"
	}
	return probeCacheMagic + key + "\n" + featuresTag + bit(f.Seccomp) + bit(f.DisableUserns) + bit(f.TmpfsSize) + "\n"
}

// parseProbeCache returns the key and features of a cache file's contents,
// which must be exactly what formatProbeCache writes.
func parseProbeCache(data []byte) (string, Features, error) {
	rest, ok := bytes.CutPrefix(data, []byte(probeCacheMagic))
	if !ok {
		return "", Features{}, fmt.Errorf("%w: no header", errProbeCache)
	}
	const size = 2*sha256.Size + 1 + len(featuresTag) + 3 + 1
	if len(rest) != size || rest[2*sha256.Size] != '\n' || rest[len(rest)-1] != '\n' {
		return "", Features{}, fmt.Errorf("%w: %d bytes after the header", errProbeCache, len(rest))
	}
	key := rest[:2*sha256.Size]
	for _, c := range key {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return "", Features{}, fmt.Errorf("%w: %q in the key", errProbeCache, c)
		}
	}
	bits, ok := bytes.CutPrefix(rest[2*sha256.Size+1:len(rest)-1], []byte(featuresTag))
	if !ok {
		return "", Features{}, fmt.Errorf("%w: no features", errProbeCache)
	}
	var b [3]bool
	for i, c := range bits {
		if c != '0' && c != '1' {
			return "", Features{}, fmt.Errorf("%w: %q in the features", errProbeCache, c)
		}
		b[i] = c == '1'
	}
	return string(key), Features{Seccomp: b[0], DisableUserns: b[1], TmpfsSize: b[2]}, nil
}

// readProbeCache reads the key and features from file, which must be a regular file of
// ours with mode 0600 (not a link: the runtime dir is private, but a file
// in it is trusted only when it is exactly what we write).
func readProbeCache(file string) (string, Features, error) {
	f, err := os.OpenFile(file, os.O_RDONLY|noFollow, 0)
	if err != nil {
		return "", Features{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", Features{}, err
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o600 || !ownedByUs(fi) {
		return "", Features{}, fmt.Errorf("%w: %s is not a 0600 file of ours (%s)", errProbeCache, file, fi.Mode())
	}
	data, err := io.ReadAll(io.LimitReader(f, maxProbeCache))
	if err != nil {
		return "", Features{}, err
	}
	return parseProbeCache(data)
}

// writeProbeCache replaces file atomically with key and f.
func writeProbeCache(file, key string, f Features) error {
	tmp, err := os.CreateTemp(filepath.Dir(file), probeCacheName+".tmp-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.WriteString(formatProbeCache(key, f)); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), file)
}
