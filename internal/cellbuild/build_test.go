package cellbuild

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// goTool finds the go command for tests run as an unprivileged user whose
// PATH may lack it.
func goTool(t *testing.T) string {
	t.Helper()
	for _, c := range []string{os.Getenv("CELL_TEST_GO"), "go", "/usr/local/go/bin/go"} {
		if c == "" {
			continue
		}
		if p, err := exec.LookPath(c); err == nil {
			return p
		}
	}
	t.Fatal("no Go toolchain: put go on PATH or set CELL_TEST_GO to the go command (builds of cells need it)")
	return ""
}

func writeFiles(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for name, text := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func testBuilder(t *testing.T) *Builder {
	if _, err := exec.LookPath("bwrap"); err != nil {
		t.Fatal("bubblewrap is not installed (apt-get install bubblewrap)")
	}
	return &Builder{Go: goTool(t), CacheDir: filepath.Join(t.TempDir(), "cache")}
}

func TestBuildThenCached(t *testing.T) {
	app := t.TempDir()
	writeFiles(t, app, map[string]string{
		"cells/hello/go.mod":  "module hello\n\ngo 1.22\n",
		"cells/hello/main.go": "package main\n\nfunc main() { println(\"hi\") }\n",
		"cells/other/go.mod":  "module other\n\ngo 1.22\n",
		"cells/other/main.go": "package main\n\nfunc main() { println(\"other\") }\n",
	})
	b := testBuilder(t)
	var progress strings.Builder
	b.Progress = &progress
	src, err := SourceOf("hello", filepath.Join(app, "cells", "hello"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	first, err := b.Build(ctx, []Source{src})
	if err != nil {
		t.Fatal(err)
	}
	if first[0].Cached || !strings.Contains(progress.String(), "[1/1] hello: compiling") {
		t.Fatalf("first build cached or not reported:\n%s", progress.String())
	}
	out, err := exec.Command(first[0].Installed).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "hi") {
		t.Fatalf("built cell: %v %s", err, out)
	}
	fi1, _ := os.Stat(first[0].Binary)
	second, err := b.Build(ctx, []Source{src})
	if err != nil {
		t.Fatal(err)
	}
	fi2, _ := os.Stat(second[0].Binary)
	if !second[0].Cached || !os.SameFile(fi1, fi2) || !fi1.ModTime().Equal(fi2.ModTime()) {
		t.Fatalf("second build not a cache hit: %+v\n%s", second[0], progress.String())
	}
	// A change in the source is a new build.
	writeFiles(t, app, map[string]string{"cells/hello/main.go": "package main\n\nfunc main() { println(\"hi2\") }\n"})
	third, err := b.Build(ctx, []Source{src})
	if err != nil || third[0].Cached || third[0].SourceSHA256 == first[0].SourceSHA256 {
		t.Fatalf("changed source: %v %+v", err, third)
	}
	if _, rec, err := Resolve(third[0].Installed); err != nil || rec.SourceSHA256 != third[0].SourceSHA256 {
		t.Fatalf("installed path does not resolve to the new build: %v %+v", err, rec)
	}
}

func TestBuildErrors(t *testing.T) {
	app := t.TempDir()
	writeFiles(t, app, map[string]string{
		"cells/net/go.mod":     "module netcell\n\ngo 1.22\n\nrequire example.com/nowhere v1.0.0\n",
		"cells/net/main.go":    "package main\n\nimport _ \"example.com/nowhere\"\n\nfunc main() {}\n",
		"cells/broken/go.mod":  "module broken\n\ngo 1.22\n",
		"cells/broken/main.go": "package main\n\nfunc main() { undefinedThing() }\n",
	})
	b := testBuilder(t)
	ctx := context.Background()
	src, _ := SourceOf("net", filepath.Join(app, "cells", "net"))
	_, err := b.Build(ctx, []Source{src})
	var be *Error
	if !errors.Is(err, ErrOffline) || !errors.As(err, &be) || be.Cell != "net" || !strings.Contains(err.Error(), "go mod vendor") {
		t.Fatalf("offline build: %v", err)
	}
	src, _ = SourceOf("broken", filepath.Join(app, "cells", "broken"))
	_, err = b.Build(ctx, []Source{src})
	if errors.Is(err, ErrOffline) || !errors.As(err, &be) || be.Cell != "broken" || !strings.Contains(err.Error(), "undefinedThing") {
		t.Fatalf("compile error: %v", err)
	}
}

func TestSourceHashExcludesSiblingsAndSignature(t *testing.T) {
	app := t.TempDir()
	writeFiles(t, app, map[string]string{
		"go.mod":            "module app\n\ngo 1.22\n",
		"cells/a/Cell.toml": "x",
		"cells/a/main.go":   "package main\n",
		"cells/b/Cell.toml": "x",
		"cells/b/main.go":   "package main\n",
		"shared/s.go":       "package shared\n",
	})
	a, err := SourceOf("a", filepath.Join(app, "cells", "a"))
	if err != nil || a.Module != app {
		t.Fatalf("%v %+v", err, a)
	}
	h1, _ := a.Hash()
	writeFiles(t, app, map[string]string{"cells/b/main.go": "package main // changed\n", "cells/a/Cell.sig": "sig"})
	if h2, _ := a.Hash(); h2 != h1 {
		t.Fatal("a sibling cell or the signature changed the hash")
	}
	writeFiles(t, app, map[string]string{"shared/s.go": "package shared // changed\n"})
	if h3, _ := a.Hash(); h3 == h1 {
		t.Fatal("a shared package did not change the hash")
	}
	if _, err := SourceOf("x", filepath.Join(app, "x")); !errors.Is(err, ErrLayout) {
		t.Fatalf("not under cells/: %v", err)
	}
}
