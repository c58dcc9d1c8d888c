package supervisor

import (
	"testing"
	"time"

	"github.com/cellproject/cell/internal/cellspec"
)

// TestBeginRestartCountsWithinTheWindow: restarts are counted within the
// policy's window only, one past the limit is refused, and a stopped entry
// or an ending session is never restarted.
func TestBeginRestartCountsWithinTheWindow(t *testing.T) {
	s := &Session{}
	e := &cellEntry{state: stateRunning, spec: cellspec.Spec{Restart: cellspec.Restart{Mode: RestartOnFailure, Limit: 2, Window: time.Hour}}}
	for want := 1; want <= 2; want++ {
		if n, v := s.beginRestart(e); v != restartGo || n != want {
			t.Fatalf("restart %d: attempt %d, verdict %d", want, n, v)
		}
		if e.state != stateRestarting {
			t.Errorf("state %q while restarting", e.state)
		}
	}
	if _, v := s.beginRestart(e); v != restartLimit {
		t.Errorf("third restart within the window: verdict %d, want the limit", v)
	}
	// Restarts older than the window no longer count.
	for i := range e.restart.times {
		e.restart.times[i] = time.Now().Add(-2 * time.Hour)
	}
	if n, v := s.beginRestart(e); v != restartGo || n != 1 {
		t.Errorf("after the window passed: attempt %d, verdict %d, want a first restart", n, v)
	}
	e.state = stateStopping
	if _, v := s.beginRestart(e); v != restartStopped {
		t.Errorf("stopping entry: verdict %d, want stopped", v)
	}
	e.state = stateRunning
	s.closing = true
	if _, v := s.beginRestart(e); v != restartStopped {
		t.Errorf("ending session: verdict %d, want stopped", v)
	}
}
