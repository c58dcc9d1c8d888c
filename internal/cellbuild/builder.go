package cellbuild

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/cellproject/cell/bwrap"
)

// Flags are the build flags every cell is built with; they are part of the
// cache key.
var Flags = []string{"-trimpath", "-buildvcs=false"}

var (
	// ErrOffline: the build needs a module that is neither vendored nor in
	// the module cache; builds never download.
	ErrOffline = errors.New("build: needs the network")
	// ErrToolchain: the Go toolchain or bubblewrap could not be run.
	ErrToolchain = errors.New("build: toolchain unavailable")
)

// Error is a failed compile: the cell, why, and the compiler's output.
type Error struct {
	Cell   string
	Dir    string
	Output string
	Err    error // ErrOffline, or the go command's exit error
}

func (e *Error) Error() string {
	out := strings.TrimRight(e.Output, "\n")
	if errors.Is(e.Err, ErrOffline) {
		return fmt.Sprintf("build of cell %s failed: it needs modules that are not vendored, and builds run offline "+
			"(no network, GOPROXY=off): vendor them with `go mod vendor` in the module of %s and build again\ncompiler output:\n%s",
			e.Cell, e.Dir, out)
	}
	return fmt.Sprintf("build of cell %s failed (%v); compiler output:\n%s", e.Cell, e.Err, out)
}

func (e *Error) Unwrap() error { return e.Err }

// Builder builds cells into CacheDir. The zero value builds with go and
// bwrap from $PATH into $XDG_CACHE_HOME/cell.
type Builder struct {
	// Go is the go command; "" is "go" on $PATH.
	Go string
	// Bwrap is bubblewrap; "" is "bwrap" on $PATH.
	Bwrap string
	// CacheDir holds builds/, bin/ and the private gocache/; "" is
	// DefaultCacheDir().
	CacheDir string
	// Progress receives one line per cell and step; nil discards them.
	Progress io.Writer
}

// Result is one built (or found) cell.
type Result struct {
	Name string
	// Binary is the build in the cache, Installed the stable path that
	// points at it and that the allowlist's exec names.
	Binary, Installed string
	SourceSHA256      string
	BinarySHA256      string
	// Cached is true when nothing was compiled.
	Cached bool
}

// Record is build.json, written beside each cached binary.
type Record struct {
	Version      int       `json:"version"`
	Name         string    `json:"name"`
	SourceDir    string    `json:"source_dir"`
	SourceSHA256 string    `json:"source_sha256"`
	GoVersion    string    `json:"go_version"`
	Flags        string    `json:"flags"`
	BinarySHA256 string    `json:"binary_sha256"`
	Built        time.Time `json:"built"`
}

// RecordName is the file beside a cached binary that says what it is.
const RecordName = "build.json"

// DefaultCacheDir is $XDG_CACHE_HOME/cell (~/.cache/cell).
func DefaultCacheDir() (string, error) {
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("build: find the cache dir: %w", err)
	}
	return filepath.Join(d, "cell"), nil
}

func (b *Builder) cacheDir() (string, error) {
	if b.CacheDir != "" {
		return b.CacheDir, nil
	}
	return DefaultCacheDir()
}

// InstalledPath is the stable path of a cell's current build: a symlink in
// cacheDir/bin that each build of the cell's dir moves to its new binary.
// The allowlist's exec names it, so the entry survives source changes while
// the root checks, at each launch, that it points at a build of the source
// now in the dir.
func InstalledPath(cacheDir, sourceDir, name string) string {
	sum := sha256.Sum256([]byte(filepath.Clean(sourceDir)))
	return filepath.Join(cacheDir, "bin", hex.EncodeToString(sum[:8]), name)
}

type toolchain struct {
	goBin, goroot, version, modcache string
}

// toolchain asks the go command where it lives and what it is. It runs
// outside the sandbox but compiles nothing and reads no app file (cwd /).
func (b *Builder) toolchain(ctx context.Context) (toolchain, error) {
	goBin := b.Go
	if goBin == "" {
		goBin = "go"
	}
	p, err := exec.LookPath(goBin)
	if err != nil {
		return toolchain{}, fmt.Errorf("%w: the go command %q: %v (install Go, or pass its path)", ErrToolchain, goBin, err)
	}
	cmd := exec.CommandContext(ctx, p, "env", "GOROOT", "GOVERSION", "GOMODCACHE")
	cmd.Dir = "/"
	cmd.Env = append(os.Environ(), "GOTOOLCHAIN=local", "GOFLAGS=", "GOWORK=off")
	out, err := cmd.Output()
	if err != nil {
		return toolchain{}, fmt.Errorf("%w: %s env: %v", ErrToolchain, p, err)
	}
	f := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if len(f) != 3 || !filepath.IsAbs(f[0]) || f[1] == "" {
		return toolchain{}, fmt.Errorf("%w: %s env printed %q", ErrToolchain, p, out)
	}
	return toolchain{goBin: filepath.Join(f[0], "bin", "go"), goroot: f[0], version: f[1], modcache: f[2]}, nil
}

// Build builds each source in order, or finds it in the cache, and points
// its installed path at the result. It stops at the first failure.
func (b *Builder) Build(ctx context.Context, srcs []Source) ([]Result, error) {
	cache, err := b.cacheDir()
	if err != nil {
		return nil, err
	}
	for _, d := range []string{"builds", "bin", "gocache"} {
		if err := os.MkdirAll(filepath.Join(cache, d), 0o700); err != nil {
			return nil, fmt.Errorf("build: %w", err)
		}
	}
	var tc *toolchain
	var results []Result
	for i, src := range srcs {
		step := fmt.Sprintf("[%d/%d] %s", i+1, len(srcs), src.Name)
		sum, err := src.Hash()
		if err != nil {
			return results, err
		}
		if tc == nil {
			t, err := b.toolchain(ctx)
			if err != nil {
				return results, err
			}
			tc = &t
		}
		mode := src.mode()
		flags := "CGO_ENABLED=0 " + mode + " " + strings.Join(Flags, " ")
		key := cacheKey(src.Name, src.Dir, sum, tc.version, flags)
		dir := filepath.Join(cache, "builds", key)
		r := Result{Name: src.Name, Binary: filepath.Join(dir, src.Name), SourceSHA256: sum,
			Installed: InstalledPath(cache, src.Dir, src.Name)}
		if rec, err := ReadRecord(dir); err == nil {
			if bin, err := FileSHA256(r.Binary); err == nil && bin == rec.BinarySHA256 {
				r.Cached, r.BinarySHA256 = true, bin
				b.progress("build %s: cached (source %s, %s)", step, sum[:12], tc.version)
			} else {
				b.progress("build %s: the cached binary in %s does not match its build.json; rebuilding", step, dir)
				os.RemoveAll(dir)
			}
		}
		if !r.Cached {
			b.progress("build %s: compiling (source %s, %s, %s)", step, sum[:12], tc.version, mode)
			start := time.Now()
			if r.BinarySHA256, err = b.compile(ctx, *tc, src, cache, dir, Record{
				Version: 1, Name: src.Name, SourceDir: src.Dir, SourceSHA256: sum,
				GoVersion: tc.version, Flags: flags,
			}); err != nil {
				return results, err
			}
			b.progress("build %s: built in %s", step, time.Since(start).Round(time.Millisecond))
		}
		if err := install(r.Binary, r.Installed); err != nil {
			return results, err
		}
		results = append(results, r)
	}
	return results, nil
}

func (s Source) mode() string {
	if s.vendored() || !s.hasRequires() {
		return "-mod=vendor"
	}
	return "-mod=readonly"
}

// cacheKey names a build. The source dir is part of it because a build's
// record says which dir it is of, and the root checks that against the
// allowlist's source: two apps with equal sources get two entries.
func cacheKey(name, dir, source, goVersion, flags string) string {
	h := sha256.New()
	fmt.Fprintf(h, "cell-build v1\nname %s\ndir %q\nsource %s\ngo %s\nflags %s\n", name, dir, source, goVersion, flags)
	return hex.EncodeToString(h.Sum(nil))
}

// ReadRecord reads the build.json of a cache entry.
func ReadRecord(dir string) (Record, error) {
	var r Record
	data, err := os.ReadFile(filepath.Join(dir, RecordName))
	if err != nil {
		return r, err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return r, fmt.Errorf("build: %s: %w", filepath.Join(dir, RecordName), err)
	}
	if r.Version != 1 {
		return r, fmt.Errorf("build: %s: unknown version %d", filepath.Join(dir, RecordName), r.Version)
	}
	return r, nil
}

func (b *Builder) progress(format string, args ...any) {
	if b.Progress != nil {
		fmt.Fprintf(b.Progress, format+"\n", args...)
	}
}

// compile runs go build in the sandbox into a temporary dir beside the
// cache entry and renames it into place, so that an entry is either
// complete or absent.
func (b *Builder) compile(ctx context.Context, tc toolchain, src Source, cache, dir string, rec Record) (string, error) {
	tmp, err := os.MkdirTemp(filepath.Join(cache, "builds"), ".tmp-")
	if err != nil {
		return "", fmt.Errorf("build: %w", err)
	}
	defer os.RemoveAll(tmp)
	bw, err := bwrap.Find(b.Bwrap)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrToolchain, err)
	}
	gocache := filepath.Join(cache, "gocache")
	args, env := sandboxArgs(tc, src, tmp, gocache)
	cmd := exec.CommandContext(ctx, bw, args...)
	cmd.Env = env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return "", fmt.Errorf("build of cell %s: %w", src.Name, ctx.Err())
		}
		return "", &Error{Cell: src.Name, Dir: src.Dir, Output: out.String(), Err: classify(out.String(), err)}
	}
	sum, err := FileSHA256(filepath.Join(tmp, src.Name))
	if err != nil {
		return "", fmt.Errorf("build of cell %s: no binary: %w\n%s", src.Name, err, out.String())
	}
	rec.BinarySHA256, rec.Built = sum, time.Now().UTC()
	data, _ := json.MarshalIndent(rec, "", "  ")
	if err := os.WriteFile(filepath.Join(tmp, RecordName), append(data, '\n'), 0o600); err != nil {
		return "", fmt.Errorf("build: %w", err)
	}
	if err := os.Chmod(tmp, 0o700); err != nil {
		return "", fmt.Errorf("build: %w", err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		// Another build of the same key won the race; its result is as good.
		if _, statErr := ReadRecord(dir); statErr != nil {
			return "", fmt.Errorf("build: %w", err)
		}
	}
	return sum, nil
}

// sandboxArgs is bwrap's argv and the go command's environment.
func sandboxArgs(tc toolchain, src Source, out, gocache string) (args, env []string) {
	args = []string{
		"--unshare-all", "--unshare-user", // no network: --unshare-all takes it
		"--die-with-parent", "--new-session", "--cap-drop", "ALL",
		"--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp",
		"--ro-bind", tc.goroot, tc.goroot,
		"--ro-bind", src.Module, src.Module,
	}
	modcache := "/tmp/gomodcache"
	mode := src.mode()
	if mode == "-mod=readonly" && tc.modcache != "" {
		if _, err := os.Stat(tc.modcache); err == nil {
			args = append(args, "--ro-bind", tc.modcache, tc.modcache)
			modcache = tc.modcache
		}
	}
	args = append(args,
		"--bind", out, out,
		"--bind", gocache, gocache,
		"--chdir", src.Dir,
		"--", tc.goBin, "build")
	args = append(args, Flags...)
	args = append(args, "-o", filepath.Join(out, src.Name), ".")
	env = []string{
		"PATH=" + filepath.Join(tc.goroot, "bin") + ":/usr/bin:/bin",
		"HOME=/tmp", "TMPDIR=/tmp",
		"GOROOT=" + tc.goroot,
		"GOCACHE=" + gocache,
		"GOPATH=/tmp/gopath",
		"GOMODCACHE=" + modcache,
		"GOFLAGS=" + mode,
		"GOPROXY=off", "GOSUMDB=off", "GONOSUMDB=*", "GOPRIVATE=",
		"GOTOOLCHAIN=local", "GOWORK=off", "GOENV=off", "GOTELEMETRY=off",
		"CGO_ENABLED=0",
	}
	return args, env
}

// classify tells an offline failure (a module to fetch) from a compile error.
func classify(out string, err error) error {
	for _, s := range []string{
		"disabled by -mod=vendor", "disabled by GOPROXY=off", "cannot find module providing package",
		"no required module provides package", "inconsistent vendoring", "missing go.sum entry",
		"is not in std",
	} {
		if strings.Contains(out, s) {
			return ErrOffline
		}
	}
	return err
}

// install points the stable path at bin: a new symlink renamed over the old
// one, so that a launch never sees a missing or half-written link.
func install(bin, link string) error {
	if err := os.MkdirAll(filepath.Dir(link), 0o700); err != nil {
		return fmt.Errorf("build: install: %w", err)
	}
	var rnd [6]byte
	rand.Read(rnd[:])
	tmp := link + ".new-" + hex.EncodeToString(rnd[:])
	if err := os.Symlink(bin, tmp); err != nil {
		return fmt.Errorf("build: install: %w", err)
	}
	if err := os.Rename(tmp, link); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("build: install: %w", err)
	}
	return nil
}

// Resolve follows a cell's installed path to its cache entry and reads what
// it is: the root's vetting hook uses it to learn which source the binary
// it is about to launch was built from.
func Resolve(installed string) (binary string, rec Record, err error) {
	binary, err = filepath.EvalSymlinks(installed)
	if err != nil {
		return "", rec, fmt.Errorf("build: %s: %w (build the app first: cellroot run or cellroot build)", installed, err)
	}
	rec, err = ReadRecord(filepath.Dir(binary))
	if err != nil {
		return "", rec, fmt.Errorf("build: %s is not a cell build (%w)", binary, err)
	}
	return binary, rec, nil
}
