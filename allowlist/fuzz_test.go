package allowlist

import (
	"errors"
	"testing"
)

// FuzzParse checks that Parse never panics or hangs, and that whatever it
// accepts obeys the invariants the policy relies on.
func FuzzParse(f *testing.F) {
	f.Add([]byte("version = 1\n"))
	f.Add([]byte("version = 1\n[cell.a]\nexec = \"/a\"\nspawn = [\"a\"]\n[cell.a.limits]\nmemory = \"1G\"\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := Parse("fuzz.toml", data)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v (%T) is not an *Error", err, err)
			}
			return
		}
		if file.Version != Version || file.Cells == nil {
			t.Fatalf("accepted file has version %d, cells %v", file.Version, file.Cells)
		}
		for name, c := range file.Cells {
			if c.Name != name || checkExec(c.Exec) != "" || c.MaxInstances < 1 || c.Limits.Validate() != nil {
				t.Fatalf("accepted bad cell %+v", c)
			}
			for _, s := range c.Spawn {
				if _, ok := file.Cells[s]; !ok {
					t.Fatalf("cell %q may spawn unlisted %q", name, s)
				}
			}
		}
	})
}
