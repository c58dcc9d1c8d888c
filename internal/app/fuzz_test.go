package app

import (
	"testing"

	"github.com/cellproject/cell/internal/cellspec"
)

// FuzzParseManifest checks that no Cell.toml makes the loader panic and
// that what it accepts is within the schema.
func FuzzParseManifest(f *testing.F) {
	f.Add([]byte("version = 1\nname = \"eye\"\nautostart = true\ndepends_on = [\"retina\"]\nlimits = { memory = \"1G\" }\n"))
	f.Add([]byte("version = 1\nname = \"a\"\n[limits]\ncpu = 0.5\npids = 3\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, _, err := ParseManifest("Cell.toml", data)
		if err != nil {
			return
		}
		if cellspec.CheckName(m.Name) != nil || m.MaxInstances < 1 || m.IdleTimeout < 0 || m.Limits.Validate() != nil ||
			(m.Restart.Mode != "" && (m.Restart.Limit < 1 || m.Restart.Window <= 0)) {
			t.Fatalf("accepted %+v", m)
		}
		for _, d := range append(m.DependsOn, m.Spawn...) {
			if cellspec.CheckName(d) != nil {
				t.Fatalf("accepted name %q", d)
			}
		}
	})
}
