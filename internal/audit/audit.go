package audit

import (
	"fmt"

	"go.uber.org/zap"

	"github.com/cellproject/cell/internal/termsafe"
)

// Event kinds.
const (
	KindSpawn        = "spawn"
	KindExit         = "exit"
	KindStop         = "stop"
	KindSessionStart = "session_start"
	KindSessionEnd   = "session_end"
)

// Event is one audited fact. Empty fields are left out of the record.
type Event struct {
	// Kind is one of the Kind constants.
	Kind    string
	Session string
	// Requester is the asking cell's name; "" means the owner, as in
	// policy.Request. It is recorded for spawn and stop events only.
	Requester string
	// Cell is the cell's name and Key its instance key.
	Cell, Key string
	// Allow, Code and Reason are the decision. An event carries one exactly
	// when Code is set; Allow is meaningless otherwise.
	Allow        bool
	Code, Reason string
	// Backend and Limits are as resolved (Limits in quota.Limits.String form).
	Backend, Limits string
	// ID is the backend's handle: a pid, a container id or a unit name.
	ID string
	// ExitStatus says how the cell ended, for exit events.
	ExitStatus string
	// Missing names the sandbox layers the backend could not apply and the
	// allowlist accepted, comma-separated (see docs/capsid.md); empty when
	// every layer applies.
	Missing string
}

// Sink takes events. Record must not panic, must return promptly, and must
// be safe for concurrent use; a sink that cannot deliver reports that its own
// way rather than to the caller, who can do nothing about it.
type Sink interface {
	Record(Event)
}

// ownerRequester stands for the owner in records. The parentheses keep it
// apart from every cell name, which cellspec.CheckName limits to letters, digits, '_'
// and '-'.
const ownerRequester = "(owner)"

// field is one record field under its journal name and its zap key.
type field struct {
	journal, zap, value string
}

// maxField bounds one field of a record; reasons are a sentence or two.
const maxField = 2048

// safe returns e with every string terminal-safe and bounded
// (termsafe.String): requests carry strings a cell chose (a name that
// failed validation, quoted into the reason), and a record must not be able
// to drive the terminal of whoever reads the log, or forge a line of it.
func safe(e Event) Event {
	for _, p := range []*string{&e.Kind, &e.Session, &e.Requester, &e.Cell, &e.Key, &e.Code, &e.Reason,
		&e.Backend, &e.Limits, &e.ID, &e.ExitStatus, &e.Missing} {
		*p = termsafe.String(*p, maxField)
	}
	return e
}

// fields maps e to the record fields shared by every sink, in a fixed order.
func fields(e Event) []field {
	e = safe(e)
	fs := make([]field, 0, 12)
	add := func(journal, zap, value string) {
		if value != "" {
			fs = append(fs, field{journal, zap, value})
		}
	}
	add("CELL_EVENT", "event", e.Kind)
	add("CELL_SESSION", "session", e.Session)
	requester := e.Requester
	if requester == "" && (e.Kind == KindSpawn || e.Kind == KindStop) {
		requester = ownerRequester
	}
	add("CELL_REQUESTER", "requester", requester)
	add("CELL_NAME", "cell", e.Cell)
	add("CELL_KEY", "key", e.Key)
	if e.Code != "" {
		add("CELL_DECISION", "decision", decision(e.Allow))
		add("CELL_CODE", "code", e.Code)
		add("CELL_REASON", "reason", e.Reason)
	}
	add("CELL_BACKEND", "backend", e.Backend)
	add("CELL_LIMITS", "limits", e.Limits)
	add("CELL_ID", "id", e.ID)
	add("CELL_EXIT_STATUS", "exit_status", e.ExitStatus)
	add("CELL_MISSING_LAYERS", "missing_layers", e.Missing)
	return fs
}

func decision(allow bool) string {
	if allow {
		return "allow"
	}
	return "deny"
}

func denied(e Event) bool { return e.Code != "" && !e.Allow }

// summary is the one-line human message of e.
func summary(e Event) string {
	e = safe(e)
	name := e.Key
	if name == "" {
		name = e.Cell
	}
	switch {
	case e.Code != "":
		return fmt.Sprintf("%s %s of cell %q: %s", decision(e.Allow), e.Kind, name, e.Reason)
	case e.Kind == KindExit:
		return fmt.Sprintf("cell %q exited: %s", name, e.ExitStatus)
	case e.Kind == KindStop:
		return fmt.Sprintf("cell %q stopped", name)
	case e.Kind == KindSessionStart:
		return fmt.Sprintf("session %s started", e.Session)
	case e.Kind == KindSessionEnd:
		return fmt.Sprintf("session %s ended", e.Session)
	}
	return fmt.Sprintf("%s event for cell %q", e.Kind, name)
}

type zapSink struct{ l *zap.Logger }

// NewZap returns a Sink writing one record per event to l: at Warn for a
// denial, at Info otherwise, with the fields of docs/audit.md as zap keys.
// A nil l records nothing.
func NewZap(l *zap.Logger) Sink {
	if l == nil {
		l = zap.NewNop()
	}
	return zapSink{l}
}

func (z zapSink) Record(e Event) {
	fs := fields(e)
	zf := make([]zap.Field, len(fs))
	for i, f := range fs {
		zf[i] = zap.String(f.zap, f.value)
	}
	if denied(e) {
		z.l.Warn(summary(e), zf...)
		return
	}
	z.l.Info(summary(e), zf...)
}

type multi []Sink

// Multi returns a Sink recording each event to every sink in turn.
func Multi(sinks ...Sink) Sink { return multi(sinks) }

func (m multi) Record(e Event) {
	for _, s := range m {
		s.Record(e)
	}
}
