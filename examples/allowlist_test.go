// Package examples_test checks the example app's files that are not Go
// programs.
package examples_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cellproject/cell/allowlist"
)

// TestAllowlistTemplate checks that allowlist.toml.in, once the Makefile has
// filled it in, is a valid allowlist with the edges the demo relies on.
func TestAllowlistTemplate(t *testing.T) {
	tmpl, err := os.ReadFile("allowlist.toml.in")
	if err != nil {
		t.Fatal(err)
	}
	for _, backend := range []string{"bwrap", "process", "auto"} {
		text := strings.NewReplacer("@BIN@", "/opt/cell-demo/bin", "@BACKEND@", backend).Replace(string(tmpl))
		if strings.Contains(text, "@") {
			t.Fatalf("placeholder left after substitution:\n%s", text)
		}
		path := filepath.Join(t.TempDir(), "allowlist.toml")
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		f, err := allowlist.Load(path)
		if err != nil {
			t.Fatalf("backend %s: %v", backend, err)
		}
		edges := map[string][]string{"eye": {"retina"}, "retina": {"cone"}, "cone": nil, "nose": nil}
		for name, want := range edges {
			c, ok := f.Cells[name]
			if !ok {
				t.Fatalf("cell %s not listed", name)
			}
			if !slices.Equal(c.Spawn, want) {
				t.Errorf("%s spawn = %v, want %v", name, c.Spawn, want)
			}
			if c.Exec != "/opt/cell-demo/bin/"+name {
				t.Errorf("%s exec = %q", name, c.Exec)
			}
		}
		if len(f.Cells) != len(edges) {
			t.Errorf("%d cells listed, want %d", len(f.Cells), len(edges))
		}
	}
}
