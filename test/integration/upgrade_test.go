//go:build integration || vmlab

package integration

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cellproject/cell/internal/testutil"
	"github.com/cellproject/cell/internal/testutil/harness"

	"github.com/cellproject/cell/cell"
	"github.com/cellproject/cell/wire"
)

// upgradeAllowlist runs the upgraded cell on one backend; @BACKEND@ is it.
const upgradeAllowlist = `
version = 1

[cell.server]
exec = "@BIN@/testcell"
backend = "@BACKEND@"
`

// instanceToken is the CELL_TOKEN of the instance that answers now: each
// instance has its own.
func instanceToken(t *testing.T, s *cell.Session) string {
	t.Helper()
	var env []string
	if err := json.Unmarshal([]byte(call(t, s, "server", "env", "")), &env); err != nil {
		t.Fatal(err)
	}
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "CELL_TOKEN="); ok {
			return v
		}
	}
	t.Fatalf("no CELL_TOKEN in %v", env)
	return ""
}

// TestUpgradeWithoutDowntime: a client making at least 1,000 calls a second
// through the SDK across 20 upgrades of the cell it calls sees no failed
// call and no refused connection; each upgrade really replaced the
// instance (a new token answers), and the audit holds every new instance
// and every drained one.
func TestUpgradeWithoutDowntime(t *testing.T) {
	for _, backend := range []string{"bwrap", "podman"} {
		t.Run(backend, func(t *testing.T) {
			if backend == "podman" {
				requirePodman(t)
			}
			s, log := startSession(t, strings.ReplaceAll(upgradeAllowlist, "@BACKEND@", backend))
			// Twenty Podman upgrades start twenty containers: more than
			// testCtx's bound on a loaded machine.
			ctx, cancel := context.WithTimeout(context.Background(), testutil.Scaled(t, 3*time.Minute))
			defer cancel()
			tokens := map[string]bool{instanceToken(t, s): true}

			load := harness.StartLoad(ctx, t, s, "server", 4)
			const upgrades = 20
			for i := range upgrades {
				if err := s.Upgrade(ctx, "server"); err != nil {
					load.Stop()
					t.Fatalf("upgrade %d: %v", i+1, err)
				}
				tokens[instanceToken(t, s)] = true
			}
			r := load.Stop()
			rate := r.Rate
			t.Logf("%d upgrades: %d calls (%.0f/s), %d failed, %d refused; first errors: %v",
				upgrades, r.Calls, rate, r.Failed, r.Refused, r.FirstErrs)
			if len(tokens) != upgrades+1 {
				t.Errorf("%d distinct instances answered, want %d (one per upgrade and the first)", len(tokens), upgrades+1)
			}
			if r.Failed != 0 || r.Refused != 0 {
				t.Errorf("across the upgrades: %d failed calls, %d refused connections, want 0 and 0 (first errors: %v)",
					r.Failed, r.Refused, r.FirstErrs)
			}
			if rate < 1000 {
				t.Errorf("the client made %.0f calls/s, want at least 1000 for the proof to count", rate)
			}
			var news, drained int
			for _, rec := range auditRecords(log.String()) {
				reason, _ := rec["reason"].(string)
				switch {
				case rec["event"] == "spawn" && reason == "upgrade: new instance":
					news++
				case rec["event"] == "stop" && strings.HasPrefix(reason, "upgrade: draining the old instance"):
					drained++
				}
			}
			if news != upgrades || drained != upgrades {
				t.Errorf("audit: %d new instances and %d drained ones, want %d of each", news, drained, upgrades)
			}
		})
	}
}

// TestUpgradeBadInput: an upgrade of an unknown cell, and of a cell whose
// new build cannot start, fail with a clear error while the running
// instance keeps serving; an upgrade racing a stop either completes or says
// why not, and the stop wins in the end.
func TestUpgradeBadInput(t *testing.T) {
	// The cell runs from a copy of testcell, so that the test can break the
	// "new build" under the running instance.
	exe := filepath.Join(t.TempDir(), "server")
	data, err := os.ReadFile(filepath.Join(binDir(t), "testcell"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(exe, data, 0o755); err != nil {
		t.Fatal(err)
	}
	s, _ := startSession(t, strings.ReplaceAll(strings.ReplaceAll(upgradeAllowlist, "@BACKEND@", "bwrap"), "@BIN@/testcell", exe))
	ctx := testCtx(t)
	before := instanceToken(t, s)

	if err := s.Upgrade(ctx, "nosuchcell"); !wire.IsCode(err, wire.CodeNotFound) {
		t.Errorf("upgrade of an unknown cell: %v, want not_found", err)
	}
	if err := s.Upgrade(ctx, "bad/name"); err == nil {
		t.Errorf("upgrade of a bad name succeeded")
	}
	// A cell's environment cannot upgrade: only the owner may.
	cli := exec.CommandContext(ctx, filepath.Join(binDir(t), "cellroot"), "upgrade", "server")
	cli.Env = append(s.Env(), "CELL_NAME=server")
	if out, err := cli.CombinedOutput(); err == nil {
		t.Errorf("cellroot upgrade with a cell's environment succeeded:\n%s", out)
	}
	// Control: the copy upgrades fine, here through `cellroot upgrade` run
	// with the owner's environment, as an owner's trusted child would.
	cli = exec.CommandContext(ctx, filepath.Join(binDir(t), "cellroot"), "upgrade", "server")
	cli.Env = append(s.Env(), "PATH="+os.Getenv("PATH"))
	out, err := cli.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "upgraded server") {
		t.Fatalf("control: cellroot upgrade server: %v\n%s", err, out)
	}
	after := instanceToken(t, s)
	if after == before {
		t.Fatal("control: the upgrade left the same instance serving")
	}
	// A broken new build: the binary cannot be run. Installed by rename,
	// as a build is: the running instance keeps its file.
	install := func(data []byte) {
		t.Helper()
		if err := os.WriteFile(exe+".new", data, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(exe+".new", exe); err != nil {
			t.Fatal(err)
		}
	}
	install([]byte("not a program\n"))
	err = s.Upgrade(ctx, "server")
	t.Logf("upgrade to a broken build: %v", err)
	if !wire.IsCode(err, wire.CodeUpgradeFailed) || !strings.Contains(err.Error(), "old instance keeps serving") {
		t.Errorf("upgrade to a broken build: %v, want upgrade_failed saying the old instance keeps serving", err)
	}
	if got := instanceToken(t, s); got != after {
		t.Errorf("after a failed upgrade another instance answers")
	}
	install(data)

	// Racing a stop.
	errs := make(chan error, 2)
	go func() { errs <- s.Upgrade(ctx, "server") }()
	go func() { errs <- s.Stop(ctx, "server") }()
	for range 2 {
		if err := <-errs; err != nil {
			t.Logf("racing upgrade and stop: %v", err)
			if !wire.IsCode(err, wire.CodeUpgradeFailed) && !wire.IsCode(err, wire.CodeNotFound) {
				t.Errorf("unclear error from racing an upgrade with a stop: %v", err)
			}
		}
	}
	waitFor(t, "the stopped cell to leave the list", func() bool { return !listed(t, s, "server") })
	requireNoProcesses(t, s.ID())
}
