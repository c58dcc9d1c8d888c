package bwrap

import (
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestProbeCached runs the real probe once, then answers from the file; a
// malformed, loose or stale file means a probe again.
func TestProbeCached(t *testing.T) {
	real, err := exec.LookPath("bwrap")
	if err != nil {
		t.Fatalf("bubblewrap is needed: %v", err)
	}
	// A copy of bwrap whose mtime the test can change.
	bin := filepath.Join(t.TempDir(), "bwrap")
	copyFile(t, real, bin)
	dir := t.TempDir()
	file := filepath.Join(dir, probeCacheName)
	ctx := context.Background()
	step := func(what string, wantCached bool) {
		t.Helper()
		cached, err := ProbeCached(ctx, bin, dir)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if cached != wantCached {
			t.Fatalf("%s: cached %v, want %v", what, cached, wantCached)
		}
		fi, err := os.Stat(file)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: cache file %v %v, want mode 0600", what, fi, err)
		}
	}
	step("first probe", false)
	step("second", true)
	// The features come from the file under the same key as the probe.
	_, fromFile, err := readProbeCache(file)
	if err != nil {
		t.Fatal(err)
	}
	features.Delete(bin)
	if got := FeaturesOf(ctx, bin); got != fromFile {
		t.Errorf("cached features %+v, bwrap --help says %+v", fromFile, got)
	}
	if err := os.WriteFile(file, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	step("after garbage", false)
	step("rewritten", true)
	os.Chmod(file, 0o644)
	step("loose mode", false)
	later := time.Now().Add(time.Hour)
	if err := os.Chtimes(bin, later, later); err != nil {
		t.Fatal(err)
	}
	step("bwrap changed", false)
	step("again", true)
	os.Remove(file)
	if err := os.Symlink("/etc/passwd", file); err != nil {
		t.Fatal(err)
	}
	if _, _, err := readProbeCache(file); err == nil {
		t.Error("a symlinked cache was read")
	}
}

// TestProbeCachedFailureNotRemembered: a bwrap that fails the probe fails
// it every time and writes nothing.
func TestProbeCachedFailureNotRemembered(t *testing.T) {
	dir := t.TempDir()
	for range 2 {
		if _, err := ProbeCached(context.Background(), "/bin/false", dir); err == nil {
			t.Fatal("/bin/false passed the probe")
		}
	}
	if _, err := os.Stat(filepath.Join(dir, probeCacheName)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed probe left a cache file: %v", err)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
}

func FuzzParseProbeCache(f *testing.F) {
	f.Add([]byte(formatProbeCache("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", Features{Seccomp: true, TmpfsSize: true})))
	f.Add([]byte(probeCacheMagic))
	f.Add([]byte("cell bwrap probe 1\n0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		key, feat, err := parseProbeCache(data)
		if err != nil {
			return
		}
		if string(data) != formatProbeCache(key, feat) {
			t.Fatalf("accepted %q as key %q, features %+v", data, key, feat)
		}
	})
}
