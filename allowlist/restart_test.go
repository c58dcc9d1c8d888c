package allowlist

import (
	"strings"
	"testing"
	"time"

	"github.com/cellproject/cell/internal/cellspec"
)

func TestRestartKeys(t *testing.T) {
	for _, tc := range []struct {
		name, keys string
		want       cellspec.Restart
		err        string
	}{
		{"none", ``, cellspec.Restart{}, ""},
		{"defaults", `restart = "on-failure"`, cellspec.Restart{Mode: "on-failure", Limit: 5, Window: 10 * time.Second}, ""},
		{"explicit", "restart = \"always\"\nrestart_limit = 3\nrestart_window = 60", cellspec.Restart{Mode: "always", Limit: 3, Window: time.Minute}, ""},
		{"unknown mode", `restart = "sometimes"`, cellspec.Restart{}, `unknown restart mode "sometimes"`},
		{"limit without mode", `restart_limit = 3`, cellspec.Restart{}, "needs restart ="},
		{"zero limit", "restart = \"always\"\nrestart_limit = 0", cellspec.Restart{}, "out of range"},
		{"window too long", "restart = \"always\"\nrestart_window = 86400", cellspec.Restart{}, "out of range"},
		{"window as text", "restart = \"always\"\nrestart_window = \"10s\"", cellspec.Restart{}, "must be an integer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Parse("a.toml", []byte("version = 1\n\n[cell.eye]\nexec = \"/bin/eye\"\n"+tc.keys+"\n"))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want one containing %q", err, tc.err)
				}
				if !strings.Contains(err.Error(), "a.toml:") {
					t.Errorf("err %v names no file:line", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := f.Cells["eye"].Restart; got != tc.want {
				t.Errorf("Restart = %+v, want %+v", got, tc.want)
			}
		})
	}
}
