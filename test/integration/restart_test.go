//go:build integration || vmlab

package integration

import (
	"strings"
	"testing"

	"github.com/cellproject/cell/cell"
	"github.com/cellproject/cell/wire"
)

// restartAllowlist grants crashy a restart policy: at most 5 restarts in
// 10 s. steady has none.
const restartAllowlist = `
version = 1

[cell.crashy]
exec = "@BIN@/testcell"
backend = "bwrap"
restart = "on-failure"
restart_limit = 5
restart_window = 10

[cell.steady]
exec = "@BIN@/testcell"
backend = "bwrap"
`

// crash makes the cell key exit 3 and then calls it: through the root's
// listener the call reaches the restarted instance, or fails.
func crashAndCall(t *testing.T, s *cell.Session, key string) error {
	t.Helper()
	ctx := testCtx(t)
	c, err := s.Connect(ctx, key)
	if err != nil {
		return err
	}
	c.Call(ctx, "crash", nil) // the cell exits before it can answer
	c.Close()
	c, err = s.Connect(ctx, key)
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.Call(ctx, "pid", nil)
	return err
}

func restartRecords(log string, key string) int {
	n := 0
	for _, rec := range auditRecords(log) {
		reason, _ := rec["reason"].(string)
		if rec["event"] == "spawn" && rec["key"] == key && strings.HasPrefix(reason, "restart ") {
			n++
		}
	}
	return n
}

// TestRestartPolicy: a cell that crashes 3 times under on-failure with a
// limit of 5 in 10 s is restarted on the same listener each time (a client
// connecting after the crash is answered without a spawn) and each restart
// is audited; the 6th crash fails the cell with its last exit status, and the
// owner is told. A cell without a policy stays down (the control).
func TestRestartPolicy(t *testing.T) {
	s, log := startSession(t, restartAllowlist)
	ctx := testCtx(t)

	// Control: without a policy a crashed cell stays down.
	call(t, s, "steady", "pid", "")
	if err := crashAndCall(t, s, "steady"); err == nil {
		t.Fatal("control: a cell without a restart policy answered after its crash")
	}
	waitFor(t, "steady to leave the list", func() bool { return !listed(t, s, "steady") })

	failed := make(chan error, 1)
	go func() { failed <- s.AwaitFailure(ctx) }()

	call(t, s, "crashy", "pid", "")
	for i := 1; i <= 3; i++ {
		if err := crashAndCall(t, s, "crashy"); err != nil {
			t.Fatalf("crash %d: the restarted cell does not answer: %v", i, err)
		}
	}
	if n := restartRecords(log.String(), "crashy"); n != 3 {
		t.Errorf("audit holds %d restarts of crashy after 3 crashes, want 3", n)
	}
	select {
	case err := <-failed:
		t.Fatalf("the session reported a failure after 3 crashes: %v", err)
	default:
	}
	// Crashes 4 and 5 are restarted; the 6th is past the limit.
	for i := 4; i <= 5; i++ {
		if err := crashAndCall(t, s, "crashy"); err != nil {
			t.Fatalf("crash %d: the restarted cell does not answer: %v", i, err)
		}
	}
	if err := crashAndCall(t, s, "crashy"); err == nil {
		t.Error("crash 6: the cell still answers past its restart limit")
	}
	err := <-failed
	t.Logf("failure reported to the owner: %v", err)
	if !wire.IsCode(err, wire.CodeCellFailed) || !strings.Contains(err.Error(), `"crashy"`) || !strings.Contains(err.Error(), "exited 3") {
		t.Errorf("failure: %v, want cell_failed naming crashy and its exit status", err)
	}
	if n := restartRecords(log.String(), "crashy"); n != 5 {
		t.Errorf("audit holds %d restarts of crashy, want 5", n)
	}
	waitFor(t, "crashy to leave the list", func() bool { return !listed(t, s, "crashy") })
	var failRec bool
	for _, rec := range auditRecords(log.String()) {
		if reason, _ := rec["reason"].(string); rec["key"] == "crashy" && rec["code"] == "restart_limit" && strings.Contains(reason, "failed: more than 5 restarts") {
			failRec = true
		}
	}
	if !failRec {
		t.Error("the failure is not in the audit")
	}
}
