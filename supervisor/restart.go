package supervisor

import (
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/cellproject/cell/internal/audit"
	"github.com/cellproject/cell/policy"
	"github.com/cellproject/cell/wire"
)

// Restart modes of cellspec.Restart.
const (
	RestartOnFailure = "on-failure"
	RestartAlways    = "always"
)

// codeRestartLimit is the audit code of a restart refused past the limit.
const codeRestartLimit = "restart_limit"

// exitedOK is the ExitStatus of an instance that exited 0, on every backend.
const exitedOK = "exited 0"

// Restart backoff: the first restart waits restartBackoffMin, each further
// one within the window twice as long, up to restartBackoffMax.
const (
	restartBackoffMin = 50 * time.Millisecond
	restartBackoffMax = 2 * time.Second
)

// restartState is an entry's restart history; guarded by Session.mu.
type restartState struct {
	times []time.Time // restarts within the policy's window
}

// restartAfter applies e's restart policy to its serving instance, which
// ended by itself with status. It returns false when the cell is to stay
// down (no policy, a clean exit under on-failure, the session ending, or the
// limit reached, which fails the cell); true when it was restarted or the
// entry was stopped meanwhile (stopEntry retires it then). A restart that
// fails to serve counts as one more crash.
func (s *Session) restartAfter(e *cellEntry, status string) bool {
	pol := e.spec.Restart
	if pol.Mode == "" || (pol.Mode == RestartOnFailure && status == exitedOK) {
		return false
	}
	for {
		attempt, verdict := s.beginRestart(e)
		switch verdict {
		case restartStopped:
			return true
		case restartLimit:
			s.fail(e, status)
			return false
		}
		backoff := min(restartBackoffMin<<(attempt-1), restartBackoffMax)
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-s.life.Done():
			t.Stop()
			return false
		}
		in, err := s.startInstance(e, e.spec, func(in *instance) { s.mu.Lock(); e.cur = in; s.mu.Unlock() })
		reason := fmt.Sprintf("restart %d of at most %d in %s (%s) after %s", attempt, pol.Limit, pol.Window, pol.Mode, status)
		ev := audit.Event{Kind: audit.KindSpawn, Session: s.id, Requester: e.parent, Cell: e.name, Key: e.key, Allow: true,
			Code: string(policy.OK), Backend: string(e.backend), Limits: e.spec.Limits.String(), Reason: reason}
		if in != nil {
			ev.ID = in.inst.ID()
		} else {
			ev.Reason += "; launch failed: " + err.Error()
		}
		s.cfg.Audit.Record(ev)
		s.cfg.Log.Info("cell restarting", zap.String("cell", e.key), zap.String("reason", ev.Reason))
		if in == nil {
			status = err.Error()
			continue
		}
		if !s.stillRestarting(e) {
			s.stopInstance(in, "stopped while restarting")
			return true
		}
		if err := s.awaitServing(in); err != nil {
			s.stopInstance(in, "not ready after restart: "+err.Error())
			status = in.inst.ExitStatus()
			if status == "" {
				status = err.Error()
			}
			continue
		}
		s.mu.Lock()
		if e.state == stateRestarting {
			e.state = stateRunning
		}
		s.mu.Unlock()
		return true
	}
}

// What beginRestart found.
const (
	restartGo      = iota
	restartLimit   // one more restart would pass the limit
	restartStopped // a stop or the session's end came first
)

// beginRestart counts one more restart of e, unless the limit is reached or
// e is no longer meant to run.
func (s *Session) beginRestart(e *cellEntry) (attempt, verdict int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing || (e.state != stateRunning && e.state != stateRestarting) {
		return 0, restartStopped
	}
	e.state = stateRestarting
	now := time.Now()
	pol := e.spec.Restart
	kept := e.restart.times[:0]
	for _, t := range e.restart.times {
		if now.Sub(t) < pol.Window {
			kept = append(kept, t)
		}
	}
	e.restart.times = kept
	if len(kept) >= pol.Limit {
		return 0, restartLimit
	}
	e.restart.times = append(e.restart.times, now)
	return len(e.restart.times), restartGo
}

// stillRestarting reports whether nobody stopped e while it was restarting.
func (s *Session) stillRestarting(e *cellEntry) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return e.state == stateRestarting && !s.closing
}

// fail records that e crashed past its restart limit and tells whoever
// waits on the session's failures (`cellroot run`).
func (s *Session) fail(e *cellEntry, status string) {
	pol := e.spec.Restart
	reason := fmt.Sprintf("cell %q failed: more than %d restarts in %s; last exit: %s", e.key, pol.Limit, pol.Window, status)
	// Recorded as the restart the root refuses: the exit itself is
	// recorded already.
	s.cfg.Audit.Record(audit.Event{Kind: audit.KindSpawn, Session: s.id, Requester: e.parent, Cell: e.name, Key: e.key,
		Code: codeRestartLimit, Backend: string(e.backend), ExitStatus: status, Reason: reason})
	s.cfg.Log.Error("cell failed", zap.String("cell", e.key), zap.String("status", status))
	s.mu.Lock()
	s.failures = append(s.failures, reason)
	ch := s.failed
	s.failed = make(chan struct{})
	s.mu.Unlock()
	close(ch)
}

// awaitFailure answers OpAwaitFailure: it blocks until a cell of the session
// has failed past its restart limit (an error reply naming it) or the
// session ends.
func (s *Session) awaitFailure(req wire.Request) wire.Reply {
	s.mu.Lock()
	ch := s.failed
	first := ""
	if len(s.failures) > 0 {
		first = s.failures[0]
	}
	s.mu.Unlock()
	if first == "" {
		select {
		case <-ch:
		case <-s.life.Done():
			return errorReply(req.ID, wire.CodeShuttingDown, "", "the session is ending")
		}
		s.mu.Lock()
		first = s.failures[0]
		s.mu.Unlock()
	}
	return errorReply(req.ID, wire.CodeCellFailed, "", first)
}
