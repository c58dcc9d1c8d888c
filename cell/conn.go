package cell

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// DialOption configures a connection made by [Session.Grow],
// [Session.Connect] or [NewConn].
type DialOption func(*dialConfig)

type dialConfig struct {
	junction bool
	maxBody  int
}

// WithJunction asks the cell to move the connection to a gap junction:
// shared-memory rings in a sealed memfd passed over the socket. When either
// side cannot or will not (no memfd here, the server not offering it), the
// connection stays on the socket; [Conn.Junction] says which it got.
func WithJunction() DialOption { return func(c *dialConfig) { c.junction = true } }

// WithMaxBody bounds the bodies this side accepts in one frame (replies);
// 0 means DefaultMaxBody, and bounds under 4096 bytes are raised to it.
func WithMaxBody(n int) DialOption { return func(c *dialConfig) { c.maxBody = n } }

func newDialConfig(opts []DialOption) dialConfig {
	var c dialConfig
	for _, o := range opts {
		o(&c)
	}
	c.maxBody = ownBound(c.maxBody)
	return c
}

// Conn is a client connection to one cell. Calls may be made from many
// goroutines at once; they are pipelined on one connection and their replies
// matched by id. When the cell says it is going away (it drains for an
// upgrade or a stop), calls in flight complete on the old connection and new
// ones go over a fresh connection, dialled the way this one was.
type Conn struct {
	name string
	dial func(ctx context.Context) (net.Conn, error)
	cfg  dialConfig

	// mu serialises the changes of cur and closed; never held while
	// dialling. Calls read both without it.
	mu     sync.Mutex
	cur    atomic.Pointer[link]
	closed atomic.Bool
	dialMu sync.Mutex // one redial at a time
}

// link is one underlying connection of a Conn; its calls read their own
// replies (linkread.go).
type link struct {
	ch       *channel
	junction bool

	mu      sync.Mutex // guards the fields below
	nextID  uint64
	pending pendingCalls
	err     error // why the link ended; set once
	// goaway: the server asked for no new calls here. Set under mu, read
	// without it on every call's way in.
	goaway atomic.Bool

	// The read role, held by one goroutine at a time.
	reading bool        // someone holds it (for good once ended)
	leader  *call       // whose reply the holder waits for; nil: the watcher
	yield   bool        // the holder is asked to let go: a read deadline is set
	waiters *call       // calls waiting that can take the role, newest first
	ended   bool        // done is closed
	idleSet bool        // idle is set
	soon    bool        // idle is set for busyWatch, not idleWatch
	idle    *time.Timer // starts the watcher on a link nobody reads (watchIdle)

	done chan struct{} // closed when the link has ended and nobody reads
}

// call is one call waiting on a link.
type call struct {
	id  uint64
	rep chan frame // its reply, or leadToken; buffered: senders never block

	// Guarded by the link's mu:
	answered   bool // its reply is on the way to rep
	waiting    bool // in the link's waiters
	prev, next *call
}

// pendingCalls is a link's calls in flight, by id. Ids are handed out in
// order, so the calls in flight at once mostly have ids within a window:
// a table indexed by the id's low bits finds them with no hashing. A call
// whose slot an older one still holds goes in a map beside it.
type pendingCalls struct {
	slots [pendingSlots]*call
	over  map[uint64]*call
	n     int
}

const pendingSlots = 128

func (p *pendingCalls) add(cl *call) {
	if s := &p.slots[cl.id%pendingSlots]; *s == nil {
		*s = cl
	} else {
		if p.over == nil {
			p.over = make(map[uint64]*call)
		}
		p.over[cl.id] = cl
	}
	p.n++
}

// take removes and returns the call with id, if it is in flight.
func (p *pendingCalls) take(id uint64) (*call, bool) {
	if s := &p.slots[id%pendingSlots]; *s != nil && (*s).id == id {
		cl := *s
		*s = nil
		p.n--
		return cl, true
	}
	if cl, ok := p.over[id]; ok {
		delete(p.over, id)
		p.n--
		return cl, true
	}
	return nil, false
}

// leadToken hands a waiting call the read role (no frame has kind 0).
var leadToken = frame{}

// NewConn speaks the synapse format on an established connection nc to a
// cell (name is for errors): it negotiates the version and, with
// [WithJunction], the gap junction. The Conn cannot redial after the cell
// drains; prefer [Session.Grow] and [Session.Connect], which can.
func NewConn(ctx context.Context, name string, nc net.Conn, opts ...DialOption) (*Conn, error) {
	c := &Conn{name: name, cfg: newDialConfig(opts)}
	l, err := c.open(ctx, nc)
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", name, err)
	}
	c.cur.Store(l)
	return c, nil
}

// newRedialConn makes a Conn whose links come from dial.
func newRedialConn(ctx context.Context, name string, dial func(ctx context.Context) (net.Conn, error), cfg dialConfig) (*Conn, error) {
	c := &Conn{name: name, dial: dial, cfg: cfg}
	nc, err := dial(ctx)
	if err != nil {
		return nil, err
	}
	l, err := c.open(ctx, nc)
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", name, err)
	}
	c.cur.Store(l)
	return c, nil
}

// open negotiates on nc and starts the link's reader.
func (c *Conn) open(ctx context.Context, nc net.Conn) (*link, error) {
	stop := context.AfterFunc(ctx, func() { nc.SetDeadline(time.Unix(1, 0)) })
	ch, junction, err := clientHandshake(nc, c.cfg)
	if !stop() {
		nc.Close()
		return nil, ctx.Err()
	}
	if err != nil {
		nc.Close()
		return nil, err
	}
	l := &link{ch: ch, junction: junction, nextID: 1, done: make(chan struct{})}
	l.mu.Lock() // the timer's function takes it first
	l.idle, l.idleSet = time.AfterFunc(idleWatch, l.watchIdle), true
	l.mu.Unlock()
	return l, nil
}

// clientHandshake sends the client preface, reads the server's, and sets
// up the junction when both sides agreed to one.
func clientHandshake(nc net.Conn, cfg dialConfig) (*channel, bool, error) {
	want := uint32(0)
	var offer *junctionOffer
	if cfg.junction {
		// Made before asking, so that a host that refuses memfd (a seccomp
		// policy, an old kernel) simply never asks.
		if o, err := newJunctionOffer(); err == nil {
			offer = o
			want |= featJunction
		}
	}
	defer func() {
		if offer != nil {
			offer.close()
		}
	}()
	pre := preface{minVer: protoVersion, maxVer: protoVersion, features: want, maxBody: uint32(cfg.maxBody)}.bytes()
	if _, err := nc.Write(pre[:]); err != nil {
		return nil, false, fmt.Errorf("send preface: %w", err)
	}
	var b [prefaceLen]byte
	if _, err := io.ReadFull(nc, b[:]); err != nil {
		return nil, false, fmt.Errorf("read preface: %w", truncated(err))
	}
	p, err := parsePreface(b[:])
	if err != nil {
		return nil, false, err
	}
	if p.maxVer != protoVersion || p.minVer != protoVersion {
		return nil, false, fmt.Errorf("%w: the cell chose %d", ErrVersion, p.maxVer)
	}
	if p.features&^want != 0 {
		return nil, false, fmt.Errorf("%w: the cell accepted features %#x never asked for", ErrMalformed, p.features)
	}
	maxOut := peerBound(p.maxBody)
	ch := newChannel(nc, cfg.maxBody, maxOut)
	if p.features&featJunction == 0 {
		return ch, false, nil
	}
	ok, err := offer.send(nc)
	if err != nil {
		return nil, false, fmt.Errorf("junction: %w", err)
	}
	if !ok {
		return ch, false, nil // the cell could not map it: stay on the socket
	}
	if err := offer.attach(ch); err != nil {
		return nil, false, fmt.Errorf("junction: %w", err)
	}
	offer = nil // owned by the channel now
	return ch, true, nil
}

// Name is the cell (key) this connection reaches.
func (c *Conn) Name() string { return c.name }

// Junction reports whether the current connection runs over a gap junction.
func (c *Conn) Junction() bool {
	l := c.cur.Load()
	return l != nil && l.junction
}

// Call sends method and body to the cell and waits for the reply body. A
// handler's error comes back as *RemoteError. When ctx ends first the call is
// abandoned (its late reply is dropped) and the connection stays usable.
func (c *Conn) Call(ctx context.Context, method string, body []byte) ([]byte, error) {
	if err := checkMethod(method); err != nil {
		return nil, fmt.Errorf("call %s: %w", c.name, err)
	}
	for {
		l, err := c.link(ctx)
		if err != nil {
			return nil, fmt.Errorf("call %s %s: %w", c.name, method, err)
		}
		if len(body) > l.ch.maxOut {
			return nil, fmt.Errorf("call %s %s: %w: %d bytes, the limit is %d", c.name, method, ErrTooLarge, len(body), l.ch.maxOut)
		}
		cl, others, err := l.register()
		if errors.Is(err, errGoAway) {
			continue // a fresh link takes it
		}
		if err != nil {
			return nil, fmt.Errorf("call %s %s: %w", c.name, method, err)
		}
		mode := writeNow
		if others {
			mode = gatherFirst
		}
		if err := l.ch.put(ctx, header{kind: kindRequest, id: cl.id}, method, body, mode); err != nil {
			l.forget(cl.id)
			l.fail(fmt.Errorf("write: %w", err))
			return nil, fmt.Errorf("call %s %s: %w", c.name, method, ctxOr(ctx, err))
		}
		return l.wait(ctx, c, method, cl)
	}
}

// Notify sends a one-way message: the cell runs its handler and sends no
// reply. It returns once the message is queued on the connection; messages
// on one connection are handled in the order sent only if the cell serves
// with MaxConcurrent 1.
func (c *Conn) Notify(ctx context.Context, method string, body []byte) error {
	if err := checkMethod(method); err != nil {
		return fmt.Errorf("notify %s: %w", c.name, err)
	}
	l, err := c.link(ctx)
	if err != nil {
		return fmt.Errorf("notify %s %s: %w", c.name, method, err)
	}
	if len(body) > l.ch.maxOut {
		return fmt.Errorf("notify %s %s: %w: %d bytes, the limit is %d", c.name, method, ErrTooLarge, len(body), l.ch.maxOut)
	}
	if err := l.ch.send(ctx, header{kind: kindNotify}, method, body); err != nil {
		l.fail(fmt.Errorf("write: %w", err))
		return fmt.Errorf("notify %s %s: %w", c.name, method, ctxOr(ctx, err))
	}
	return nil
}

// streamChunk is the size of the data frames CallStream sends.
const streamChunk = 1 << 20

// CallStream is Call with a body read from r until EOF, of any length: it
// travels in chunks, and the cell's handler reads it as a stream (see
// [StreamHandler]). The reply is one body as for Call.
func (c *Conn) CallStream(ctx context.Context, method string, r io.Reader) ([]byte, error) {
	if err := checkMethod(method); err != nil {
		return nil, fmt.Errorf("call %s: %w", c.name, err)
	}
	var l *link
	var cl *call
	for {
		var err error
		if l, err = c.link(ctx); err != nil {
			return nil, fmt.Errorf("call %s %s: %w", c.name, method, err)
		}
		cl, _, err = l.register()
		if errors.Is(err, errGoAway) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("call %s %s: %w", c.name, method, err)
		}
		break
	}
	id := cl.id
	chunk := make([]byte, min(streamChunk, l.ch.maxOut))
	h := header{kind: kindRequest, flags: flagStream, id: id}
	name := method
	for {
		n, rerr := io.ReadFull(r, chunk)
		last := rerr != nil
		if rerr != nil && !errors.Is(rerr, io.EOF) && !errors.Is(rerr, io.ErrUnexpectedEOF) {
			// The cell has a half-read stream: end it, and drop the reply.
			l.ch.send(ctx, header{kind: kindData, flags: flagEnd, id: id}, "", nil)
			l.forget(id)
			return nil, fmt.Errorf("call %s %s: read body: %w", c.name, method, rerr)
		}
		if last && h.kind == kindData {
			h.flags = flagEnd
		}
		if err := l.ch.send(ctx, h, name, chunk[:n]); err != nil {
			l.forget(id)
			l.fail(fmt.Errorf("write: %w", err))
			return nil, fmt.Errorf("call %s %s: %w", c.name, method, ctxOr(ctx, err))
		}
		if last {
			if h.kind == kindRequest { // all of it fitted the first frame
				if err := l.ch.send(ctx, header{kind: kindData, flags: flagEnd, id: id}, "", nil); err != nil {
					l.forget(id)
					l.fail(fmt.Errorf("write: %w", err))
					return nil, fmt.Errorf("call %s %s: %w", c.name, method, ctxOr(ctx, err))
				}
			}
			break
		}
		h = header{kind: kindData, id: id}
		name = ""
	}
	return l.wait(ctx, c, method, cl)
}

func checkMethod(method string) error {
	if method == "" || len(method) > maxMethod {
		return fmt.Errorf("method must be 1 to %d bytes", maxMethod)
	}
	return nil
}

func ctxOr(ctx context.Context, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return ctxErr
	}
	return err
}

// errGoAway is a link's answer to new calls once the server sent GOAWAY.
var errGoAway = errors.New("cell: the cell is going away")

// link returns the link new calls use, dialling a fresh one when the
// current one received GOAWAY (or failed after it).
func (c *Conn) link(ctx context.Context) (*link, error) {
	if c.closed.Load() {
		return nil, ErrClosed
	}
	l := c.cur.Load()
	if !l.goaway.Load() {
		return l, nil
	}
	if c.dial == nil {
		return nil, fmt.Errorf("%w: the cell is going away (GOAWAY) and this Conn cannot redial", ErrClosed)
	}
	c.dialMu.Lock()
	defer c.dialMu.Unlock()
	if l = c.cur.Load(); !l.goaway.Load() {
		return l, nil // another call redialled
	}
	nc, err := c.dial(ctx)
	if err != nil {
		return nil, fmt.Errorf("redial after goaway: %w", err)
	}
	nl, err := c.open(ctx, nc)
	if err != nil {
		return nil, fmt.Errorf("redial after goaway: %w", err)
	}
	c.mu.Lock()
	if c.closed.Load() {
		c.mu.Unlock()
		nl.close()
		return nil, ErrClosed
	}
	old := c.cur.Swap(nl)
	c.mu.Unlock()
	old.closeIfIdle()
	return nl, nil
}

// calls holds calls that ended with their reply, for reuse: then nothing
// refers to them any more (they are out of pending and waiters, and their
// rep is drained), and a call costs no allocation.
var calls = sync.Pool{New: func() any { return &call{rep: make(chan frame, 1)} }}

// register adds a call to the link; others says whether other calls are
// in flight beside it.
func (l *link) register() (cl *call, others bool, err error) {
	cl = calls.Get().(*call)
	cl.answered, cl.waiting, cl.prev, cl.next = false, false, nil, nil
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.goaway.Load() {
		calls.Put(cl)
		return nil, false, errGoAway
	}
	if l.err != nil {
		calls.Put(cl)
		return nil, false, l.err
	}
	if !l.reading && l.pending.n > 0 {
		// Replies to the calls in flight may fill the connection while
		// this one writes; unread, they would stop the cell reading this
		// write: someone reads soon unless a call waits first.
		l.watchSoonLocked()
	}
	cl.id = l.nextID
	l.nextID++
	l.pending.add(cl)
	return cl, l.pending.n > 1, nil
}

func (l *link) wait(ctx context.Context, c *Conn, method string, cl *call) ([]byte, error) {
	f, err := l.await(ctx, cl)
	if err != nil {
		return nil, fmt.Errorf("call %s %s: %w", c.name, method, err)
	}
	calls.Put(cl)
	return reply(method, f)
}

func reply(method string, f frame) ([]byte, error) {
	if f.kind == kindError {
		return nil, &RemoteError{Method: method, Code: f.name, Message: string(f.body)}
	}
	return f.body, nil
}

func (l *link) forget(id uint64) {
	l.mu.Lock()
	l.pending.take(id)
	idle := l.goaway.Load() && l.pending.n == 0
	l.mu.Unlock()
	if idle {
		l.ch.close()
	}
}

// closeIfIdle closes a replaced link once no call waits on it.
func (l *link) closeIfIdle() {
	l.mu.Lock()
	l.goaway.Store(true)
	idle := l.pending.n == 0
	l.mu.Unlock()
	if idle {
		l.ch.close()
	}
}

// fail records why the link ended, keeping the first reason.
func (l *link) fail(err error) {
	l.mu.Lock()
	if l.err == nil {
		l.err = err
	}
	l.mu.Unlock()
}

func (l *link) closeErr() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err == nil {
		return ErrClosed
	}
	return l.err
}

func (l *link) close() error {
	l.fail(ErrClosed)
	err := l.ch.close()
	l.mu.Lock()
	free := !l.reading
	l.reading = true // nobody reads from now on
	l.mu.Unlock()
	if free {
		l.end(ErrClosed)
	}
	<-l.done
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

// Close closes the connection, stops the reader and fails pending calls with
// ErrClosed. It is safe to call more than once.
func (c *Conn) Close() error {
	c.mu.Lock()
	c.closed.Store(true)
	l := c.cur.Load()
	c.mu.Unlock()
	return l.close()
}
