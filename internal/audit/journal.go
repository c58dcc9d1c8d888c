package audit

import (
	"errors"
	"fmt"
	"time"

	"github.com/coreos/go-systemd/v22/journal"
)

var (
	// ErrNoJournal is wrapped by NewJournal's error when journald's socket
	// cannot be reached.
	ErrNoJournal = errors.New("audit: systemd journal not available")
	// ErrStalled is wrapped by the error a journal Sink reports when an
	// event was given up on because journald did not take it in time.
	ErrStalled = errors.New("audit: journal send stalled")
)

// messageIDs are the MESSAGE_ID of each kind, so that journalctl
// MESSAGE_ID=... finds one kind of event across versions. Generated once at
// random; never change them.
var messageIDs = map[string]string{
	KindSpawn:        "15111b9615c5d6dcde28567180e1ca2f",
	KindExit:         "7393e4d44a614691d6f18fb4b01c8786",
	KindStop:         "e2d18e7139432695e33d85af9a4171b8",
	KindSessionStart: "fc2b6bf103e5ff72794b815af40a499c",
	KindSessionEnd:   "f03b921b06b5ba3a76f9bb857fae3255",
}

// journalTimeout bounds how long Record waits for journald, queueing
// included. A datagram to a healthy journald takes microseconds; waiting
// longer would stall spawns behind a hung logger.
const journalTimeout = 500 * time.Millisecond

// journalFields maps e to the journal fields of docs/audit.md, MESSAGE and
// PRIORITY excepted (journal.Send takes those as arguments).
func journalFields(e Event) map[string]string {
	fs := fields(e)
	m := make(map[string]string, len(fs)+2)
	for _, f := range fs {
		m[f.journal] = f.value
	}
	m["SYSLOG_IDENTIFIER"] = "cellroot"
	if id, ok := messageIDs[e.Kind]; ok {
		m["MESSAGE_ID"] = id
	}
	return m
}

type journalSink struct {
	send    func(message string, priority journal.Priority, vars map[string]string) error
	onError func(error)
	timeout time.Duration
	// slot holds a token while a send is in flight. Sends are serialized,
	// so the journal keeps the order of events, and a send stuck in a full
	// socket buffer holds the slot: later Records give up after timeout
	// instead of each leaving a goroutine behind.
	slot chan struct{}
}

// NewJournal returns a Sink sending one journal entry per event, with the
// fields of docs/audit.md, at PRIORITY warning for a denial and info
// otherwise. A failed or stalled send is passed to onError (nil: dropped),
// never to the caller of Record, which waits at most about half a second.
// When journald's socket cannot be reached the error wraps ErrNoJournal.
func NewJournal(onError func(error)) (Sink, error) {
	if !journal.Enabled() {
		return nil, fmt.Errorf("%w: no journald socket", ErrNoJournal)
	}
	return newJournal(journal.Send, onError, journalTimeout), nil
}

func newJournal(send func(string, journal.Priority, map[string]string) error, onError func(error), timeout time.Duration) *journalSink {
	if onError == nil {
		onError = func(error) {}
	}
	return &journalSink{send: send, onError: onError, timeout: timeout, slot: make(chan struct{}, 1)}
}

func (j *journalSink) Record(e Event) {
	pri := journal.PriInfo
	if denied(e) {
		pri = journal.PriWarning
	}
	msg, vars := summary(e), journalFields(e)

	timer := time.NewTimer(j.timeout)
	defer timer.Stop()
	select {
	case j.slot <- struct{}{}:
	case <-timer.C:
		j.onError(fmt.Errorf("%w: %s event of cell %q dropped: an earlier send is still blocked", ErrStalled, e.Kind, e.Cell))
		return
	}
	done := make(chan error, 1)
	go func() {
		err := j.send(msg, pri, vars)
		<-j.slot
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			j.onError(fmt.Errorf("audit: journal send of %s event of cell %q: %w", e.Kind, e.Cell, err))
		}
	case <-timer.C:
		j.onError(fmt.Errorf("%w: %s event of cell %q not confirmed after %v", ErrStalled, e.Kind, e.Cell, j.timeout))
	}
}
