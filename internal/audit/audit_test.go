package audit

import (
	"errors"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coreos/go-systemd/v22/journal"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

var denial = Event{
	Kind: KindSpawn, Session: "s1", Requester: "eye", Cell: "lens", Key: "lens@2",
	Code: "edge_denied", Reason: `cell "eye" may not spawn "lens"`,
}

var allowed = Event{
	Kind: KindSpawn, Session: "s1", Cell: "eye", Key: "eye",
	Allow: true, Code: "ok", Reason: "the owner may spawn cell \"eye\"",
	Backend: "scope", Limits: "memory=256M", ID: "cell-s1-eye.scope",
}

func TestJournalFields(t *testing.T) {
	for _, tt := range []struct {
		name string
		e    Event
		want map[string]string
	}{
		{"denial", denial, map[string]string{
			"CELL_EVENT": "spawn", "CELL_SESSION": "s1", "CELL_REQUESTER": "eye",
			"CELL_NAME": "lens", "CELL_KEY": "lens@2", "CELL_DECISION": "deny",
			"CELL_CODE": "edge_denied", "CELL_REASON": `cell "eye" may not spawn "lens"`,
			"MESSAGE_ID": messageIDs[KindSpawn], "SYSLOG_IDENTIFIER": "cellroot",
		}},
		{"allow by the owner", allowed, map[string]string{
			"CELL_EVENT": "spawn", "CELL_SESSION": "s1", "CELL_REQUESTER": "(owner)",
			"CELL_NAME": "eye", "CELL_KEY": "eye", "CELL_DECISION": "allow", "CELL_CODE": "ok",
			"CELL_REASON": "the owner may spawn cell \"eye\"", "CELL_BACKEND": "scope",
			"CELL_LIMITS": "memory=256M", "CELL_ID": "cell-s1-eye.scope",
			"MESSAGE_ID": messageIDs[KindSpawn], "SYSLOG_IDENTIFIER": "cellroot",
		}},
		{"exit has no decision or requester", Event{Kind: KindExit, Session: "s1", Cell: "eye", Key: "eye", ID: "4242", ExitStatus: "exit status 1"}, map[string]string{
			"CELL_EVENT": "exit", "CELL_SESSION": "s1", "CELL_NAME": "eye", "CELL_KEY": "eye",
			"CELL_ID": "4242", "CELL_EXIT_STATUS": "exit status 1",
			"MESSAGE_ID": messageIDs[KindExit], "SYSLOG_IDENTIFIER": "cellroot",
		}},
		{"session end", Event{Kind: KindSessionEnd, Session: "s1"}, map[string]string{
			"CELL_EVENT": "session_end", "CELL_SESSION": "s1",
			"MESSAGE_ID": messageIDs[KindSessionEnd], "SYSLOG_IDENTIFIER": "cellroot",
		}},
		{"unknown kind has no MESSAGE_ID", Event{Kind: "other", Session: "s1"}, map[string]string{
			"CELL_EVENT": "other", "CELL_SESSION": "s1", "SYSLOG_IDENTIFIER": "cellroot",
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := journalFields(tt.e); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("journalFields =\n%v\nwant\n%v", got, tt.want)
			}
		})
	}
}

// journald takes field names of upper-case letters, digits and '_', not
// starting with '_' or a digit; MESSAGE_IDs are 128-bit lower-case hex.
func TestJournalFieldNamesAndIDs(t *testing.T) {
	name := regexp.MustCompile(`^[A-Z][A-Z0-9_]*$`)
	full := allowed
	full.ExitStatus = "x"
	for k := range journalFields(full) {
		if !name.MatchString(k) {
			t.Errorf("bad journal field name %q", k)
		}
	}
	id := regexp.MustCompile(`^[0-9a-f]{32}$`)
	seen := map[string]bool{}
	for kind, v := range messageIDs {
		if !id.MatchString(v) || seen[v] {
			t.Errorf("MESSAGE_ID of %s: %q is malformed or reused", kind, v)
		}
		seen[v] = true
	}
}

func TestNewJournal(t *testing.T) {
	s, err := NewJournal(nil)
	if journal.Enabled() {
		if err != nil || s == nil {
			t.Fatalf("journald is reachable but NewJournal = %v, %v", s, err)
		}
		return
	}
	if !errors.Is(err, ErrNoJournal) || s != nil {
		t.Fatalf("NewJournal without journald = %v, %v; want ErrNoJournal", s, err)
	}
}

func TestJournalSend(t *testing.T) {
	type sent struct {
		msg  string
		pri  journal.Priority
		vars map[string]string
	}
	var got []sent
	var errs []error
	j := newJournal(func(msg string, pri journal.Priority, vars map[string]string) error {
		got = append(got, sent{msg, pri, vars})
		if vars["CELL_EVENT"] == KindExit {
			return errors.New("socket gone")
		}
		return nil
	}, func(err error) { errs = append(errs, err) }, time.Second)

	j.Record(denial)
	j.Record(allowed)
	j.Record(Event{Kind: KindExit, Cell: "eye"})
	if len(got) != 3 {
		t.Fatalf("sent %d entries, want 3", len(got))
	}
	if got[0].pri != journal.PriWarning || got[1].pri != journal.PriInfo {
		t.Errorf("priorities %d, %d; want warning for the denial, info for the allow", got[0].pri, got[1].pri)
	}
	if want := `deny spawn of cell "lens@2": cell "eye" may not spawn "lens"`; got[0].msg != want {
		t.Errorf("MESSAGE = %q, want %q", got[0].msg, want)
	}
	if !reflect.DeepEqual(got[0].vars, journalFields(denial)) {
		t.Errorf("vars = %v", got[0].vars)
	}
	if len(errs) != 1 || errs[0] == nil {
		t.Errorf("onError got %v, want the one send failure", errs)
	}
}

// A journald that stops reading must cost the caller a bounded wait, and the
// loss must reach onError.
func TestJournalStalled(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	var mu sync.Mutex
	var errs []error
	j := newJournal(func(string, journal.Priority, map[string]string) error {
		<-release
		return nil
	}, func(err error) { mu.Lock(); errs = append(errs, err); mu.Unlock() }, 20*time.Millisecond)

	start := time.Now()
	j.Record(denial)  // stuck in send
	j.Record(allowed) // gives up waiting for the slot
	if d := time.Since(start); d > time.Second {
		t.Errorf("two Records against a stuck journal took %v", d)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(errs) != 2 || !errors.Is(errs[0], ErrStalled) || !errors.Is(errs[1], ErrStalled) {
		t.Errorf("onError got %v, want two ErrStalled", errs)
	}
}

func TestZap(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	NewZap(zap.New(core)).Record(denial)
	NewZap(zap.New(core)).Record(Event{Kind: KindSessionStart, Session: "s1"})

	entries := logs.AllUntimed()
	if len(entries) != 2 {
		t.Fatalf("%d entries, want 2", len(entries))
	}
	d := entries[0]
	if d.Level != zapcore.WarnLevel {
		t.Errorf("denial logged at %v, want warn", d.Level)
	}
	want := map[string]any{
		"event": "spawn", "session": "s1", "requester": "eye", "cell": "lens", "key": "lens@2",
		"decision": "deny", "code": "edge_denied", "reason": `cell "eye" may not spawn "lens"`,
	}
	if got := d.ContextMap(); !reflect.DeepEqual(got, want) {
		t.Errorf("fields = %v\nwant     %v", got, want)
	}
	s := entries[1]
	if s.Level != zapcore.InfoLevel || s.Message != "session s1 started" ||
		!reflect.DeepEqual(s.ContextMap(), map[string]any{"event": "session_start", "session": "s1"}) {
		t.Errorf("session start = %v %q %v", s.Level, s.Message, s.ContextMap())
	}
}

func TestMulti(t *testing.T) {
	c1, l1 := observer.New(zapcore.InfoLevel)
	c2, l2 := observer.New(zapcore.InfoLevel)
	NewZap(nil).Record(allowed) // a nil logger records nothing and does not panic
	Multi(NewZap(zap.New(c1)), NewZap(zap.New(c2))).Record(allowed)
	if l1.Len() != 1 || l2.Len() != 1 {
		t.Errorf("entries %d and %d, want 1 each", l1.Len(), l2.Len())
	}
}

// A cell-chosen string cannot put control characters into a record or its
// message.
func TestRecordsAreTerminalSafe(t *testing.T) {
	e := Event{Kind: KindSpawn, Code: "bad_name", Reason: "asked for \"\x1b[2J\rforged\"\nline", Key: "k\x07"}
	for _, f := range fields(e) {
		for _, r := range f.value {
			if r < 0x20 && r != '\t' {
				t.Fatalf("field %s keeps control %U: %q", f.journal, r, f.value)
			}
		}
	}
	if s := summary(e); strings.ContainsAny(s, "\x1b\r\n\x07") {
		t.Fatalf("summary keeps controls: %q", s)
	}
}
