package app

import (
	"strings"
	"testing"
	"time"

	"github.com/cellproject/cell/allowlist"
	"github.com/cellproject/cell/internal/cellspec"
)

// TestManifestRestart: Cell.toml's restart keys parse with the allowlist's
// defaults and bounds, the grant renders them so that the allowlist reads
// back the same policy, and asking for more than the grant is caught.
func TestManifestRestart(t *testing.T) {
	for _, tc := range []struct {
		keys string
		want cellspec.Restart
		err  string
	}{
		{"", cellspec.Restart{}, ""},
		{`restart = "on-failure"`, cellspec.Restart{Mode: "on-failure", Limit: 5, Window: 10 * time.Second}, ""},
		{"restart = \"always\"\nrestart_limit = 2\nrestart_window = 30", cellspec.Restart{Mode: "always", Limit: 2, Window: 30 * time.Second}, ""},
		{`restart = "never"`, cellspec.Restart{}, "unknown restart mode"},
		{`restart_window = 3`, cellspec.Restart{}, "needs restart"},
		{"restart = \"always\"\nrestart_limit = 101", cellspec.Restart{}, "1..100"},
	} {
		m, _, err := ParseManifest("Cell.toml", []byte("version = 1\nname = \"eye\"\n"+tc.keys+"\n"))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: err = %v, want %q", tc.keys, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%q: %v", tc.keys, err)
		}
		if m.Restart != tc.want {
			t.Errorf("%q: Restart = %+v, want %+v", tc.keys, m.Restart, tc.want)
		}
		blk := Grant(&Cell{Manifest: *m, Dir: "/app/cells/eye"}, GrantOptions{Exec: "/cache/eye"})
		al, err := allowlist.Parse("a.toml", []byte("version = 1\n"+blk.Body))
		if err != nil {
			t.Fatalf("%q: the grant does not parse: %v\n%s", tc.keys, err, blk.Body)
		}
		if g := al.Cells["eye"].Restart; g != tc.want {
			t.Errorf("%q: granted %+v, want %+v", tc.keys, g, tc.want)
		}
		if why := Exceeds(m, al.Cells["eye"]); why != "" {
			t.Errorf("%q: the manifest exceeds its own grant: %s", tc.keys, why)
		}
	}
	m := &Manifest{MaxInstances: 1, Restart: cellspec.Restart{Mode: "always", Limit: 5, Window: 10 * time.Second}}
	for _, g := range []cellspec.Restart{{}, {Mode: "on-failure", Limit: 5, Window: 10 * time.Second}, {Mode: "always", Limit: 4, Window: 10 * time.Second}, {Mode: "always", Limit: 5, Window: 20 * time.Second}} {
		if why := Exceeds(m, allowlist.Cell{MaxInstances: 1, Restart: g}); !strings.Contains(why, "restart") {
			t.Errorf("always 5 in 10s against a grant of %+v: Exceeds = %q, want a restart reason", g, why)
		}
	}
}
