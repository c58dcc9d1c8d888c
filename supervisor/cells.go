package supervisor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/cellproject/cell/internal/audit"
	"github.com/cellproject/cell/internal/cellspec"
	"github.com/cellproject/cell/internal/rundir"
	"github.com/cellproject/cell/policy"
	"github.com/cellproject/cell/wire"
)

// Cell states, as list reports them.
const (
	stateStarting = "starting"
	stateRunning  = "running"
	stateStopping = "stopping"
)

// cellEntry is one instance in the session's table, from the spawn decision
// until its exit.
type cellEntry struct {
	key, name, parent string
	depth             int
	backend           cellspec.Backend
	token             string
	started           time.Time

	// ready is closed when the launch settled; readyErr says how. Both are
	// written once, before close.
	ready    chan struct{}
	readyErr error
	// gone is closed once the exit has been cleaned up and audited.
	gone chan struct{}

	// Guarded by Session.mu.
	state string
	inst  Instance
}

// spawn decides a spawn request and, when allowed, launches the cell and
// waits until its socket accepts connections.
func (s *Session) spawn(who peer, req wire.Request) wire.Reply {
	if err := cellspec.CheckName(req.Name); err != nil {
		return errorReply(req.ID, wire.CodeBadName, "", fmt.Sprintf("name: %v", err))
	}
	if req.Instance != "" {
		if err := cellspec.CheckName(req.Instance); err != nil {
			return errorReply(req.ID, wire.CodeBadName, "", fmt.Sprintf("instance: %v", err))
		}
	}
	key := cellspec.Key(req.Name, req.Instance)

	dec, entry, joined, err := s.admit(who, req, key)
	if errors.Is(err, errShuttingDown) {
		return errorReply(req.ID, wire.CodeShuttingDown, "", "the session is ending")
	}
	ev := audit.Event{Kind: audit.KindSpawn, Session: s.id, Requester: who.key, Cell: req.Name, Key: key,
		Allow: dec.Allow, Code: string(dec.Code), Reason: dec.Reason, Backend: string(dec.Spec.Backend),
		Limits: dec.Spec.Limits.String()}
	if joined {
		ev.Reason = "already running: " + dec.Reason
		s.mu.Lock()
		if entry.inst != nil {
			ev.ID = entry.inst.ID()
		}
		s.mu.Unlock()
	}
	// A new instance's allow is recorded by launch, once the backend has
	// named it (pid, container or unit), so that the record carries its id.
	if joined || !dec.Allow || err != nil {
		s.cfg.Audit.Record(ev)
	}
	if !dec.Allow {
		return errorReply(req.ID, wire.CodeDenied, string(dec.Code), dec.Reason)
	}
	if err != nil {
		return errorReply(req.ID, wire.CodeSpawnFailed, "", err.Error())
	}
	if !joined {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.launch(entry, dec.Spec, ev)
		}()
	}
	select {
	case <-entry.ready:
	case <-s.life.Done():
		return errorReply(req.ID, wire.CodeShuttingDown, "", "the session is ending")
	}
	if entry.readyErr != nil {
		return errorReply(req.ID, wire.CodeSpawnFailed, "", fmt.Sprintf("spawn %q: %v", key, entry.readyErr))
	}
	return wire.Reply{ID: req.ID, OK: true, Key: key, Socket: rundir.SocketPath(s.dir, key)}
}

// errShuttingDown ends an admission that raced with teardown.
var errShuttingDown = errors.New("the session is ending")

// admit decides a spawn request and then reserves a new instance or joins
// the running one (joined). The vetting hook does I/O (hashing a binary), so
// it runs without the lock, and the decision is taken again afterwards: the
// session may have changed meanwhile. err is errShuttingDown, or a failure to
// reserve.
func (s *Session) admit(who peer, req wire.Request, key string) (dec policy.Decision, entry *cellEntry, joined bool, err error) {
	vetted := s.cfg.Vet == nil
	for {
		s.mu.Lock()
		if s.closing {
			s.mu.Unlock()
			return dec, nil, false, errShuttingDown
		}
		existing := s.cells[key]
		dec = s.decideLocked(who, req, existing)
		switch {
		case !dec.Allow:
			s.mu.Unlock()
			return dec, nil, false, nil
		case existing != nil:
			s.mu.Unlock()
			return dec, existing, true, nil
		case vetted:
			entry, err = s.reserveLocked(who, dec)
			s.mu.Unlock()
			return dec, entry, false, err
		}
		s.mu.Unlock()
		if err := s.cfg.Vet(s.life, dec.Spec); err != nil {
			return policy.Decision{Code: policy.Unverified, Spec: dec.Spec,
				Reason: fmt.Sprintf("cell %q failed verification: %v", dec.Spec.Name, err)}, nil, false, nil
		}
		vetted = true
	}
}

// decideLocked runs policy for a request, and refuses backends this root
// has no implementation of.
func (s *Session) decideLocked(who peer, req wire.Request, existing *cellEntry) policy.Decision {
	dec := policy.Decide(policy.Request{
		Requester:      who.key,
		RequesterDepth: who.depth,
		Name:           req.Name,
		Instance:       req.Instance,
	}, s.cfg.Allowlist, s.policyStateLocked(existing))
	if dec.Allow && existing == nil {
		if _, ok := s.cfg.Backends[dec.Spec.Backend]; !ok {
			return policy.Decision{Code: policy.BackendUnavailable,
				Reason: fmt.Sprintf("backend %q is not wired into this root", dec.Spec.Backend)}
		}
	}
	return dec
}

// policyStateLocked counts the session for policy; the instance a request
// would join is left out, so that joining it is judged like starting it.
func (s *Session) policyStateLocked(joining *cellEntry) policy.State {
	st := policy.State{
		Instances:    map[string]int{},
		Backends:     s.cfg.Capabilities,
		AllowlistErr: s.cfg.AllowlistErr,
	}
	for _, e := range s.cells {
		if e == joining {
			continue
		}
		st.Cells++
		st.Instances[e.name]++
	}
	return st
}

func (s *Session) reserveLocked(who peer, dec policy.Decision) (*cellEntry, error) {
	token, err := newToken()
	if err != nil {
		return nil, err
	}
	e := &cellEntry{
		key:     dec.Spec.Key,
		name:    dec.Spec.Name,
		parent:  who.key,
		depth:   dec.Depth,
		backend: dec.Spec.Backend,
		token:   token,
		started: time.Now(),
		ready:   make(chan struct{}),
		gone:    make(chan struct{}),
		state:   stateStarting,
	}
	s.cells[e.key] = e
	s.tokens[token] = e.key
	return e, nil
}

// launch starts the reserved entry, records the decision that allowed it,
// and settles its ready channel.
func (s *Session) launch(e *cellEntry, spec cellspec.Spec, decision audit.Event) {
	spec.Session = s.id
	spec.SessionDir = s.dir
	spec.Env = []string{
		"CELL_NAME=" + e.name,
		"CELL_SESSION=" + s.id,
		"CELL_RUNTIME_DIR=" + s.dir,
		"CELL_UMBILICAL=" + filepath.Join(s.dir, rundir.UmbilicalName),
		"CELL_TOKEN=" + e.token,
	}
	spec.Output = s.out.prefixed(e.key)
	sock := rundir.SocketPath(s.dir, e.key)

	settle := func(err error) {
		e.readyErr = err
		close(e.ready)
	}
	inst, err := s.cfg.Backends[spec.Backend].Launch(s.life, spec)
	if err != nil {
		s.forget(e)
		decision.Reason += "; launch failed: " + err.Error()
		s.cfg.Audit.Record(decision)
		settle(err)
		return
	}
	decision.ID = inst.ID()
	s.cfg.Audit.Record(decision)
	s.mu.Lock()
	e.inst = inst
	s.writeRecordLocked()
	s.mu.Unlock()
	s.cfg.Log.Info("cell launched", zap.String("cell", e.key), zap.String("backend", string(spec.Backend)), zap.String("id", inst.ID()))

	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		<-inst.Done()
		s.exited(e)
	}()

	if err := waitReady(s.life, sock, inst, s.cfg.ReadyTimeout); err != nil {
		stopCtx, cancel := context.WithTimeout(context.Background(), s.cfg.StopGrace)
		inst.Stop(stopCtx)
		cancel()
		settle(err)
		return
	}
	s.mu.Lock()
	if e.state == stateStarting {
		e.state = stateRunning
	}
	s.mu.Unlock()
	settle(nil)
}

// waitReady polls the cell's socket until a connection succeeds, the cell
// exits, the timeout passes or the session ends. Polling a connect is the
// readiness signal any cell gives without extra protocol.
func waitReady(life context.Context, sock string, inst Instance, timeout time.Duration) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if conn, err := net.DialTimeout("unix", sock, time.Second); err == nil {
			conn.Close()
			return nil
		}
		select {
		case <-inst.Done():
			return fmt.Errorf("cell exited before its socket was ready (%s)", inst.ExitStatus())
		case <-deadline.C:
			return fmt.Errorf("socket %s not ready within %s", sock, timeout)
		case <-life.Done():
			return errors.New("the session is ending")
		case <-tick.C:
		}
	}
}

// exited cleans up after a cell that ended, however it ended.
func (s *Session) exited(e *cellEntry) {
	defer close(e.gone)
	s.forget(e)
	// The cell may have died without removing its files; a later instance of
	// the same key must find a clean slate.
	os.Remove(rundir.SocketPath(s.dir, e.key))
	os.Remove(rundir.LockPath(s.dir, e.key))
	s.cfg.Audit.Record(audit.Event{Kind: audit.KindExit, Session: s.id, Cell: e.name, Key: e.key, Allow: true,
		Backend: string(e.backend), ID: e.inst.ID(), ExitStatus: e.inst.ExitStatus()})
	s.cfg.Log.Info("cell exited", zap.String("cell", e.key), zap.String("status", e.inst.ExitStatus()))
}

func (s *Session) forget(e *cellEntry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cells[e.key] == e {
		delete(s.cells, e.key)
	}
	delete(s.tokens, e.token)
	s.writeRecordLocked()
}

// stop handles a stop request: the owner may stop any cell, a cell only those
// it spawned.
func (s *Session) stop(who peer, req wire.Request) wire.Reply {
	s.mu.Lock()
	e := s.cells[req.Name]
	s.mu.Unlock()
	if e == nil {
		return errorReply(req.ID, wire.CodeNotFound, "", fmt.Sprintf("no cell %q runs in this session", req.Name))
	}
	if who.role != wire.RoleOwner && e.parent != who.key {
		return errorReply(req.ID, wire.CodeNotPermitted, "", fmt.Sprintf("%s did not spawn %q", who.describe(), req.Name))
	}
	s.cfg.Audit.Record(audit.Event{Kind: audit.KindStop, Session: s.id, Requester: who.key, Cell: e.name, Key: e.key,
		Allow: true, Backend: string(e.backend), Reason: "stop requested"})
	select {
	case <-e.ready:
	case <-s.life.Done():
		return errorReply(req.ID, wire.CodeShuttingDown, "", "the session is ending")
	}
	s.stopEntry(e, "stop requested by "+who.describe())
	return wire.Reply{ID: req.ID, OK: true, Key: e.key}
}

// stopEntry stops one cell with the grace period and waits for it.
func (s *Session) stopEntry(e *cellEntry, why string) {
	<-e.ready
	s.mu.Lock()
	inst := e.inst
	if inst != nil {
		e.state = stateStopping
	}
	s.mu.Unlock()
	if inst == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.StopGrace)
	defer cancel()
	if err := inst.Stop(ctx); err != nil {
		s.cfg.Log.Warn("stop cell", zap.String("cell", e.key), zap.String("why", why), zap.Error(err))
		return
	}
	// Stop returns once the cell is gone; wait for its bookkeeping too, so
	// that whoever asked sees the session without it.
	<-e.gone
}

func (s *Session) list() []wire.CellInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	infos := make([]wire.CellInfo, 0, len(s.cells))
	for _, e := range s.cells {
		info := wire.CellInfo{Key: e.key, Name: e.name, Parent: e.parent, Depth: e.depth,
			Backend: string(e.backend), State: e.state, Started: e.started}
		if e.inst != nil {
			info.ID = e.inst.ID()
		}
		infos = append(infos, info)
	}
	sort.Slice(infos, func(i, j int) bool { return infos[i].Started.Before(infos[j].Started) })
	return infos
}

// writeRecordLocked rewrites the session's record of cell processes, which
// the collector uses if this root dies without tearing down.
func (s *Session) writeRecordLocked() {
	if s.closing {
		// Teardown removes the record once every cell is gone; rewriting
		// it at each exit made teardown quadratic. Should this root die
		// meanwhile, the lines of exited cells are harmless: the collector
		// checks each pid's start time.
		return
	}
	var buf []byte
	for _, e := range s.cells {
		if e.inst == nil {
			continue
		}
		if pid, err := strconv.Atoi(e.inst.ID()); err == nil {
			if start, err := processStartTime(pid); err == nil {
				buf = fmt.Appendf(buf, "%d %d %s\n", pid, start, e.key)
			}
		}
	}
	path := rundir.RecordPath(s.cfg.Base, s.id)
	tmp := path + ".tmp"
	err := os.WriteFile(tmp, buf, 0o600)
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		s.cfg.Log.Warn("write session record", zap.Error(err))
	}
}
