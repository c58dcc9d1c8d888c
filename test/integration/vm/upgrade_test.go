//go:build vmlab

package vm

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cellproject/cell/internal/testutil/harness"
)

// listenerAllowlist runs the upgraded and the hostile cells in scopes.
const listenerAllowlist = `
version = 1

[cell.server]
exec = "@BIN@/testcell"
backend = "scope"

[cell.vandal]
exec = "@BIN@/testcell"
backend = "scope"
`

// TestScopeUpgradeWithoutDowntime: as the host's TestUpgradeWithoutDowntime,
// on the scope backend: a client making at least 1,000 calls a second
// through the SDK across 20 upgrades sees no failed call and no refused
// connection, and every upgrade put the new instance in a scope of its own.
func TestScopeUpgradeWithoutDowntime(t *testing.T) {
	s, _ := startSession(t, listenerAllowlist)
	ctx := testCtx(t, 10*time.Minute)
	if _, err := call(t, s, "server", "pid", ""); err != nil {
		t.Fatal(err)
	}
	units := map[string]bool{unitOf(t, s, "server"): true}

	load := harness.StartLoad(ctx, t, s, "server", 4)
	const upgrades = 20
	for i := range upgrades {
		if err := s.Upgrade(ctx, "server"); err != nil {
			load.Stop()
			t.Fatalf("upgrade %d: %v", i+1, err)
		}
		units[unitOf(t, s, "server")] = true
	}
	r := load.Stop()
	rate := r.Rate
	t.Logf("%d upgrades: %d calls (%.0f/s), %d failed, %d refused; first errors: %v", upgrades, r.Calls, rate, r.Failed, r.Refused, r.FirstErrs)
	if len(units) != upgrades+1 {
		t.Errorf("%d distinct scope units served, want %d", len(units), upgrades+1)
	}
	if r.Failed != 0 || r.Refused != 0 {
		t.Errorf("across the upgrades: %d failed calls, %d refused connections, want 0 and 0", r.Failed, r.Refused)
	}
	// 1,000 calls a second at the host's speed: the guest runs the same
	// work this many times slower (the lab's calibration).
	slowdown := vmSlowdown(t)
	if want := 1000 / slowdown; rate < want {
		t.Errorf("the client made %.0f calls/s, want at least %.0f (1000 at host speed, %.1fx slower here) for the proof to count", rate, want, slowdown)
	}
	// Every replaced scope is gone.
	for u := range units {
		if u == unitOf(t, s, "server") {
			continue
		}
		if state := systemctl(t, "show", "-p", "ActiveState", "--value", u); state == "active" {
			t.Errorf("replaced instance's scope %s is still active", u)
		}
	}
}

// TestScopeSessionDirReadOnly: a cell in a scope cannot create, fill,
// rename, replace or unlink anything in the session dir; in a writable dir
// of its own (the control) every attempt succeeds.
func TestScopeSessionDirReadOnly(t *testing.T) {
	s, _ := startSession(t, listenerAllowlist)
	if _, err := call(t, s, "server", "pid", ""); err != nil {
		t.Fatal(err)
	}
	attempts := []string{"create", "mkdir", "fill", "bind", "chmod", "rename", "replace", "unlink", "rebind"}
	probe := func(arg string) map[string]string {
		out, err := call(t, s, "vandal", "vandal", arg)
		if err != nil {
			t.Fatal(err)
		}
		res := map[string]string{}
		if err := json.Unmarshal([]byte(out), &res); err != nil {
			t.Fatalf("vandal: %v (%q)", err, out)
		}
		return res
	}
	ctl := probe("control")
	for _, a := range attempts {
		if ctl[a] != "ok" {
			t.Errorf("control: %s in a writable dir failed: %s", a, ctl[a])
		}
	}
	for _, victim := range []string{"server.sock", "umbilical.sock"} {
		arg, _ := json.Marshal(map[string]string{"dir": s.Dir(), "victim": filepath.Join(s.Dir(), victim)})
		res := probe(string(arg))
		for _, a := range attempts {
			if v, ok := res[a]; !ok || v == "ok" {
				t.Errorf("a cell in a scope could %s in the session dir (victim %s): %q", a, victim, v)
			}
		}
	}
	if out, err := call(t, s, "server", "pid", ""); err != nil || strings.TrimSpace(out) == "" {
		t.Errorf("the victim stopped answering: %q, %v", out, err)
	}
}
