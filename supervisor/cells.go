package supervisor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
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
	stateStarting   = "starting"
	stateRunning    = "running"
	stateRestarting = "restarting"
	stateStopping   = "stopping"
)

// cellEntry is one cell key in the session's table, from the spawn decision
// until it is stopped or stays down. Its listener outlives instances: a
// restart or an upgrade hands the same socket to the next one.
type cellEntry struct {
	key, name, parent string
	depth             int
	backend           cellspec.Backend
	started           time.Time
	// spec is the launch as policy resolved it, with the session's fields
	// filled in; restarts reuse it, upgrades resolve it again.
	spec cellspec.Spec
	// ln is the root's listening socket for the key, bound before the
	// first launch; closed, with its file removed, when the entry goes.
	ln *cellListener

	// ready is closed when the first launch settled; readyErr says how.
	// Both are written once, before close.
	ready    chan struct{}
	readyErr error
	// gone is closed once the entry has left the table and its listener
	// is closed.
	gone     chan struct{}
	goneOnce sync.Once

	// Guarded by Session.mu.
	state string
	// cur is the newest instance, serving or starting; next one being
	// started by an upgrade; old ones still draining after an upgrade.
	cur, next *instance
	old       []*instance
	restart   restartState
	upgrading bool
}

// instance is one process (container, scope) of a cell key.
type instance struct {
	token string
	// took is closed when the instance has taken its listener: it serves.
	took     chan struct{}
	tookOnce sync.Once
	// inst is set once launched; guarded by Session.mu.
	inst Launched
}

func (in *instance) markTook() { in.tookOnce.Do(func() { close(in.took) }) }

// instancesLocked lists the entry's launched instances; the caller holds
// Session.mu.
func (e *cellEntry) instancesLocked() []*instance {
	var all []*instance
	for _, in := range append([]*instance{e.cur, e.next}, e.old...) {
		if in != nil && in.inst != nil {
			all = append(all, in)
		}
	}
	return all
}

// spawn decides a spawn request and, when allowed, launches the cell and
// waits until it serves: it has taken the listener the root bound for it.
func (s *Session) spawn(who peer, req wire.Request) wire.Reply {
	// A bad name is a protocol error (bad_name), not a decision to audit.
	key, err := policy.KeyOf(req.Name, req.Instance, s.keyFits)
	if err != nil {
		return errorReply(req.ID, wire.CodeBadName, "", err.Error())
	}
	// A spawn that comes before the allowlist and the backends are loaded
	// waits for them: deciding without them would deny it wrongly.
	w, ok := s.awaitWiring()
	if !ok {
		return errorReply(req.ID, wire.CodeShuttingDown, "", "the session is ending")
	}

	dec, entry, joined, err := s.admit(w, who, req, key)
	if errors.Is(err, errShuttingDown) {
		return errorReply(req.ID, wire.CodeShuttingDown, "", "the session is ending")
	}
	// The record is built once the outcome is known: now, or for a new
	// instance when the backend has named it (or refused it), which may be
	// after this request was answered shutting_down.
	record := func(out launched) {
		s.recordDecision(who, s.spawnRecord(who, req, key, dec, joined, out), time.Now())
	}
	switch {
	case dec.Allow && err == nil && !joined:
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.launch(entry, dec.Spec, record)
		}()
	case joined:
		var out launched
		s.mu.Lock()
		if entry.cur != nil && entry.cur.inst != nil {
			out.id = entry.cur.inst.ID()
		}
		s.mu.Unlock()
		record(out)
	default:
		record(launched{})
	}
	if !dec.Allow {
		return errorReply(req.ID, wire.CodeDenied, string(dec.Code), dec.Reason)
	}
	if err != nil {
		return errorReply(req.ID, wire.CodeSpawnFailed, "", err.Error())
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

// launched is what the backend made of an allowed new instance: its id (pid,
// container or unit), or why nothing was launched.
type launched struct {
	id  string
	err error
}

// spawnRecord is the one audit record of a spawn request, built once its
// outcome is known: denied, joined to the running instance, or launched
// with the backend's id, or failed with the reason.
func (s *Session) spawnRecord(who peer, req wire.Request, key string, dec policy.Decision, joined bool, out launched) audit.Event {
	ev := audit.Event{Kind: audit.KindSpawn, Session: s.id, Requester: who.key, Cell: req.Name, Key: key,
		Allow: dec.Allow, Code: string(dec.Code), Reason: dec.Reason, Backend: string(dec.Spec.Backend),
		Limits: dec.Spec.Limits.String(), Missing: dec.MissingLayers(), ID: out.id}
	switch {
	case joined:
		ev.Reason = "already running: " + dec.Reason
	case out.err != nil:
		ev.Reason += "; launch failed: " + out.err.Error()
	}
	return ev
}

// errShuttingDown ends an admission that raced with teardown.
var errShuttingDown = errors.New("the session is ending")

// admit decides a spawn request and then reserves a new instance or joins
// the running one (joined). The vetting hook does I/O (hashing a binary), so
// it runs without the lock, and policy decides again with its outcome: the
// session may have changed meanwhile. err is errShuttingDown, or a failure to
// reserve.
func (s *Session) admit(w *Wiring, who peer, req wire.Request, key string) (dec policy.Decision, entry *cellEntry, joined bool, err error) {
	vet := vetOutcome{done: w.Vet == nil}
	for {
		s.mu.Lock()
		if s.closing {
			s.mu.Unlock()
			return dec, nil, false, errShuttingDown
		}
		existing := s.cells[key]
		dec = s.decideLocked(w, who, req, existing, vet)
		switch {
		case !dec.Allow:
			s.mu.Unlock()
			return dec, nil, false, nil
		case existing != nil && existing.state == stateStopping:
			// A stop was decided first: this spawn starts the next
			// instance once the dying one has left the table.
			s.mu.Unlock()
			if err := s.awaitLeft(existing); err != nil {
				return dec, nil, false, err
			}
			continue
		case existing != nil:
			s.mu.Unlock()
			return dec, existing, true, nil
		case vet.done:
			entry = s.reserveLocked(who, dec)
			s.mu.Unlock()
			return dec, entry, false, nil
		}
		s.mu.Unlock()
		vet = vetOutcome{done: true, err: w.Vet(s.life, dec.Spec)}
	}
}

// vetOutcome is what the vetting hook said of a request's spec, for policy.
type vetOutcome struct {
	done bool
	err  error
}

// awaitLeft blocks until e, being stopped, has left the table.
func (s *Session) awaitLeft(e *cellEntry) error {
	select {
	case <-e.ready:
	case <-s.life.Done():
		return errShuttingDown
	}
	s.mu.Lock()
	launched := e.cur != nil
	s.mu.Unlock()
	if launched {
		select {
		case <-e.gone:
		case <-s.life.Done():
			return errShuttingDown
		}
	}
	return nil
}

// decideLocked runs policy for a request: the one place a spawn is decided.
func (s *Session) decideLocked(w *Wiring, who peer, req wire.Request, existing *cellEntry, vet vetOutcome) policy.Decision {
	st := s.policyStateLocked(w, existing)
	st.Vetted, st.VetErr = vet.done && w.Vet != nil, vet.err
	return policy.Decide(policy.Request{
		Requester:      who.name,
		RequesterDepth: who.depth,
		Name:           req.Name,
		Instance:       req.Instance,
	}, w.Allowlist, st)
}

// keyFits says whether key can name a socket of this session dir.
func (s *Session) keyFits(key string) error { return rundir.CheckSocketPath(s.dir, key) }

// wiredCapabilities is what policy may choose from: the probed capability
// of every backend; an available one this root has no launcher for is
// unavailable, with that reason (an unavailable one keeps its own).
func wiredCapabilities(w *Wiring) map[cellspec.Backend]policy.Capability {
	caps := make(map[cellspec.Backend]policy.Capability, len(w.Capabilities))
	for b, c := range w.Capabilities {
		if _, ok := w.Launchers[b]; !ok && c.Available {
			c = policy.Capability{Reason: fmt.Sprintf("backend %q is not wired into this root", b)}
		}
		caps[b] = c
	}
	return caps
}

// policyStateLocked counts the session for policy; the instance a request
// would join is left out, so that joining it is judged like starting it.
func (s *Session) policyStateLocked(w *Wiring, joining *cellEntry) policy.State {
	st := policy.State{
		Instances:    map[string]int{},
		Backends:     wiredCapabilities(w),
		AllowlistErr: w.AllowlistErr,
		KeyFits:      s.keyFits,
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

func (s *Session) reserveLocked(who peer, dec policy.Decision) *cellEntry {
	e := &cellEntry{
		key:     dec.Spec.Key,
		name:    dec.Spec.Name,
		parent:  who.key,
		depth:   dec.Depth,
		backend: dec.Spec.Backend,
		started: time.Now(),
		ready:   make(chan struct{}),
		gone:    make(chan struct{}),
		state:   stateStarting,
	}
	s.cells[e.key] = e
	return e
}

// launch binds the reserved entry's listener, starts its first instance,
// tells outcome what the backend made of it, and settles the entry's
// ready channel once the instance serves or failed to.
func (s *Session) launch(e *cellEntry, spec cellspec.Spec, outcome func(launched)) {
	spec.Session = s.id
	spec.SessionDir = s.dir
	spec.Output = s.out.prefixed(e.key)
	e.spec = spec

	fail := func(err error) {
		outcome(launched{err: err})
		s.retire(e)
		e.readyErr = err
		close(e.ready)
	}
	ln, err := bindListener(rundir.SocketPath(s.dir, e.key))
	if err != nil {
		fail(err)
		return
	}
	s.mu.Lock()
	e.ln = ln
	s.mu.Unlock()
	in, err := s.startInstance(e, spec, func(in *instance) { s.mu.Lock(); e.cur = in; s.mu.Unlock() })
	if in == nil {
		fail(err)
		return
	}
	outcome(launched{id: in.inst.ID()})
	if err := s.awaitServing(in); err != nil {
		// The exit goroutine leaves a starting entry to us.
		s.stopInstance(in, "not ready: "+err.Error())
		s.retire(e)
		e.readyErr = err
		close(e.ready)
		return
	}
	s.mu.Lock()
	if e.state == stateStarting {
		e.state = stateRunning
	}
	s.mu.Unlock()
	close(e.ready)
}

// startInstance launches one instance of e with spec and a fresh token, and
// watches its exit. placed is called, before the backend starts it, to put
// the new instance where the entry expects it (cur, or next for an
// upgrade). in is nil when nothing was launched.
func (s *Session) startInstance(e *cellEntry, spec cellspec.Spec, placed func(*instance)) (in *instance, err error) {
	token, err := newToken()
	if err != nil {
		return nil, err
	}
	in = &instance{token: token, took: make(chan struct{})}
	spec.Env = []string{
		"CELL_NAME=" + e.name,
		"CELL_SESSION=" + s.id,
		"CELL_RUNTIME_DIR=" + s.dir,
		"CELL_UMBILICAL=" + filepath.Join(s.dir, rundir.UmbilicalName),
		"CELL_TOKEN=" + token,
	}
	s.mu.Lock()
	s.tokens[token] = e.key
	s.mu.Unlock()
	placed(in)
	// Only an entry that a spawn reserved after awaitWiring has instances,
	// so the wiring is loaded here.
	inst, err := s.wiring.Launchers[spec.Backend].Launch(s.life, spec)
	if err != nil {
		s.mu.Lock()
		delete(s.tokens, token)
		s.mu.Unlock()
		return nil, err
	}
	s.mu.Lock()
	in.inst = inst
	s.writeRecordLocked()
	s.mu.Unlock()
	s.cfg.Log.Info("cell launched", zap.String("cell", e.key), zap.String("backend", string(spec.Backend)), zap.String("id", inst.ID()))

	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		<-inst.Done()
		s.instanceExited(e, in)
	}()
	return in, nil
}

// awaitServing waits, without polling, until the instance has taken its
// listener, exits, runs out of ReadyTimeout or the session ends.
func (s *Session) awaitServing(in *instance) error {
	deadline := time.NewTimer(s.cfg.ReadyTimeout)
	defer deadline.Stop()
	select {
	case <-in.took:
		return nil
	case <-in.inst.Done():
		return fmt.Errorf("cell exited before it took its listener (%s)", in.inst.ExitStatus())
	case <-deadline.C:
		return fmt.Errorf("cell did not take its listener within %s", s.cfg.ReadyTimeout)
	case <-s.life.Done():
		return errors.New("the session is ending")
	}
}

// stopInstance stops one instance with the grace period and waits for it.
func (s *Session) stopInstance(in *instance, why string) {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.StopGrace)
	defer cancel()
	if err := in.inst.Stop(ctx); err != nil {
		s.cfg.Log.Warn("stop cell instance", zap.String("id", in.inst.ID()), zap.String("why", why), zap.Error(err))
	}
}

// instanceExited cleans up after an instance that ended, however it ended:
// it audits the exit and, when it was the entry's serving instance, applies
// the restart policy or lets the cell go.
func (s *Session) instanceExited(e *cellEntry, in *instance) {
	s.mu.Lock()
	delete(s.tokens, in.token)
	s.endRightsLocked(in.token)
	serving := e.cur == in && e.state == stateRunning
	if e.next == in {
		e.next = nil
	}
	for i, o := range e.old {
		if o == in {
			e.old = append(e.old[:i], e.old[i+1:]...)
			break
		}
	}
	s.writeRecordLocked()
	s.mu.Unlock()
	s.cfg.Audit.Record(audit.Event{Kind: audit.KindExit, Session: s.id, Cell: e.name, Key: e.key, Allow: true,
		Backend: string(e.backend), ID: in.inst.ID(), ExitStatus: in.inst.ExitStatus()})
	s.cfg.Log.Info("cell exited", zap.String("cell", e.key), zap.String("id", in.inst.ID()), zap.String("status", in.inst.ExitStatus()))
	if !serving {
		// A drained or failed new instance, a first launch (launch settles
		// it) or a stop in progress (stopEntry retires the entry).
		return
	}
	if s.restartAfter(e, in.inst.ExitStatus()) {
		return
	}
	s.retire(e)
}

// retire removes the entry from the table, closes its listener and removes
// its socket file, so that the key can be spawned afresh. Safe to call
// twice.
func (s *Session) retire(e *cellEntry) {
	s.mu.Lock()
	if s.cells[e.key] == e {
		delete(s.cells, e.key)
	}
	for _, in := range append([]*instance{e.cur, e.next}, e.old...) {
		if in != nil {
			delete(s.tokens, in.token)
			s.endRightsLocked(in.token)
		}
	}
	ln := e.ln
	e.ln = nil
	s.writeRecordLocked()
	s.mu.Unlock()
	if ln != nil {
		if err := ln.close(); err != nil {
			s.cfg.Log.Warn("retire cell", zap.String("cell", e.key), zap.Error(err))
		}
	}
	e.goneOnce.Do(func() { close(e.gone) })
}

// stop handles a stop request: the owner may stop any cell, a cell only those
// it spawned.
func (s *Session) stop(who peer, req wire.Request) wire.Reply {
	if _, _, err := cellspec.SplitKey(req.Name); err != nil {
		return errorReply(req.ID, wire.CodeBadName, "", err.Error())
	}
	s.mu.Lock()
	e := s.cells[req.Name]
	permitted := e != nil && (who.role == wire.RoleOwner || e.parent == who.key)
	if permitted {
		// Decided: from here a spawn of this key waits for the next instance.
		e.state = stateStopping
	}
	s.mu.Unlock()
	if e == nil {
		return errorReply(req.ID, wire.CodeNotFound, "", fmt.Sprintf("no cell %q runs in this session", req.Name))
	}
	if !permitted {
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

// stopEntry stops every instance of one cell with the grace period, waits
// for them and retires the entry.
func (s *Session) stopEntry(e *cellEntry, why string) {
	<-e.ready
	s.mu.Lock()
	if s.cells[e.key] != e {
		s.mu.Unlock()
		<-e.gone
		return
	}
	e.state = stateStopping
	ins := e.instancesLocked()
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, in := range ins {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.stopInstance(in, why)
		}()
	}
	wg.Wait()
	// Stop returns once each process is gone; the entry goes with them, so
	// that whoever asked sees the session without it.
	s.retire(e)
}

func (s *Session) list() []wire.CellInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	infos := make([]wire.CellInfo, 0, len(s.cells))
	for _, e := range s.cells {
		info := wire.CellInfo{Key: e.key, Name: e.name, Parent: e.parent, Depth: e.depth,
			Backend: string(e.backend), State: e.state, Started: e.started}
		if e.cur != nil && e.cur.inst != nil {
			info.ID = e.cur.inst.ID()
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
		for _, in := range e.instancesLocked() {
			if pid, err := strconv.Atoi(in.inst.ID()); err == nil {
				if start, err := processStartTime(pid); err == nil {
					buf = fmt.Appendf(buf, "%d %d %s\n", pid, start, e.key)
				}
			}
		}
	}
	path, tmp := rundir.RecordPath(s.cfg.Base, s.id), rundir.RecordTempPath(s.cfg.Base, s.id)
	err := os.WriteFile(tmp, buf, 0o600)
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		s.cfg.Log.Warn("write session record", zap.Error(err))
	}
}
