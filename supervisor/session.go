package supervisor

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/cellproject/cell/allowlist"
	"github.com/cellproject/cell/internal/audit"
	"github.com/cellproject/cell/internal/cellspec"
	"github.com/cellproject/cell/internal/rundir"
	"github.com/cellproject/cell/policy"
)

// Launcher launches cells on one backend (bubblewrap, process, ...).
type Launcher interface {
	Launch(ctx context.Context, spec cellspec.Spec) (Launched, error)
}

// Launched is one launched cell, as its backend runs it.
type Launched interface {
	// ID is the pid, container id or unit name, for ps and the audit.
	ID() string
	// Done is closed once the cell has exited and its resources are released.
	Done() <-chan struct{}
	// ExitStatus says how the cell ended; only meaningful after Done.
	ExitStatus() string
	// Stop asks the cell to end and forces it when ctx ends; it returns once
	// the cell is gone and is safe to call repeatedly and concurrently.
	Stop(ctx context.Context) error
}

// SessionEnder is implemented by backends that hold resources for a whole
// session (a systemd slice, a Podman service). The supervisor calls
// EndSession once at teardown, after every cell has stopped, so that
// whatever a cell left in them goes too.
type SessionEnder interface {
	EndSession(ctx context.Context, session string) error
}

// Wiring is what a session decides and launches spawns with: the allowlist
// and the backends.
type Wiring struct {
	// Allowlist is the loaded allowlist; when nil, AllowlistErr says why and
	// every spawn is denied.
	Allowlist    *allowlist.File
	AllowlistErr error
	// Launchers launch cells, by backend; Capabilities says what each
	// backend can do here. A backend missing from Launchers is never
	// chosen.
	Launchers    map[cellspec.Backend]Launcher
	Capabilities map[cellspec.Backend]policy.Capability
	// Vet, when set, checks an allowed launch before it starts (a pinned
	// hash, a signature); an error denies the spawn with policy.Unverified.
	// It may do I/O and is called without any session lock held.
	Vet func(ctx context.Context, spec cellspec.Spec) error
}

// Config is what a session needs from its wiring.
type Config struct {
	// Base is the user's runtime dir (rundir.Base).
	Base string
	// Wire loads the session's Wiring (required). Serve calls it once, in
	// the background with Serve's ctx, as soon as the owner's hello is
	// answered (or the session ends first): the owner's hello waits for
	// neither the allowlist nor the backends, nor shares the CPU with
	// their loading. A spawn or an upgrade waits until Wire has returned
	// (or the session ends), and teardown waits for it too, so what Wire
	// opened can be closed once Serve returns.
	Wire func(ctx context.Context) Wiring
	// Audit receives every decision; Log the root's own diagnostics.
	Audit audit.Sink
	Log   *zap.Logger
	// CellOutput receives the cells' stdout and stderr, each line prefixed
	// with the cell's key; nil discards them.
	CellOutput io.Writer
	// ReadyTimeout bounds how long a spawn waits for the cell's socket
	// (default 10 s); StopGrace how long a stopped cell has between SIGTERM
	// and SIGKILL (default 3 s).
	ReadyTimeout time.Duration
	StopGrace    time.Duration
}

// Session is one live session: its dir, its umbilical listener and its cells.
type Session struct {
	cfg        Config
	id         string
	dir        string
	ownerToken string
	rootLock   *os.File
	listener   *net.UnixListener
	out        *lineWriter

	// life is cancelled when teardown starts; every goroutine of the session
	// watches it.
	life   context.Context
	endNow context.CancelFunc
	wg     sync.WaitGroup

	// wiring is written once, by the goroutine running Config.Wire, before
	// wired is closed; read it only after wired (awaitWiring). That
	// goroutine calls Wire once ownerAnswered is closed: the owner's hello
	// was answered or refused.
	wiring        Wiring
	wired         chan struct{}
	ownerAnswered chan struct{}

	// mu guards cells, tokens, conns, budgets, closing, failures and
	// failed. It is never held while waiting on a cell or the network.
	mu      sync.Mutex
	cells   map[string]*cellEntry
	tokens  map[string]string // cell instance token -> key
	conns   map[*umbConn]struct{}
	budgets map[string]*budget // cell token -> its rate and audit budget
	closing bool
	// maxConns bounds conns (limits.go); fixed at New.
	maxConns int
	// failures lists the cells that failed past their restart limit;
	// failed is closed (and replaced) at each.
	failures []string
	failed   chan struct{}
}

// New creates the session dir, takes the session's root lock and listens on
// its umbilical socket. The caller must call Serve, which owns the teardown.
func New(cfg Config) (*Session, error) {
	if cfg.Wire == nil {
		return nil, errors.New("supervisor: Config.Wire is required")
	}
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	if cfg.ReadyTimeout == 0 {
		cfg.ReadyTimeout = 10 * time.Second
	}
	if cfg.StopGrace == 0 {
		cfg.StopGrace = 3 * time.Second
	}
	id, dir, rootLock, err := rundir.NewSession(cfg.Base)
	if err != nil {
		return nil, err
	}
	s := &Session{
		cfg:    cfg,
		id:     id,
		dir:    dir,
		cells:  map[string]*cellEntry{},
		tokens: map[string]string{},
		conns:  map[*umbConn]struct{}{},
		failed: make(chan struct{}),
		wired:  make(chan struct{}),

		ownerAnswered: make(chan struct{}),

		rootLock: rootLock,

		budgets:  map[string]*budget{},
		maxConns: maxTotalConns(),
	}
	fail := func(err error) (*Session, error) {
		s.removeFiles()
		return nil, err
	}
	if s.ownerToken, err = newToken(); err != nil {
		return fail(err)
	}
	addr := &net.UnixAddr{Name: filepath.Join(dir, rundir.UmbilicalName), Net: "unix"}
	if s.listener, err = net.ListenUnix("unix", addr); err != nil {
		return fail(fmt.Errorf("listen on umbilical: %w", err))
	}
	s.listener.SetUnlinkOnClose(false)
	s.out = newLineWriter(cfg.CellOutput)
	s.life, s.endNow = context.WithCancel(context.Background())
	return s, nil
}

// ID is the session id.
func (s *Session) ID() string { return s.id }

// Dir is the session dir.
func (s *Session) Dir() string { return s.dir }

// Serve runs the session until the owner's connection ends or ctx is
// cancelled (a signal), then tears everything down and returns. The owner
// connection belongs to Serve from here on.
func (s *Session) Serve(ctx context.Context, owner net.Conn) error {
	ownerGone := make(chan struct{})
	s.wg.Add(4)
	go func() {
		defer s.wg.Done()
		defer close(s.wired)
		select {
		case <-s.ownerAnswered:
		case <-s.life.Done():
		}
		// Recorded before any spawn can be decided (spawns wait for the
		// wiring), and before the session's end (teardown waits for this).
		s.cfg.Audit.Record(audit.Event{Kind: audit.KindSessionStart, Session: s.id, Allow: true, Reason: "root started"})
		s.cfg.Log.Info("session started", zap.String("session", s.id), zap.String("dir", s.dir))
		s.wiring = s.cfg.Wire(ctx)
	}()
	go func() {
		defer s.wg.Done()
		defer close(ownerGone)
		s.serveConn(&umbConn{Conn: owner, accepted: time.Now()}, true)
	}()
	go func() {
		defer s.wg.Done()
		s.acceptLoop()
	}()
	go func() {
		defer s.wg.Done()
		s.auditFlusher()
	}()

	reason := "owner closed the umbilical"
	select {
	case <-ownerGone:
	case <-ctx.Done():
		reason = "signal"
	}
	s.teardown(reason)
	return nil
}

// teardown stops every cell, closes every connection and removes every file
// of the session. The session is unusable afterwards.
func (s *Session) teardown(reason string) {
	s.cfg.Log.Info("session ending", zap.String("session", s.id), zap.String("reason", reason))
	s.mu.Lock()
	s.closing = true
	conns := make([]*umbConn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	entries := make([]*cellEntry, 0, len(s.cells))
	for _, e := range s.cells {
		entries = append(entries, e)
	}
	s.mu.Unlock()
	s.listener.Close()
	// Ending life first answers every spawn in flight with shutting_down;
	// then every connection hears shutting_down and closes (cells see their
	// umbilical end and can exit on their own).
	s.endNow()
	var notices sync.WaitGroup
	for _, c := range conns {
		notices.Add(1)
		go func() {
			defer notices.Done()
			c.shutdown()
		}()
	}
	notices.Wait()

	var stops sync.WaitGroup
	for _, e := range entries {
		stops.Add(1)
		go func() {
			defer stops.Done()
			s.stopEntry(e, "session ending: "+reason)
		}()
	}
	stops.Wait()
	// Wire may still be loading: what it opens is ended below, and the
	// spawns that were waiting for it answer shutting_down meanwhile.
	<-s.wired
	// A stop in flight has answered now; nothing else may hold a connection.
	for _, c := range conns {
		c.Close()
	}
	s.endBackends()
	s.wg.Wait()
	s.removeFiles()
	s.cfg.Audit.Record(audit.Event{Kind: audit.KindSessionEnd, Session: s.id, Allow: true, Reason: reason})
	s.cfg.Log.Info("session ended", zap.String("session", s.id))
}

// awaitWiring returns the session's wiring once Config.Wire has returned;
// false when the session ends first.
func (s *Session) awaitWiring() (*Wiring, bool) {
	select {
	case <-s.wired:
		return &s.wiring, true
	case <-s.life.Done():
		return nil, false
	}
}

// endBackends lets every backend release what it holds for the session;
// call it once Wire has returned.
func (s *Session) endBackends() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*s.cfg.StopGrace)
	defer cancel()
	for name, b := range s.wiring.Launchers {
		if e, ok := b.(SessionEnder); ok {
			if err := e.EndSession(ctx, s.id); err != nil {
				s.cfg.Log.Warn("end session in backend", zap.String("backend", string(name)), zap.Error(err))
			}
		}
	}
}

// removeFiles deletes the session dir, the record and, last, the root lock,
// so that a collector never sees a half-removed session as live.
func (s *Session) removeFiles() {
	if err := rundir.RemoveAll(s.dir); err != nil {
		s.cfg.Log.Error("remove session dir", zap.Error(err))
	}
	os.Remove(rundir.RecordPath(s.cfg.Base, s.id))
	os.Remove(rundir.RecordTempPath(s.cfg.Base, s.id))
	if s.rootLock != nil {
		os.Remove(s.rootLock.Name())
		s.rootLock.Close()
	}
}

func newToken() (string, error) {
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", fmt.Errorf("token: %w", err)
	}
	return hex.EncodeToString(raw[:]), nil
}

// launcher is a backend whose Launch returns its own concrete instance type.
type launcher[I Launched] interface {
	Launch(ctx context.Context, spec cellspec.Spec) (I, error)
}

// Adapt turns a backend that returns a concrete instance type into a Launcher,
// so that backend packages need not import this one.
func Adapt[I Launched](l launcher[I]) Launcher { return adapted[I]{l} }

type adapted[I Launched] struct{ l launcher[I] }

// EndSession forwards to the adapted backend when it holds session resources.
func (a adapted[I]) EndSession(ctx context.Context, session string) error {
	if e, ok := any(a.l).(SessionEnder); ok {
		return e.EndSession(ctx, session)
	}
	return nil
}

func (a adapted[I]) Launch(ctx context.Context, spec cellspec.Spec) (Launched, error) {
	inst, err := a.l.Launch(ctx, spec)
	if err != nil {
		return nil, err
	}
	return inst, nil
}
