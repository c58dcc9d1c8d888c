package app

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cellproject/cell/allowlist"
)

func writeApp(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, text := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func manifest(name string, extra string) string {
	return "version = 1\nname = \"" + name + "\"\n" + extra
}

func TestDiscoverOrder(t *testing.T) {
	dir := writeApp(t, map[string]string{
		"cells/web/Cell.toml":   manifest("web", "autostart = true\ndepends_on = [\"db\", \"cache\"]\n"),
		"cells/db/Cell.toml":    manifest("db", "depends_on = [\"disk\"]\n"),
		"cells/disk/Cell.toml":  manifest("disk", ""),
		"cells/cache/Cell.toml": manifest("cache", ""),
		"cells/lone/Cell.toml":  manifest("lone", ""),
		"cells/shared/util.go":  "package shared\n",
	})
	a, err := Discover(dir)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"cache", "disk", "db", "lone", "web"}; !slices.Equal(a.Order, want) {
		t.Errorf("order %v, want %v", a.Order, want)
	}
	if want := []string{"cache", "disk", "db", "web"}; !slices.Equal(a.StartOrder(), want) {
		t.Errorf("start order %v, want %v", a.StartOrder(), want)
	}
}

func TestDiscoverErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files map[string]string
		is    error
		want  []string
	}{
		{"cycle", map[string]string{
			"cells/a/Cell.toml": manifest("a", "depends_on = [\"b\"]\n"),
			"cells/b/Cell.toml": manifest("b", "depends_on = [\"c\"]\n"),
			"cells/c/Cell.toml": manifest("c", "depends_on = [\"a\"]\n"),
		}, ErrCycle, []string{"a -> b -> c -> a", "cells/a/Cell.toml", "cells/b/Cell.toml", "cells/c/Cell.toml"}},
		{"duplicate", map[string]string{
			"cells/a/Cell.toml":  manifest("x", ""),
			"cells/a2/Cell.toml": manifest("x", ""),
		}, ErrDuplicate, []string{"cells/a2/Cell.toml:2: name", "cells/a/Cell.toml"}},
		{"missing", map[string]string{
			"cells/a/Cell.toml": manifest("a", "\ndepends_on = [\"ghost\"]\n"),
		}, ErrMissingDependency, []string{"cells/a/Cell.toml:4: depends_on", `"ghost"`}},
		{"missing spawn", map[string]string{
			"cells/a/Cell.toml": manifest("a", "spawn = [\"ghost\"]\n"),
		}, ErrMissingDependency, []string{"cells/a/Cell.toml:3: spawn"}},
		{"unknown key", map[string]string{
			"cells/a/Cell.toml": manifest("a", "autostart = true\nnetwrok = true\n"),
		}, ErrManifest, []string{"cells/a/Cell.toml:4: netwrok: unknown key"}},
		{"unknown limit", map[string]string{
			"cells/a/Cell.toml": manifest("a", "[limits]\nmemory = \"1G\"\nswap = 1\n"),
		}, ErrManifest, []string{"cells/a/Cell.toml:5: limits.swap: unknown key"}},
		{"no cells", map[string]string{"cells/x/main.go": "package main\n"}, ErrNoCells, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Discover(writeApp(t, tc.files))
			if !errors.Is(err, tc.is) {
				t.Fatalf("got %v, want %v", err, tc.is)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%q lacks %q", err, w)
				}
			}
		})
	}
}

func TestParseManifestFields(t *testing.T) {
	m, _, err := ParseManifest("Cell.toml", []byte(`version = 1
name = "eye"
description = "sees"
autostart = true
depends_on = ["retina"]
spawn = ["retina"]
network = true
idle_timeout = "45s"
backend = "bwrap"
max_instances = 2
limits = { memory = "256M", cpu = 0.5, pids = 32 }
`))
	if err != nil {
		t.Fatal(err)
	}
	if m.Name != "eye" || !m.Autostart || !m.Network || m.IdleTimeout.Seconds() != 45 || m.Limits.MemoryBytes != 256<<20 ||
		m.Limits.CPU != 0.5 || m.Limits.Pids != 32 || m.MaxInstances != 2 || m.Backend != "bwrap" {
		t.Fatalf("%+v", m)
	}
	for _, bad := range []string{
		"name = \"a\"\n",
		"version = 2\nname = \"a\"\n",
		"version = 1\nname = \"a/b\"\n",
		"version = 1\nname = \"a\"\nidle_timeout = \"-1s\"\n",
		"version = 1\nname = \"a\"\nbackend = \"docker\"\n",
		"version = 1\nname = \"a\"\nspawn = [\"b\", \"b\"]\n",
		"version = 1\nname = \"a\"\nlimits = { cpu = 0 }\n",
	} {
		if _, _, err := ParseManifest("Cell.toml", []byte(bad)); !errors.Is(err, ErrManifest) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

func TestExceeds(t *testing.T) {
	g := allowlist.Cell{MaxInstances: 1, Spawn: []string{"b"}}
	g.Limits.MemoryBytes = 100
	for _, tc := range []struct {
		m    Manifest
		want string
	}{
		{Manifest{MaxInstances: 1, Spawn: []string{"b"}, Limits: g.Limits}, ""},
		{Manifest{MaxInstances: 1, Network: true, Limits: g.Limits}, "network"},
		{Manifest{MaxInstances: 1, Spawn: []string{"c"}, Limits: g.Limits}, "spawning \"c\""},
		{Manifest{MaxInstances: 1}, "memory unlimited"},
		{Manifest{MaxInstances: 2, Limits: g.Limits}, "max_instances"},
	} {
		if got := Exceeds(&tc.m, g); !strings.HasPrefix(got, tc.want) || (tc.want == "") != (got == "") {
			t.Errorf("%+v: %q, want %q", tc.m, got, tc.want)
		}
	}
}

func TestGrantParsesAndMatchesRequest(t *testing.T) {
	dir := writeApp(t, map[string]string{
		"cells/eye/Cell.toml":    manifest("eye", "description = \"sees\"\nspawn = [\"retina\"]\nidle_timeout = \"1m\"\nlimits = { memory = \"64M\", cpu = 1 }\n"),
		"cells/retina/Cell.toml": manifest("retina", "network = true\n"),
	})
	a, err := Discover(dir)
	if err != nil {
		t.Fatal(err)
	}
	var blocks []allowlist.Block
	for _, n := range a.Order {
		blocks = append(blocks, Grant(a.Cells[n], GrantOptions{Exec: "/c/" + n, RequireSignature: true}))
	}
	out, err := allowlist.SetBlocks("a.toml", nil, dir, blocks)
	if err != nil {
		t.Fatal(err)
	}
	f, err := allowlist.Parse("a.toml", out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, n := range a.Order {
		if why := Exceeds(&a.Cells[n].Manifest, f.Cells[n]); why != "" {
			t.Errorf("grant of %s is narrower than its request: %s\n%s", n, why, out)
		}
	}
	if e := f.Cells["eye"]; !slices.Equal(e.Args, []string{"-idle=1m0s"}) || e.Source != a.Cells["eye"].Dir || !e.RequireSignature {
		t.Errorf("eye grant %+v", e)
	}
	if !strings.Contains(Describe(a.Cells["retina"]), "network:       YES") {
		t.Error(Describe(a.Cells["retina"]))
	}
}

// TestDocExample keeps docs/Cell.example.toml valid.
func TestDocExample(t *testing.T) {
	m, _, err := LoadManifest("../../docs/Cell.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	if m.Name != "eye" || !m.Autostart || m.Limits.Pids != 64 {
		t.Fatalf("%+v", m)
	}
}
