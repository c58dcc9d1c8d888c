//go:build integration || vmlab

package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// vandalAttempts are the attacks of testcell's vandal probe.
var vandalAttempts = []string{"create", "mkdir", "fill", "bind", "chmod", "rename", "replace", "unlink", "rebind"}

func vandalize(t *testing.T, got string) map[string]string {
	t.Helper()
	res := map[string]string{}
	if err := json.Unmarshal([]byte(got), &res); err != nil {
		t.Fatalf("vandal probe: %v (%q)", err, got)
	}
	for _, a := range vandalAttempts {
		if _, ok := res[a]; !ok {
			t.Fatalf("vandal probe did not try %s: %v", a, res)
		}
	}
	return res
}

// TestHostileCellCannotTouchSessionDir: a sandboxed cell tries to create,
// fill, rename, replace and unlink files of the session dir, another cell's
// socket and the root's umbilical. In a writable dir of its own (the
// control) every attempt succeeds; in the session dir every one fails, the
// victims still answer, and the session dir holds only the root's files.
func TestHostileCellCannotTouchSessionDir(t *testing.T) {
	for _, backend := range []string{"bwrap", "podman"} {
		t.Run(backend, func(t *testing.T) {
			allow := testAllowlist
			if backend == "podman" {
				requirePodman(t)
				allow = podmanAllowlist
			}
			s, _ := startSession(t, allow)
			// The victim: another cell, serving.
			if got := call(t, s, "child", "pid", ""); got == "" {
				t.Fatal("victim cell does not answer")
			}
			if !strings.HasPrefix(call(t, s, "probe", "grow", "child"), "ok") {
				t.Fatal("control: the probe cannot reach the victim")
			}
			ctl := vandalize(t, call(t, s, "probe", "vandal", "control"))
			for _, a := range vandalAttempts {
				if ctl[a] != "ok" {
					t.Errorf("control: %s in a writable dir failed: %s (the probe is broken)", a, ctl[a])
				}
			}
			for _, victim := range []string{"child.sock", "umbilical.sock"} {
				arg, _ := json.Marshal(map[string]string{"dir": s.Dir(), "victim": filepath.Join(s.Dir(), victim)})
				res := vandalize(t, call(t, s, "probe", "vandal", string(arg)))
				for _, a := range vandalAttempts {
					if res[a] == "ok" {
						t.Errorf("a sandboxed cell could %s in the session dir (victim %s)", a, victim)
					} else {
						t.Logf("%s on %s: %s", a, victim, res[a])
					}
				}
			}
			// The victims still serve, and nothing foreign is in the dir.
			if got := call(t, s, "child", "pid", ""); got == "" {
				t.Error("the victim stopped answering")
			}
			if !strings.HasPrefix(call(t, s, "probe", "grow", "child"), "ok") {
				t.Error("the probe can no longer reach the victim")
			}
			entries, err := os.ReadDir(s.Dir())
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, e := range entries {
				names = append(names, e.Name())
			}
			sort.Strings(names)
			want := []string{"child.sock", "probe.sock", "umbilical.sock"}
			if strings.Join(names, " ") != strings.Join(want, " ") {
				t.Errorf("session dir holds %v, want exactly %v (the root's files; no lock files)", names, want)
			}
		})
	}
}
