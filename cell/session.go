package cell

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"github.com/cellproject/cell/internal/cellspec"
	"github.com/cellproject/cell/internal/rundir"
	"github.com/cellproject/cell/wire"
)

// The environment contract between cellroot and the processes of a session.
const (
	EnvName       = "CELL_NAME"
	EnvSession    = "CELL_SESSION"
	EnvRuntimeDir = "CELL_RUNTIME_DIR"
	EnvUmbilical  = "CELL_UMBILICAL"
	EnvToken      = "CELL_TOKEN"
)

// Session is this process's membership in a cell session: the owner's (from
// Start) or a cell's or owner child's (from Join). Its methods are safe for
// concurrent use.
type Session struct {
	id        string
	dir       string // the session dir as this process sees it
	rootDir   string // the session dir as the root reported it
	umbilical string // path of the session's umbilical socket
	token     string
	role      wire.Role
	self      string // this cell's key; empty for the owner
	log       *slog.Logger

	mu     sync.Mutex   // guards client and closed
	client *wire.Client // request connection; nil until needed or after it broke
	closed bool

	owner *ownerProc // set for sessions made by Start

	closeOnce sync.Once
	closeErr  error
}

// ID is the session id.
func (s *Session) ID() string { return s.id }

// Dir is the session dir, holding the cells' sockets and locks.
func (s *Session) Dir() string { return s.dir }

// Self is this cell's instance key, as the root knows it; empty for the owner.
func (s *Session) Self() string { return s.self }

// Env returns the environment (KEY=value) that lets a child process of the
// owner Join this session as the owner: everything but CELL_NAME. Hand it
// only to processes trusted with the whole session.
func (s *Session) Env() []string {
	return []string{
		EnvSession + "=" + s.id,
		EnvRuntimeDir + "=" + s.dir,
		EnvUmbilical + "=" + s.umbilical,
		EnvToken + "=" + s.token,
	}
}

// JoinOptions configures Join; the zero value is ready to use.
type JoinOptions struct {
	// Logger receives debug logs; nil means none.
	Logger *slog.Logger
	// Getenv reads the environment; nil means os.Getenv. Tests set it.
	Getenv func(string) string
}

// Join joins the session this process was started into, from the
// environment contract. With CELL_NAME set it says hello as that cell, else as
// the owner (a child given Session.Env). Missing variables give an error
// wrapping ErrNotInSession that names them.
func Join(ctx context.Context) (*Session, error) {
	return JoinWith(ctx, JoinOptions{})
}

// JoinWith is Join with options.
func JoinWith(ctx context.Context, opts JoinOptions) (*Session, error) {
	getenv := opts.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	vals := map[string]string{}
	var missing []string
	for _, k := range []string{EnvSession, EnvRuntimeDir, EnvUmbilical, EnvToken} {
		vals[k] = getenv(k)
		if vals[k] == "" {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("join session: %w: %s unset", ErrNotInSession, strings.Join(missing, ", "))
	}
	s := &Session{
		id:        vals[EnvSession],
		dir:       vals[EnvRuntimeDir],
		umbilical: vals[EnvUmbilical],
		token:     vals[EnvToken],
		role:      wire.RoleOwner,
		log:       orNop(opts.Logger),
	}
	if getenv(EnvName) != "" {
		s.role = wire.RoleCell
	}
	c, rep, err := s.dial(ctx)
	if err != nil {
		return nil, fmt.Errorf("join session %s: %w", s.id, err)
	}
	if rep.Session != "" && rep.Session != s.id {
		c.Close()
		return nil, fmt.Errorf("join session %s: the root says session %q", s.id, rep.Session)
	}
	s.rootDir = rep.RuntimeDir
	s.self = rep.Self
	s.client = c
	return s, nil
}

// dial opens a connection to the session's umbilical socket and says hello.
func (s *Session) dial(ctx context.Context) (*wire.Client, wire.Reply, error) {
	c, err := wire.Dial(ctx, s.umbilical)
	if err != nil {
		return nil, wire.Reply{}, err
	}
	rep, err := c.Hello(ctx, s.role, s.token)
	if err != nil {
		c.Close()
		return nil, wire.Reply{}, fmt.Errorf("hello as %s: %w", s.role, err)
	}
	return c, rep, nil
}

// request runs fn on the request connection, dialling it when needed. A
// connection that broke (or that the root closes after this error reply) is
// dropped so that the next request dials afresh: one call abandoned through
// its ctx must not cut the whole session off from its root.
func (s *Session) request(ctx context.Context, fn func(*wire.Client) error) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return fmt.Errorf("session %s: %w", s.id, ErrClosed)
	}
	c := s.client
	s.mu.Unlock()
	if c == nil {
		nc, _, err := s.dial(ctx)
		if err != nil {
			return err
		}
		s.mu.Lock()
		switch {
		case s.closed:
			s.mu.Unlock()
			nc.Close()
			return fmt.Errorf("session %s: %w", s.id, ErrClosed)
		case s.client != nil: // another goroutine won the race
			c = s.client
			nc.Close()
		default:
			s.client = nc
			c = nc
		}
		s.mu.Unlock()
	}
	err := fn(c)
	if err != nil && !keepsConnection(err) {
		s.mu.Lock()
		if s.client == c {
			s.client = nil
		}
		s.mu.Unlock()
		c.Close()
	}
	return err
}

// keepsConnection reports whether the root keeps a connection open after err
// (docs/umbilical.md, "Error codes").
func keepsConnection(err error) bool {
	var e *wire.Error
	if !errors.As(err, &e) {
		return false
	}
	switch e.Code {
	case wire.CodeBadVersion, wire.CodeHelloRequired, wire.CodeUnknownToken, wire.CodeShuttingDown:
		return false
	}
	return true
}

// Spawn asks the root for the cell name and returns the path of its socket
// once it accepts connections. A refusal is a *wire.Error (see wire.IsCode
// with wire.CodeDenied).
func (s *Session) Spawn(ctx context.Context, name string) (string, error) {
	var rep wire.Reply
	err := s.request(ctx, func(c *wire.Client) error {
		var err error
		rep, err = c.Spawn(ctx, name, "")
		return err
	})
	if err != nil {
		return "", fmt.Errorf("spawn %s: %w", name, err)
	}
	if rep.Socket == "" {
		key := rep.Key
		if key == "" {
			key = name
		}
		return rundir.SocketPath(s.dir, key), nil
	}
	return s.localPath(rep.Socket), nil
}

// localPath maps a path inside the session dir as the root sees it to the
// same file as this process sees it: a sandbox may mount the session dir
// elsewhere than the root's path.
func (s *Session) localPath(p string) string {
	if s.rootDir != "" && s.rootDir != s.dir && filepath.Dir(p) == filepath.Clean(s.rootDir) {
		return filepath.Join(s.dir, filepath.Base(p))
	}
	return p
}

// List returns the session's cells.
func (s *Session) List(ctx context.Context) ([]wire.CellInfo, error) {
	var cells []wire.CellInfo
	err := s.request(ctx, func(c *wire.Client) error {
		var err error
		cells, err = c.List(ctx)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list cells: %w", err)
	}
	return cells, nil
}

// Stop asks the root to stop the cell instance key; only the owner and the
// cell that spawned it may.
func (s *Session) Stop(ctx context.Context, key string) error {
	err := s.request(ctx, func(c *wire.Client) error { return c.Stop(ctx, key) })
	if err != nil {
		return fmt.Errorf("stop %s: %w", key, err)
	}
	return nil
}

// Connect connects to the running cell key ("name" or "name@instance") of
// the session. When none listens the error wraps ErrNotRunning. After the
// cell drains (GOAWAY), new calls redial the same socket.
func (s *Session) Connect(ctx context.Context, key string, opts ...DialOption) (*Conn, error) {
	if err := checkKey(key); err != nil {
		return nil, fmt.Errorf("connect %s: %w", key, err)
	}
	path := rundir.SocketPath(s.dir, key)
	return newRedialConn(ctx, key, func(ctx context.Context) (net.Conn, error) { return dialSocket(ctx, key, path) }, newDialConfig(opts))
}

// Connect is s.Connect(ctx, name, opts...).
func Connect(ctx context.Context, s *Session, name string, opts ...DialOption) (*Conn, error) {
	return s.Connect(ctx, name, opts...)
}

// Grow connects to the cell name, asking the root to spawn it first when it is
// not running. Many processes growing the same cell at once get one instance:
// the root starts it once and the cell's lock guards the rest. A denial is an
// error for which [IsDenied] is true. After the cell drains (GOAWAY), new
// calls grow it again the same way, so that an upgrade or a restart fails
// no call.
func (s *Session) Grow(ctx context.Context, name string, opts ...DialOption) (*Conn, error) {
	if err := cellspec.CheckName(name); err != nil {
		return nil, fmt.Errorf("grow %s: %w", name, err)
	}
	return newRedialConn(ctx, name, func(ctx context.Context) (net.Conn, error) { return s.growSocket(ctx, name) }, newDialConfig(opts))
}

// growSocket connects to the cell name's socket, spawning it when needed.
func (s *Session) growSocket(ctx context.Context, name string) (net.Conn, error) {
	nc, err := dialSocket(ctx, name, rundir.SocketPath(s.dir, name))
	if err == nil || !errors.Is(err, ErrNotRunning) {
		return nc, err
	}
	// Two rounds: the cell may exit (idle) between the root's ready reply
	// and our connect, and then a second spawn brings it back.
	for range 2 {
		sock, err := s.Spawn(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("grow %s: %w", name, err)
		}
		nc, err = dialSocket(ctx, name, sock)
		if err == nil || !errors.Is(err, ErrNotRunning) {
			return nc, err
		}
		s.log.Debug("cell gone right after spawn; asking again", "cell", name, "err", err)
	}
	return nil, fmt.Errorf("grow %s: %w", name, err)
}

func dialSocket(ctx context.Context, key, path string) (net.Conn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("connect %s: %w (%w)", key, ErrNotRunning, err)
		}
		return nil, fmt.Errorf("connect %s: %w", key, err)
	}
	return nc, nil
}

// checkKey accepts "name" and "name@instance" with both parts valid names,
// so that a key is always a plain file name in the session dir.
func checkKey(key string) error {
	name, inst, found := strings.Cut(key, "@")
	if err := cellspec.CheckName(name); err != nil {
		return err
	}
	if found {
		return cellspec.CheckName(inst)
	}
	return nil
}

// Close leaves the session. For the owner (Start) this ends it: the root
// tears down every cell, and Close waits for the root to exit (killing it
// after OwnerOptions.StopTimeout). It is safe to call more than once and
// returns the same result each time.
func (s *Session) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		c := s.client
		s.client = nil
		s.mu.Unlock()
		if c != nil {
			c.Close()
		}
		if s.owner != nil {
			s.closeErr = s.owner.stop(s.log)
		}
	})
	return s.closeErr
}

func orNop(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}
