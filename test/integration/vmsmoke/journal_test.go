//go:build vmlab

package vmsmoke

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"testing"
	"time"

	"github.com/coreos/go-systemd/v22/journal"
)

func TestJournalUserEntry(t *testing.T) {
	ctx := testContext(t, 2*time.Minute)
	if !journal.Enabled() {
		t.Fatalf("journald's socket /run/systemd/journal/socket is not reachable")
	}
	if _, err := exec.LookPath("journalctl"); err != nil {
		t.Fatalf("journalctl not found: %v", err)
	}
	id := uniqueName(t, "")
	const msg = "cell vmsmoke journal entry"
	if err := journal.Send(msg, journal.PriInfo, map[string]string{"CELL_SMOKE": id}); err != nil {
		t.Fatalf("journal.Send: %v", err)
	}

	// journald stores the entry asynchronously; under emulation that can
	// take seconds, so poll until it shows up in the user's journal.
	var last []byte
	for {
		out, err := exec.CommandContext(ctx, "journalctl", "--user", "--no-pager",
			"-o", "json", "CELL_SMOKE="+id).Output()
		if err != nil {
			var stderr []byte
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				stderr = ee.Stderr
			}
			if ctx.Err() != nil {
				t.Fatalf("journalctl --user CELL_SMOKE=%s: %v (last output %q, stderr %q)", id, err, last, stderr)
			}
			t.Logf("journalctl --user: %v: %s", err, stderr)
		}
		last = out
		entries, perr := parseJournalJSON(out)
		if perr != nil {
			t.Fatal(perr)
		}
		if len(entries) > 0 {
			e := entries[0]
			if e["MESSAGE"] != msg {
				t.Errorf("MESSAGE = %q, want %q", e["MESSAGE"], msg)
			}
			if e["PRIORITY"] != "6" {
				t.Errorf("PRIORITY = %q, want 6 (info)", e["PRIORITY"])
			}
			t.Logf("found in the user journal: CELL_SMOKE=%s _UID=%v _PID=%v", id, e["_UID"], e["_PID"])
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("entry CELL_SMOKE=%s never showed in journalctl --user: %v", id, ctx.Err())
		case <-time.After(time.Second):
		}
	}
}

// parseJournalJSON decodes journalctl -o json output (one object a line),
// keeping the string-valued fields.
func parseJournalJSON(out []byte) ([]map[string]string, error) {
	var entries []map[string]string
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var raw map[string]any
		if err := json.Unmarshal(line, &raw); err != nil {
			return nil, fmt.Errorf("journalctl json line %q: %w", line, err)
		}
		e := map[string]string{}
		for k, v := range raw {
			if s, ok := v.(string); ok {
				e[k] = s
			}
		}
		entries = append(entries, e)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read journalctl output: %w", err)
	}
	return entries, nil
}
