package cell

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/cellproject/cell/wire"
)

// Handler answers one request. It runs in its own goroutine; ctx ends when
// the cell shuts down and stops waiting for it. A returned error is sent to
// the caller as a *RemoteError (a *RemoteError's code is kept).
type Handler interface {
	Handle(ctx context.Context, method string, body []byte) ([]byte, error)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, method string, body []byte) ([]byte, error)

// Handle calls f.
func (f HandlerFunc) Handle(ctx context.Context, method string, body []byte) ([]byte, error) {
	return f(ctx, method, body)
}

// DefaultShutdownTimeout bounds how long Serve waits for running handlers
// when it stops.
const DefaultShutdownTimeout = 5 * time.Second

// maxInFlight bounds the requests one connection may have running; past it
// Serve stops reading that connection until one finishes (backpressure
// rather than unbounded goroutines).
const maxInFlight = 256

// maxErrorMessage bounds an error reply's message so that it always fits a frame.
const maxErrorMessage = 4 << 10

// ServeOptions configures Serve; the zero value is ready to use.
type ServeOptions struct {
	// Session to serve in; nil means Join the one in the environment (and
	// Close it on return).
	Session *Session
	// IdleTimeout ends Serve after this long with no open connection and no
	// request running; 0 means never.
	IdleTimeout time.Duration
	// ShutdownTimeout bounds the wait for running handlers on return;
	// 0 means DefaultShutdownTimeout. Handlers' ctx is cancelled when it passes.
	ShutdownTimeout time.Duration
	// Logger receives the cell's serving logs; nil means none.
	Logger *zap.Logger
}

// Serve runs this cell: it takes the listening socket the root bound for it
// (docs/listener.md), or, when the root holds none for it, takes the cell's
// single-instance lock (an error wrapping ErrAlreadyRunning when another
// process holds it) and binds the socket in the session dir itself, and
// answers requests with h until ctx ends, the umbilical to the root closes,
// or the cell has been idle for IdleTimeout. Those three end it with nil;
// anything else that stops it is an error. On return a socket and lock it
// made itself are gone and the lock released.
func Serve(ctx context.Context, h Handler, opts ServeOptions) error {
	log := orNop(opts.Logger)
	s := opts.Session
	if s == nil {
		var err error
		s, err = JoinWith(ctx, JoinOptions{Logger: log})
		if err != nil {
			return fmt.Errorf("serve: %w", err)
		}
		defer s.Close()
	}
	key := s.Self()
	if key == "" {
		return fmt.Errorf("serve: %w: the root knows this process as the owner, not as a cell", ErrNotInSession)
	}
	if err := checkKey(key); err != nil {
		return fmt.Errorf("serve %s: %w", key, err)
	}
	log = log.With(zap.String("cell", key))

	// Taking the listener first answers the spawn soonest; connections
	// queue in the socket's backlog meanwhile. Should the root die before
	// the watch below starts, its dial fails and Serve ends.
	ln, release, err := listen(ctx, s, key, log)
	if err != nil {
		return fmt.Errorf("serve %s: %w", key, err)
	}
	defer release()
	gone, stopWatch, err := watchUmbilical(ctx, s)
	if err != nil {
		ln.Close()
		return fmt.Errorf("serve %s: watch umbilical: %w", key, err)
	}
	defer stopWatch()

	srv := newServer(h, log)
	acceptErr := make(chan error, 1)
	go func() { acceptErr <- srv.acceptLoop(ln) }()

	why, serveErr := srv.wait(ctx, gone, acceptErr, opts.IdleTimeout)
	ln.Close()
	if why == "" { // the accept loop failed; it has returned
		log.Error("serve stopped", zap.Error(serveErr))
	} else {
		<-acceptErr
		log.Info("serve stopping", zap.String("why", why))
	}
	timeout := opts.ShutdownTimeout
	if timeout <= 0 {
		timeout = DefaultShutdownTimeout
	}
	srv.shutdown(timeout)
	if serveErr != nil {
		return fmt.Errorf("serve %s: %w", key, serveErr)
	}
	return nil
}

// watchUmbilical opens a second umbilical connection, says hello and reads
// it: the root never sends unsolicited frames, so any read result means the
// root is gone. gone is closed then; stop closes the connection and waits.
func watchUmbilical(ctx context.Context, s *Session) (gone <-chan struct{}, stop func(), err error) {
	c, _, err := s.dial(ctx)
	if err != nil {
		return nil, nil, err
	}
	ch := make(chan struct{})
	go func() {
		defer close(ch)
		var b [1]byte
		c.Conn().Read(b[:]) // any result: EOF, error, or a frame we never asked for
	}()
	return ch, func() { c.Close(); <-ch }, nil
}

// server answers requests on accepted connections.
type server struct {
	h   Handler
	log *zap.Logger

	hctx    context.Context // handlers' ctx; cancelled when shutdown gives up waiting
	hcancel context.CancelFunc
	work    sync.WaitGroup // running handlers

	stopping chan struct{} // closed when shutdown begins

	mu        sync.Mutex // guards conns, busy, idleSince
	conns     map[*serverConn]struct{}
	busy      int       // open connections plus running requests
	idleSince time.Time // when busy last fell to 0
}

func newServer(h Handler, log *zap.Logger) *server {
	hctx, cancel := context.WithCancel(context.Background())
	return &server{h: h, log: log, hctx: hctx, hcancel: cancel, stopping: make(chan struct{}), conns: map[*serverConn]struct{}{}, idleSince: time.Now()}
}

func (srv *server) enter() {
	srv.mu.Lock()
	srv.busy++
	srv.mu.Unlock()
}

func (srv *server) leave() {
	srv.mu.Lock()
	srv.busy--
	if srv.busy == 0 {
		srv.idleSince = time.Now()
	}
	srv.mu.Unlock()
}

// idleFor says how long the server has been idle, and whether it is.
func (srv *server) idleFor(now time.Time) (time.Duration, bool) {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if srv.busy > 0 {
		return 0, false
	}
	return now.Sub(srv.idleSince), true
}

// wait blocks until a reason to stop; why is empty when the accept loop
// failed, and err is set then.
func (srv *server) wait(ctx context.Context, gone <-chan struct{}, acceptErr <-chan error, idle time.Duration) (why string, err error) {
	var idleC <-chan time.Time
	var timer *time.Timer
	if idle > 0 {
		timer = time.NewTimer(idle)
		defer timer.Stop()
		idleC = timer.C
	}
	for {
		select {
		case <-ctx.Done():
			return "context ended", nil
		case <-gone:
			return "umbilical closed", nil
		case err := <-acceptErr:
			return "", err
		case now := <-idleC:
			d, ok := srv.idleFor(now)
			switch {
			case ok && d >= idle:
				return "idle", nil
			case ok:
				timer.Reset(idle - d)
			default:
				timer.Reset(idle)
			}
		}
	}
}

func (srv *server) acceptLoop(ln *net.UnixListener) error {
	for {
		nc, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("accept: %w", err)
		}
		sc := &serverConn{srv: srv, nc: nc, done: make(chan struct{})}
		srv.mu.Lock()
		srv.conns[sc] = struct{}{}
		srv.busy++
		srv.mu.Unlock()
		go sc.serve()
	}
}

// shutdown stops reading requests, waits up to timeout for running handlers
// (their replies still go out), then cancels the rest and closes every
// connection.
func (srv *server) shutdown(timeout time.Duration) {
	srv.mu.Lock()
	conns := make([]*serverConn, 0, len(srv.conns))
	for sc := range srv.conns {
		conns = append(conns, sc)
	}
	srv.mu.Unlock()
	close(srv.stopping)
	for _, sc := range conns {
		sc.nc.SetReadDeadline(time.Unix(1, 0)) // wakes the reader; writes go on
	}
	finished := make(chan struct{})
	go func() { srv.work.Wait(); close(finished) }()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-finished:
	case <-timer.C:
		srv.log.Warn("handlers still running at shutdown; cancelling them", zap.Duration("waited", timeout))
		srv.hcancel()
	}
	srv.hcancel()
	for _, sc := range conns {
		sc.nc.Close()
		<-sc.done // prompt: the read deadline has woken every reader
	}
	// Handlers that ignore their ctx are left behind, but their replies can
	// no longer be written: the connections are closed.
}

// serverConn is one accepted connection.
type serverConn struct {
	srv  *server
	nc   net.Conn
	wmu  sync.Mutex    // serialises reply writes
	done chan struct{} // closed when serve has returned
}

func (sc *serverConn) serve() {
	defer close(sc.done)
	defer func() {
		sc.srv.mu.Lock()
		delete(sc.srv.conns, sc)
		sc.srv.mu.Unlock()
		sc.srv.leave()
	}()
	slots := make(chan struct{}, maxInFlight)
	for {
		payload, err := wire.ReadFrame(sc.nc, wire.MaxFrame)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				// shutdown stopped the reading; it closes the connection
				// once the running handlers have replied.
				return
			}
			// A clean EOF is the normal end, and also what the root's
			// readiness probe (connect, close) looks like: stay quiet.
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				sc.srv.log.Debug("connection ended", zap.Error(err))
			}
			sc.nc.Close()
			return
		}
		req, err := decodeRequest(payload)
		if err != nil {
			// Which call this was is unknown, so no reply can name it.
			sc.srv.log.Warn("closing connection after a malformed request", zap.Error(err))
			sc.nc.Close()
			return
		}
		select {
		case slots <- struct{}{}:
		case <-sc.srv.stopping:
			return // shutdown closes the connection
		}
		sc.srv.enter()
		sc.srv.work.Add(1)
		go func() {
			defer func() {
				<-slots
				sc.srv.work.Done()
				sc.srv.leave()
			}()
			sc.handle(req)
		}()
	}
}

func (sc *serverConn) handle(req message) {
	body, err := sc.srv.h.Handle(sc.srv.hctx, req.Method, req.Body)
	rep := message{ID: req.ID, Body: body}
	if err == nil && len(body) > MaxBody {
		err = fmt.Errorf("%w: reply of %d bytes, the limit is %d", ErrTooLarge, len(body), MaxBody)
	}
	if err != nil {
		rep = message{ID: req.ID, Error: toMessageError(err)}
	}
	payload, err := encodeMessage(rep)
	if err != nil {
		sc.srv.log.Error("encode reply", zap.String("method", req.Method), zap.Error(err))
		return
	}
	sc.wmu.Lock()
	err = wire.WriteFrame(sc.nc, payload)
	sc.wmu.Unlock()
	if err != nil {
		sc.srv.log.Debug("write reply", zap.String("method", req.Method), zap.Error(err))
	}
}

func toMessageError(err error) *messageError {
	me := &messageError{Message: err.Error()}
	var re *RemoteError
	if errors.As(err, &re) {
		me = &messageError{Code: re.Code, Message: re.Message}
	}
	if len(me.Message) > maxErrorMessage {
		me.Message = me.Message[:maxErrorMessage]
	}
	if len(me.Code) > maxMethod {
		me.Code = me.Code[:maxMethod]
	}
	return me
}
