package supervisor

import (
	"fmt"

	"go.uber.org/zap"

	"github.com/cellproject/cell/internal/audit"
	"github.com/cellproject/cell/policy"
	"github.com/cellproject/cell/wire"
)

// upgrade answers the owner's OpUpgrade: it starts a new instance of the
// running cell req.Name from the binary its entry names now (a fresh build
// is vetted again), hands it the same listener, and once it serves tells the
// old instance to drain (SIGTERM), giving it StopGrace before it is killed.
// Callers never see the socket refuse: it stays bound by the root and both
// instances accept on it during the overlap. Any failure before the switch
// leaves the old instance serving.
func (s *Session) upgrade(req wire.Request) wire.Reply {
	key := req.Name
	refuse := func(format string, args ...any) wire.Reply {
		return errorReply(req.ID, wire.CodeUpgradeFailed, "", fmt.Sprintf("upgrade %q: ", key)+fmt.Sprintf(format, args...))
	}
	s.mu.Lock()
	e := s.cells[key]
	switch {
	case e == nil:
		s.mu.Unlock()
		return errorReply(req.ID, wire.CodeNotFound, "", fmt.Sprintf("no cell %q runs in this session", key))
	case e.state != stateRunning:
		state := e.state
		s.mu.Unlock()
		return refuse("the cell is %s; only a running cell can be upgraded", state)
	case e.upgrading:
		s.mu.Unlock()
		return refuse("an upgrade of it is already in progress")
	}
	e.upgrading = true
	spec := e.spec
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		e.upgrading = false
		s.mu.Unlock()
	}()

	ev := audit.Event{Kind: audit.KindSpawn, Session: s.id, Cell: e.name, Key: e.key, Allow: true, Code: string(policy.OK),
		Backend: string(e.backend), Limits: spec.Limits.String(), Reason: "upgrade: new instance"}
	// A running cell means the wiring is loaded: this does not wait.
	w, ok := s.awaitWiring()
	if !ok {
		return errorReply(req.ID, wire.CodeShuttingDown, "", "the session is ending")
	}
	if w.Vet != nil {
		if err := w.Vet(s.life, spec); err != nil {
			ev.Allow, ev.Code = false, string(policy.Unverified)
			ev.Reason += "; refused: " + err.Error()
			s.cfg.Audit.Record(ev)
			return refuse("the new build failed verification: %v; the old instance keeps serving", err)
		}
	}
	in, err := s.startInstance(e, spec, func(in *instance) { s.mu.Lock(); e.next = in; s.mu.Unlock() })
	if in == nil {
		ev.Reason += "; launch failed: " + err.Error()
		s.cfg.Audit.Record(ev)
		return refuse("launch: %v; the old instance keeps serving", err)
	}
	ev.ID = in.inst.ID()
	s.cfg.Audit.Record(ev)
	if err := s.awaitServing(in); err != nil {
		s.stopInstance(in, "upgrade failed: "+err.Error())
		return refuse("new instance: %v; the old instance keeps serving", err)
	}

	s.mu.Lock()
	if e.state != stateRunning || s.cells[key] != e {
		state := e.state
		s.mu.Unlock()
		s.stopInstance(in, "cell stopped during its upgrade")
		return refuse("the cell is %s: it was stopped during the upgrade", state)
	}
	old := e.cur
	e.cur, e.next = in, nil
	e.old = append(e.old, old)
	s.writeRecordLocked()
	s.mu.Unlock()

	s.cfg.Audit.Record(audit.Event{Kind: audit.KindStop, Session: s.id, Cell: e.name, Key: e.key, Allow: true, Code: string(policy.OK),
		Backend: string(e.backend), ID: old.inst.ID(), Reason: "upgrade: draining the old instance, replaced by " + in.inst.ID()})
	s.cfg.Log.Info("cell upgraded", zap.String("cell", key), zap.String("old", old.inst.ID()), zap.String("new", in.inst.ID()))
	s.stopInstance(old, "replaced by an upgrade")
	return wire.Reply{ID: req.ID, OK: true, Key: key}
}
