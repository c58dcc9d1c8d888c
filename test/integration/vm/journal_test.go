//go:build vmlab

package vm

import (
	"strings"
	"testing"
	"time"

	"github.com/cellproject/cell/internal/testutil"
	"github.com/cellproject/cell/wire"
)

const journalAllowlist = `
version = 1

[cell.probe]
exec = "@BIN@/testcell"
backend = "scope"
`

// TestJournalHoldsEveryDecision: one entry per decision with the documented
// fields, read back with journalctl --user -o json.
func TestJournalHoldsEveryDecision(t *testing.T) {
	s, _ := startSession(t, journalAllowlist)
	if _, err := call(t, s, "probe", "pid", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Grow(testCtx(t, time.Minute), "unlisted"); !wire.IsCode(err, wire.CodeDenied) {
		t.Fatalf("grow unlisted: %v, want denied", err)
	}
	var allow, deny map[string]any
	deadline := time.Now().Add(testutil.Scaled(t, 30*time.Second))
	for allow == nil || deny == nil {
		if time.Now().After(deadline) {
			t.Fatalf("journal entries of session %s: allow %v, deny %v", s.ID(), allow, deny)
		}
		time.Sleep(500 * time.Millisecond)
		for _, e := range journalEntries(t, "CELL_SESSION="+s.ID()) {
			if e["CELL_EVENT"] != "spawn" {
				continue
			}
			switch e["CELL_DECISION"] {
			case "allow":
				allow = e
			case "deny":
				deny = e
			}
		}
	}
	for _, f := range []string{"MESSAGE_ID", "CELL_SESSION", "CELL_REQUESTER", "CELL_NAME", "CELL_DECISION", "CELL_CODE", "CELL_REASON", "CELL_BACKEND", "CELL_LIMITS", "CELL_ID"} {
		if allow[f] == nil {
			t.Errorf("the allow entry lacks %s: %v", f, allow)
		}
	}
	if id, _ := allow["CELL_ID"].(string); !strings.HasSuffix(id, ".scope") {
		t.Errorf("the allow entry's CELL_ID %q is not the cell's scope unit", id)
	}
	if allow["CELL_NAME"] != "probe" || allow["CELL_BACKEND"] != "scope" {
		t.Errorf("allow entry %v", allow)
	}
	if deny["CELL_NAME"] != "unlisted" || deny["CELL_CODE"] != "not_listed" {
		t.Errorf("deny entry %v", deny)
	}
	if allow["MESSAGE_ID"] != deny["MESSAGE_ID"] {
		t.Errorf("spawn decisions carry different MESSAGE_IDs: %v, %v", allow["MESSAGE_ID"], deny["MESSAGE_ID"])
	}
	// The README's query for refusals finds it.
	found := false
	for _, e := range journalEntries(t, "CELL_DECISION=deny") {
		if e["CELL_SESSION"] == s.ID() {
			found = true
		}
	}
	if !found {
		t.Error("journalctl --user CELL_DECISION=deny does not show the refusal")
	}
}
