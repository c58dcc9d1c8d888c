package cell

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Handler answers one request. It starts on the goroutine that read the
// request, and a handler still running after about a millisecond (or one
// that returns a body over 32 KiB) lets another goroutine go on reading the
// connection, so handlers on one connection may run at once and in any
// order; with ServeOptions.MaxConcurrent 1 they run one after the other, in
// the order the requests arrived. ctx ends when the cell gives up waiting
// for it at shutdown. The body is the handler's to keep. A returned error is
// sent to the caller as a *RemoteError (a *RemoteError's code is kept).
type Handler interface {
	Handle(ctx context.Context, method string, body []byte) ([]byte, error)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, method string, body []byte) ([]byte, error)

// Handle calls f.
func (f HandlerFunc) Handle(ctx context.Context, method string, body []byte) ([]byte, error) {
	return f(ctx, method, body)
}

// StreamHandler is a Handler that also takes streamed requests
// ([Conn.CallStream]): body yields the request's bytes in order and ends
// with io.EOF, or with ErrTruncated when the caller went away mid-stream.
// A Handler without it answers streamed requests with CodeNoStreams.
type StreamHandler interface {
	Handler
	HandleStream(ctx context.Context, method string, body io.Reader) ([]byte, error)
}

// CodeNoStreams is the RemoteError code for a streamed request to a cell
// whose Handler is no StreamHandler.
const CodeNoStreams = "no_streams"

// CodeTooManyStreams is the RemoteError code for a streamed request that
// arrives while MaxConcurrent streamed requests already run.
const CodeTooManyStreams = "too_many_streams"

// DefaultShutdownTimeout bounds how long Serve drains when it stops.
const DefaultShutdownTimeout = 5 * time.Second

// DefaultMaxConcurrent bounds the handlers a cell runs at once.
const DefaultMaxConcurrent = 256

// prefaceTimeout bounds how long an accepted connection may take to send its
// preface.
const prefaceTimeout = 10 * time.Second

// ServeOptions configures Serve; the zero value is ready to use.
type ServeOptions struct {
	// Session to serve in; nil means Join the one in the environment (and
	// Close it on return).
	Session *Session
	// IdleTimeout ends Serve after this long with no open connection and no
	// request running; 0 means never.
	IdleTimeout time.Duration
	// ShutdownTimeout is the grace period of the drain when Serve stops:
	// how long it waits for calls in flight and for clients to leave after
	// GOAWAY; 0 means DefaultShutdownTimeout. Handlers' ctx is cancelled and
	// the connections closed when it passes.
	ShutdownTimeout time.Duration
	// MaxConcurrent bounds the handlers running at once, over all
	// connections; past it Serve stops reading requests until one finishes
	// (backpressure rather than unbounded goroutines). A reply being
	// written does not count: a client that reads no replies holds no
	// handler's place from the others (docs/synapse.md). 0 means
	// DefaultMaxConcurrent. 1 runs each handler on its connection's reading
	// goroutine, in order, never handing the reading to another goroutine:
	// a slow handler then holds up the calls behind it. Streamed
	// requests are bounded apart, by the same number: their handlers wait
	// for chunks only the connection's reader brings, so the reader cannot
	// wait for them; one past the bound is refused at once, with
	// CodeTooManyStreams.
	MaxConcurrent int
	// MaxBody bounds the bodies this cell accepts in one frame; 0 means
	// DefaultMaxBody, and bounds under 4096 bytes are raised to it.
	MaxBody int
	// Junction lets clients that ask ([WithJunction]) move their connection
	// to a gap junction; without it they stay on the socket.
	Junction bool
	// RecycleBodies hands each request body back for reuse ([Recycle])
	// once its handler has returned and the reply is written, which spares
	// a cell that takes large bodies most of their memory cost. Its
	// handlers must then not keep the body, or any slice of it, past their
	// return; replying with the body itself, or a slice of it, is fine.
	// With MaxConcurrent 1 as well, a body that arrives whole in the
	// connection's read buffer is not even copied: the handler reads it
	// where it arrived.
	RecycleBodies bool
	// Logger receives the cell's serving logs; nil means none.
	Logger *slog.Logger
}

func (o ServeOptions) withDefaults() ServeOptions {
	if o.ShutdownTimeout <= 0 {
		o.ShutdownTimeout = DefaultShutdownTimeout
	}
	if o.MaxConcurrent <= 0 {
		o.MaxConcurrent = DefaultMaxConcurrent
	}
	o.MaxBody = ownBound(o.MaxBody)
	o.Logger = orNop(o.Logger)
	return o
}

// Serve runs this cell: it takes the listening socket the root bound for it
// (docs/listener.md), or, when the root holds none for it, takes the cell's
// single-instance lock (an error wrapping ErrAlreadyRunning when another
// process holds it) and binds the socket in the session dir itself, and
// answers requests with h until ctx ends, the umbilical to the root closes,
// or the cell has been idle for IdleTimeout. Those three end it with nil
// after a drain (see [ServeListener]); anything else that stops it is an
// error. On return a socket and lock it made itself are gone and the lock
// released.
func Serve(ctx context.Context, h Handler, opts ServeOptions) error {
	opts = opts.withDefaults()
	log := opts.Logger
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
	log = log.With("cell", key)

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
		if ctx.Err() != nil {
			// Stopped while starting: the socket may already have taken
			// connections, which closing the listener ends, as a stop does.
			log.Info("serve stopping", "why", "context ended")
			return nil
		}
		return fmt.Errorf("serve %s: watch umbilical: %w", key, err)
	}
	defer stopWatch()
	opts.Logger = log
	if err := serveOn(ctx, ln, h, opts, gone); err != nil {
		return fmt.Errorf("serve %s: %w", key, err)
	}
	return nil
}

// ServeListener answers requests with h on connections accepted from ln,
// outside any session (for tests, benchmarks and transports of one's own),
// until ctx ends. Then it drains: it stops accepting (closing ln), sends
// GOAWAY on every connection, lets calls in flight finish and waits for the
// clients to leave, for at most opts.ShutdownTimeout. opts.Session and
// opts.IdleTimeout are ignored.
func ServeListener(ctx context.Context, ln net.Listener, h Handler, opts ServeOptions) error {
	opts = opts.withDefaults()
	opts.IdleTimeout = 0
	return serveOn(ctx, ln, h, opts, nil)
}

func serveOn(ctx context.Context, ln net.Listener, h Handler, opts ServeOptions, gone <-chan struct{}) error {
	log := opts.Logger
	srv := newServer(h, opts)
	go srv.watch.run()
	defer srv.watch.close()
	acceptErr := make(chan error, 1)
	go func() { acceptErr <- srv.acceptLoop(ln) }()

	why, serveErr := srv.wait(ctx, gone, acceptErr, opts.IdleTimeout)
	ln.Close()
	if why == "" { // the accept loop failed; it has returned
		log.Error("serve stopped", "err", serveErr)
	} else {
		<-acceptErr
		log.Info("serve stopping", "why", why)
	}
	srv.shutdown(opts.ShutdownTimeout)
	return serveErr
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
	h    Handler
	opts ServeOptions
	log  *slog.Logger

	hctx    context.Context // handlers' ctx; cancelled when the drain's grace ends
	hcancel context.CancelFunc
	work    sync.WaitGroup // tracked handlers
	slots   *slots         // one per running handler but a stream's
	streams atomic.Int64   // streams' handlers running

	hardStop chan struct{} // closed when the grace period is over
	watch    *handoffWatch

	mu        sync.Mutex // guards the fields below
	conns     map[*serverConn]struct{}
	draining  bool
	busy      int           // open connections plus tracked handlers
	idleSince time.Time     // when busy last fell to 0
	allGone   chan struct{} // closed (once draining) when conns is empty
}

func newServer(h Handler, opts ServeOptions) *server {
	hctx, cancel := context.WithCancel(context.Background())
	srv := &server{h: h, opts: opts, log: opts.Logger, hctx: hctx, hcancel: cancel,
		slots: newSlots(opts.MaxConcurrent), hardStop: make(chan struct{}),
		conns: map[*serverConn]struct{}{}, idleSince: time.Now(), allGone: make(chan struct{})}
	srv.watch = newHandoffWatch(srv)
	return srv
}

// track counts a handler that runs apart from its connection's reader (a
// stream's, or one the reading was handed away from) until untrack: the
// drain waits for it and the server is not idle meanwhile. A handler run
// by the reader needs neither: the connection is open while it runs.
func (srv *server) track() {
	srv.work.Add(1)
	srv.mu.Lock()
	srv.busy++
	srv.mu.Unlock()
}

func (srv *server) untrack() {
	srv.leave()
	srv.work.Done()
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

func (srv *server) acceptLoop(ln net.Listener) error {
	backoff := time.Duration(0)
	for {
		nc, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			// EMFILE and friends return at once, forever: back off.
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporaryAccept(err) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				srv.log.Warn("accept", "err", err, "retry_in", backoff)
				time.Sleep(backoff)
				continue
			}
			return fmt.Errorf("accept: %w", err)
		}
		backoff = 0
		sc := &serverConn{srv: srv, nc: nc, done: make(chan struct{}), streams: map[uint64]*streamBody{}}
		srv.mu.Lock()
		srv.conns[sc] = struct{}{}
		srv.busy++
		srv.mu.Unlock()
		go sc.serve()
	}
}

// shutdown drains: GOAWAY on every connection, then wait up to grace for the
// clients to leave and the running handlers to finish (their replies still
// go out); then cancel the rest and close every connection.
func (srv *server) shutdown(grace time.Duration) {
	srv.mu.Lock()
	srv.draining = true
	conns := make([]*serverConn, 0, len(srv.conns))
	for sc := range srv.conns {
		conns = append(conns, sc)
	}
	if len(srv.conns) == 0 {
		close(srv.allGone)
	}
	srv.mu.Unlock()
	for _, sc := range conns {
		sc.goAway()
	}
	finished := make(chan struct{})
	go func() { <-srv.allGone; srv.work.Wait(); close(finished) }()
	timer := time.NewTimer(grace)
	defer timer.Stop()
	select {
	case <-finished:
	case <-timer.C:
		srv.log.Warn("drain did not finish; cancelling handlers and closing connections", "waited", grace)
	}
	close(srv.hardStop)
	srv.hcancel()
	srv.mu.Lock()
	conns = conns[:0]
	for sc := range srv.conns {
		conns = append(conns, sc)
	}
	srv.mu.Unlock()
	for _, sc := range conns {
		sc.nc.Close()
		<-sc.done
	}
	// Handlers that ignore their ctx are left behind, but their replies can
	// no longer be written: the connections are closed.
}

// serverConn is one accepted connection.
type serverConn struct {
	srv  *server
	nc   net.Conn
	ch   *channel // set once the handshake is done
	done chan struct{}

	mu      sync.Mutex // guards ready and sentGoAway
	ready   bool
	sentGA  bool
	streams map[uint64]*streamBody // the current reader's only; nil: refused
	refused int                    // nil entries in streams

	// The hand-off of the reading (read, watchHandler).
	turn    atomic.Uint64 // the reader's turn and the handling bit
	handled atomic.Uint64 // handlers started in line
	seen    uint64        // handled at the watch's last look; the watch's own
	flushed uint64        // the handler flushHeld last ran for; the watch's own
}

// goAway sends GOAWAY once the handshake is done; a connection still in its
// handshake sends it itself when it completes (serve checks draining).
func (sc *serverConn) goAway() {
	sc.mu.Lock()
	if !sc.ready || sc.sentGA {
		sc.mu.Unlock()
		return
	}
	sc.sentGA = true
	sc.mu.Unlock()
	if err := sc.ch.send(context.Background(), header{kind: kindGoAway}, "", nil); err != nil {
		sc.nc.Close()
	}
}

func (sc *serverConn) serve() {
	ch, err := serverHandshake(sc.nc, sc.srv.opts)
	if err != nil {
		// A connect-and-close (the root's readiness probe) ends here: quiet.
		if !errors.Is(err, io.EOF) && !errors.Is(err, ErrTruncated) {
			sc.srv.log.Debug("handshake", "err", err)
		}
		sc.nc.Close()
		sc.finish()
		return
	}
	sc.mu.Lock()
	sc.ch = ch
	sc.ready = true
	sc.mu.Unlock()
	sc.srv.mu.Lock()
	draining := sc.srv.draining
	sc.srv.mu.Unlock()
	if draining {
		sc.goAway()
	}
	sc.read(0)
}

// finish is the connection's end, run by its last reader.
func (sc *serverConn) finish() {
	for _, st := range sc.streams {
		if st != nil {
			st.end(ErrTruncated)
		}
	}
	sc.srv.mu.Lock()
	delete(sc.srv.conns, sc)
	if sc.srv.draining && len(sc.srv.conns) == 0 {
		close(sc.srv.allGone)
	}
	sc.srv.mu.Unlock()
	sc.srv.leave()
	close(sc.done)
}

// noAbort is the ctx replies are written under. A stuck reply needs no ctx
// to end it: when the grace period is over, shutdown closes the connection,
// which fails the write; and a ctx that can end would cost a callback
// registered on it for every reply.
var noAbort = context.Background()

// handoffAfter is how long a handler may run on the connection's reader
// before another goroutine takes over the reading (between one and two
// periods): quick handlers then need no goroutine and no wake at all, and
// a slow one holds up the calls behind it for about this long.
const handoffAfter = time.Millisecond

// The reader's state, for the hand-off: serverConn.turn holds the
// current reader's turn (one more per hand-off) shifted left by one, and
// this bit while it runs a handler in line.
const handling = 1

// read is the connection's reader. It runs each request's handler itself
// and keeps reading afterwards, so that a reply needs no goroutine to be
// scheduled first, and the replies to frames that arrived together go out
// in one write. A handler that runs past handoffAfter makes the server's
// hand-off watch start another reader (MaxConcurrent 1 runs every handler
// in line, in order, with no hand-off).
//
// turn is this reader's; it is the reader until the watch moves the turn on.
func (sc *serverConn) read(turn uint64) {
	ch := sc.ch
	inline := sc.srv.inLine()
	// held: an in-line reader keeps its slot from one request to the next
	// while the next is already buffered, so that a batch of frames read
	// together costs one take and one give of a slot, not one per frame.
	held := false
	// queued: replies this reader held back since its last flush.
	queued := false
	defer func() {
		if held {
			sc.release()
		}
	}()
	if turn > 0 {
		// The reader before may have held replies back when its handler
		// began: they go before this reader waits for more requests,
		// which their caller may send only once it has them.
		if err := ch.flush(noAbort); err != nil {
			sc.srv.log.Debug("write reply", "err", err)
			sc.end()
			return
		}
	}
	for {
		if queued && !ch.buffered() {
			queued = false
			if err := ch.flush(noAbort); err != nil {
				sc.srv.log.Debug("write reply", "err", err)
				sc.end()
				return
			}
		}
		f, err := ch.recv()
		if err != nil {
			// A clean EOF is the normal end (and how a drained client leaves).
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				sc.srv.log.Debug("connection ended", "err", err)
			}
			sc.end()
			return
		}
		more := ch.buffered() // read while this goroutine still is the reader
		switch {
		case f.kind == kindData:
			st, ok := sc.streams[f.id]
			if !ok {
				sc.srv.log.Warn("closing connection after data for no open stream", "id", f.id)
				sc.end()
				return
			}
			if st == nil { // a refused stream's: dropped
				if f.flags&flagEnd != 0 {
					delete(sc.streams, f.id)
					sc.refused--
				}
				continue
			}
			if !st.push(f.body, sc.srv.hardStop) {
				sc.end()
				return
			}
			if f.flags&flagEnd != 0 {
				st.end(io.EOF)
				delete(sc.streams, f.id)
			}
			continue
		case f.kind == kindRequest && f.flags&flagStream != 0:
			if _, dup := sc.streams[f.id]; dup {
				sc.srv.log.Warn("closing connection after a second stream with one id", "id", f.id)
				sc.end()
				return
			}
			if !sc.srv.openStream() {
				if !sc.refuseStream(f.id) {
					sc.end()
					return
				}
				continue
			}
			st := newStreamBody(sc.srv.hctx)
			sc.streams[f.id] = st
			st.push(f.body, sc.srv.hardStop)
			sc.srv.track()
			go func() {
				if _, kept := sc.run(f, st, false, false, sc.srv.closeStream); kept {
					sc.srv.closeStream()
				}
				sc.srv.untrack()
			}()
			continue
		case f.kind == kindRequest || f.kind == kindNotify:
		default:
			// Which call this was is unknown, so no reply can name it.
			sc.srv.log.Warn("closing connection after a frame a client may not send", "kind", f.kind)
			sc.end()
			return
		}
		if held {
			held = false
		} else if !sc.acquire() {
			sc.end()
			return
		}
		if inline {
			// With replies held back, the watch is told of the handler:
			// should it take a while, the watch writes them meanwhile.
			watched := queued
			if watched {
				sc.handleInLine(turn)
			}
			// The slot stays for the next frame when this one's reply
			// (if any) was held back rather than written.
			_, held = sc.run(f, nil, true, more, sc.release)
			if watched {
				sc.turn.Store(turn << 1)
			}
			queued = queued || more && f.kind == kindRequest // a reply held back
			if held && !more {
				held = false
				sc.release()
			}
			continue // a failed reply fails the next flush or read: end
		}
		sc.handleInLine(turn)
		ok, kept := sc.run(f, nil, true, more, sc.release)
		queued = queued || more && f.kind == kindRequest
		if kept {
			sc.release()
		}
		if !sc.turn.CompareAndSwap(turn<<1|handling, turn<<1) {
			// Another reader took over meanwhile, and may be waiting
			// for a frame already: the reply held above must go now.
			sc.srv.untrack() // tracked by handOff
			if !ok {
				return
			}
			if err := ch.flush(noAbort); err != nil {
				sc.srv.log.Debug("write reply", "err", err)
				ch.close()
			}
			return
		}
	}
}

// handleInLine marks in the connection's turn that the reader of turn
// runs a handler, and tells the watch (see checkHandler).
func (sc *serverConn) handleInLine(turn uint64) {
	sc.handled.Add(1)
	sc.turn.Store(turn<<1 | handling)
	sc.srv.watch.busy()
}

// checkHandler is the watch's look at the connection, once a period: when
// the same handler has been running in line since the last look, it starts
// a reader (which first writes the replies held back before that handler),
// or with MaxConcurrent 1, which never hands the reading on, has those
// replies written. It reports whether the connection handled anything in
// line since then, or still does.
func (sc *serverConn) checkHandler(handOff bool) bool {
	n, t := sc.handled.Load(), sc.turn.Load()
	if n != sc.seen {
		if handOff {
			sc.seen = n
		}
		return true
	}
	if handOff && t&handling != 0 && (sc.srv.inLine() || !sc.handOff(t)) {
		sc.flushHeld(n)
	}
	return t&handling != 0
}

// flushHeld writes, from a goroutine of its own, the replies an in-line
// reader held back before handler n, which has run since the watch's last
// look (with MaxConcurrent 1, or when the reading may not be handed on):
// they would wait for it, and a caller that needs one of them before it
// lets that handler finish would wait for good. Once per handler.
func (sc *serverConn) flushHeld(n uint64) {
	if sc.flushed == n {
		return
	}
	sc.flushed = n
	sc.srv.track()
	go func() {
		defer sc.srv.untrack()
		if err := sc.ch.flush(noAbort); err != nil {
			sc.srv.log.Debug("write reply", "err", err)
			sc.ch.close()
		}
	}()
}

// passReading starts another reader now when a handler runs in line (not
// with MaxConcurrent 1, which never hands off).
func (sc *serverConn) passReading() {
	if t := sc.turn.Load(); t&handling != 0 && !sc.srv.inLine() {
		sc.handOff(t)
	}
}

// maxBacklog bounds the replies of one connection that are queued or being
// written and not yet taken by its client. While it has that many, the
// reading is not handed on: the connection's requests are read only as its
// client takes replies. A client that reads no replies so holds at most
// this many of them (and the goroutines writing them) in the cell, and no
// handler slot: its replies are written after the slot is given back.
const maxBacklog = 64

// handOff moves the turn on from t, when it still is t, to a new reader,
// unless the connection's replies are at maxBacklog; it reports whether it
// did. The handler left running in line is no longer covered by its
// connection's reader, so it is tracked from here until it returns (read
// untracks it); the tracking starts before the turn moves, so that it
// cannot end first.
func (sc *serverConn) handOff(t uint64) bool {
	if sc.ch.backlog() >= maxBacklog {
		return false
	}
	sc.srv.track()
	if next := t>>1 + 1; sc.turn.CompareAndSwap(t, next<<1) {
		go sc.read(next)
		return true
	}
	sc.srv.untrack()
	return false
}

// end closes the connection and finishes it; the reader that stops calls it.
func (sc *serverConn) end() {
	sc.ch.close()
	sc.finish()
}

// inLine reports whether every handler runs on its connection's reader, in
// order, with the reading never handed on (MaxConcurrent 1).
func (srv *server) inLine() bool { return srv.opts.MaxConcurrent == 1 }

// openStream counts a stream's handler in, unless MaxConcurrent of them
// run already. Stream handlers take no slot: one waits for its chunks,
// which only the connection's reader delivers, and a reader waiting for a
// slot such a handler held would wait for good. So a stream over the bound
// is refused rather than waited for.
func (srv *server) openStream() bool {
	if srv.streams.Add(1) > int64(srv.opts.MaxConcurrent) {
		srv.closeStream()
		return false
	}
	return true
}

// closeStream counts a stream's handler out, once it returned.
func (srv *server) closeStream() { srv.streams.Add(-1) }

// maxRefusedStreams bounds the refused streams of one connection whose
// chunks are still being dropped.
const maxRefusedStreams = 64

// refuseStream answers a stream over the bound with CodeTooManyStreams
// and drops its chunks as they come; false means the connection ends (its
// write failed, or it has too many refused streams still sending).
func (sc *serverConn) refuseStream(id uint64) bool {
	if sc.refused++; sc.refused > maxRefusedStreams {
		sc.srv.log.Warn("closing connection that keeps sending refused streams", "refused", sc.refused)
		return false
	}
	sc.streams[id] = nil
	msg := fmt.Sprintf("this cell runs at most %d streamed requests at once", sc.srv.opts.MaxConcurrent)
	if err := sc.ch.send(noAbort, header{kind: kindError, id: id}, CodeTooManyStreams, []byte(msg)); err != nil {
		sc.srv.log.Debug("write reply", "err", err)
		return false
	}
	return true
}

// acquire takes a handler slot, waiting for one; false once the grace
// period is over. release gives it back.
func (sc *serverConn) acquire() bool { return sc.srv.slots.take(sc.srv.hardStop) }
func (sc *serverConn) release()      { sc.srv.slots.give(sc.srv.hardStop) }

// slots is a counting semaphore that costs one atomic add each way while
// slots are left: a channel's lock would be taken twice per request.
type slots struct {
	free atomic.Int64  // slots left; below zero, minus the takers waiting
	pass chan struct{} // a slot given straight to a waiting taker
}

func newSlots(n int) *slots {
	s := &slots{pass: make(chan struct{})}
	s.free.Store(int64(n))
	return s
}

// take waits for a slot; false when stop closes first. A taker that gives
// up leaves the count short, which only matters until stop, and stop is
// closed for good.
func (s *slots) take(stop <-chan struct{}) bool {
	if s.free.Add(-1) >= 0 {
		return true
	}
	select {
	case <-s.pass:
		return true
	case <-stop:
		return false
	}
}

// give returns a slot, or hands it to a taker that waits for one.
func (s *slots) give(stop <-chan struct{}) {
	if s.free.Add(1) > 0 {
		return
	}
	select {
	case s.pass <- struct{}{}:
	case <-stop:
	}
}

// run handles one request (st is its stream, or nil) and replies; onReader
// says it runs on the connection's reader. With hold the reply waits in the
// queue for the reader's next flush, to go out with the replies to the
// frames already buffered; without, it goes at once. ok false means the
// connection failed.
//
// done gives back what the handler held (its slot, its stream's place)
// once it returned and before its reply is written: the write lasts as
// long as the client takes to read, and a client that never reads must not
// keep other connections' requests from their handlers. run calls done
// only when it writes; kept reports that it did not (a notify, or a reply
// held back), and the caller gives it back or keeps it.
func (sc *serverConn) run(f frame, st *streamBody, onReader, hold bool, done func()) (ok, kept bool) {
	var body []byte
	var err error
	switch {
	case st != nil:
		if sh, ok := sc.srv.h.(StreamHandler); ok {
			body, err = sh.HandleStream(sc.srv.hctx, f.name, st)
		} else {
			err = &RemoteError{Code: CodeNoStreams, Message: "this cell takes no streamed requests"}
		}
		st.abandon()
	default:
		body, err = sc.srv.h.Handle(sc.srv.hctx, f.name, f.body)
		if sc.srv.opts.RecycleBodies && !f.lent {
			// The reply below is copied or written before send returns.
			defer Recycle(f.body)
		}
	}
	if f.kind == kindNotify {
		if err != nil {
			sc.srv.log.Debug("notify handler failed", "method", f.name, "err", err)
		}
		return true, true
	}
	if err == nil && len(body) > sc.ch.maxOut {
		err = fmt.Errorf("%w: reply of %d bytes, the caller's limit is %d", ErrTooLarge, len(body), sc.ch.maxOut)
	}
	h, name := header{kind: kindReply, id: f.id}, ""
	if err != nil {
		code, msg := errorParts(err)
		h, name, body = header{kind: kindError, id: f.id}, code, []byte(msg)
	}
	if onReader && len(body) > copyLimit {
		// Written from the handler's slice, for as long as the caller
		// takes to read it: let another goroutine read meanwhile, so
		// that the next request comes in while this reply goes out.
		sc.passReading()
	}
	mode := writeNow
	if hold {
		mode = holdBack
	}
	if kept = sendMode(mode, body) == holdBack; !kept {
		done()
	}
	if err := sc.ch.put(noAbort, h, name, body, mode); err != nil {
		sc.srv.log.Debug("write reply", "method", f.name, "err", err)
		sc.ch.close()
		return false, kept
	}
	return true, kept
}

// errorParts is an error reply's code and message, within their bounds.
func errorParts(err error) (code, msg string) {
	msg = err.Error()
	var re *RemoteError
	if errors.As(err, &re) {
		code, msg = re.Code, re.Message
	}
	if len(msg) > maxErrorMessage {
		msg = msg[:maxErrorMessage]
	}
	if len(code) > maxMethod {
		code = code[:maxMethod]
	}
	return code, msg
}

// serverHandshake reads the client's preface, answers it, and takes the
// junction when both sides agree to one.
func serverHandshake(nc net.Conn, opts ServeOptions) (*channel, error) {
	nc.SetReadDeadline(time.Now().Add(prefaceTimeout))
	defer nc.SetReadDeadline(time.Time{})
	var b [prefaceLen]byte
	if _, err := io.ReadFull(nc, b[:]); err != nil {
		return nil, truncated(err)
	}
	p, err := parsePreface(b[:])
	if err != nil {
		return nil, err
	}
	if p.minVer > protoVersion || p.maxVer < protoVersion {
		refuse := preface{}.bytes()
		nc.Write(refuse[:])
		return nil, fmt.Errorf("%w: the client speaks %d..%d", ErrVersion, p.minVer, p.maxVer)
	}
	features := uint32(0)
	if p.features&featJunction != 0 && opts.Junction {
		features |= featJunction
	}
	rep := preface{minVer: protoVersion, maxVer: protoVersion, features: features, maxBody: uint32(opts.MaxBody)}.bytes()
	if _, err := nc.Write(rep[:]); err != nil {
		return nil, fmt.Errorf("send preface: %w", err)
	}
	ch := newChannel(nc, opts.MaxBody, peerBound(p.maxBody))
	// Only a reader that runs every handler itself, and reads again only
	// after the reply is copied or written, can lend its buffer.
	ch.rd.lend = opts.RecycleBodies && opts.MaxConcurrent == 1
	if features&featJunction != 0 {
		if err := acceptJunction(nc, ch); err != nil {
			return nil, fmt.Errorf("junction: %w", err)
		}
	}
	return ch, nil
}

// streamBody is a streamed request's body as its handler reads it. The
// connection's reader pushes chunks; at most streamQueue wait unread, then
// the reader (and so the connection) waits for the handler.
type streamBody struct {
	ctx       context.Context
	chunks    chan []byte
	abandoned chan struct{} // closed when the handler has returned
	once      sync.Once
	err       error // io.EOF or why the stream broke; written before chunks closes
	cur       []byte
}

const streamQueue = 4

func newStreamBody(ctx context.Context) *streamBody {
	return &streamBody{ctx: ctx, chunks: make(chan []byte, streamQueue), abandoned: make(chan struct{})}
}

// push hands a chunk to the handler; false when the grace period ended
// first. Chunks for a handler that returned are dropped.
func (st *streamBody) push(b []byte, hardStop <-chan struct{}) bool {
	if len(b) == 0 {
		return true
	}
	select {
	case st.chunks <- b:
		return true
	case <-st.abandoned:
		return true
	case <-hardStop:
		return false
	}
}

// end closes the stream with err (io.EOF for a complete one); the reader
// calls it once.
func (st *streamBody) end(err error) {
	st.err = err
	close(st.chunks)
}

func (st *streamBody) abandon() { st.once.Do(func() { close(st.abandoned) }) }

// Read implements io.Reader.
func (st *streamBody) Read(p []byte) (int, error) {
	for len(st.cur) == 0 {
		select {
		case b, ok := <-st.chunks:
			if !ok {
				return 0, st.err
			}
			st.cur = b
		case <-st.ctx.Done():
			return 0, st.ctx.Err()
		}
	}
	n := copy(p, st.cur)
	st.cur = st.cur[n:]
	return n, nil
}

// isTemporaryAccept reports accept errors that pass: out of fds or memory,
// or a connection that was aborted before it was accepted.
func isTemporaryAccept(err error) bool {
	for _, e := range []error{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
