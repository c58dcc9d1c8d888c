package podmanhelper

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

	"github.com/cellproject/cell/internal/cellspec"
	"github.com/cellproject/cell/internal/process"
)

// Errors callers branch on.
var (
	// ErrUnavailable: the helper could not be run or could not open
	// Podman; the error says why.
	ErrUnavailable = errors.New("podmanhelper: podman unavailable")
	// ErrHelperGone: the helper ended while a request waited for it.
	ErrHelperGone = errors.New("podmanhelper: the podman helper ended")
	// ErrClosed: the launcher was closed.
	ErrClosed = errors.New("podmanhelper: backend closed")
)

// HelperName is the helper binary's name; the root looks for it beside its
// own executable.
const HelperName = "cellroot-podman"

// outputLinger is how long output of an exited instance is still relayed:
// the helper's log copier drains the container's log after the exit.
const outputLinger = 5 * time.Second

// Options configure the root's side. Helper and Base are required.
type Options struct {
	// Helper is the cellroot-podman binary.
	Helper string
	// Base is the user's runtime dir (rundir.Base).
	Base string
	// Podman is the podman binary the helper starts a service with; empty
	// means podman on PATH.
	Podman string
	// Env is the helper's environment (it needs XDG_RUNTIME_DIR, PATH and
	// HOME for Podman); nil means ours.
	Env []string
	// Stderr receives the helper's log; nil discards it. LogFormat is its
	// format (console or json; empty: console).
	Stderr    io.Writer
	LogFormat string
	Log       *zap.Logger
}

// Launcher launches cells as Podman containers through a helper it starts at
// first use and restarts when it died.
type Launcher struct {
	o Options

	// mu guards cur, openErr, used, info and closed. It is held while a
	// helper starts, so that concurrent first launches share one.
	mu      sync.Mutex
	cur     *helper
	openErr error // a failed open: sticky, so a broken Podman costs once
	used    bool  // a helper was ever opened: the session may have containers
	info    Info
	closed  bool
}

var _ interface {
	Launch(context.Context, cellspec.Spec) (*Instance, error)
	EndSession(context.Context, string) error
} = (*Launcher)(nil)

// NewLauncher returns the root's side; nothing runs until it is needed.
func NewLauncher(o Options) *Launcher {
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	if o.Env == nil {
		o.Env = os.Environ()
	}
	if o.LogFormat == "" {
		o.LogFormat = "console"
	}
	return &Launcher{o: o}
}

// Open starts the helper now, which opens Podman, and returns what it found:
// for `cellroot doctor`, which wants the answer at once.
func (b *Launcher) Open(ctx context.Context) (Info, error) {
	if _, err := b.helper(ctx); err != nil {
		return Info{}, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.info, nil
}

// helper returns the running helper, starting one when there is none.
func (b *Launcher) helper(ctx context.Context) (*helper, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.closed:
		return nil, ErrClosed
	case b.openErr != nil:
		return nil, b.openErr
	case b.cur != nil && !b.cur.isDead():
		return b.cur, nil
	}
	h, info, err := start(ctx, b.o)
	if err != nil {
		if ctx.Err() == nil {
			b.openErr = err
		}
		return nil, err
	}
	b.cur, b.info, b.used = h, info, true
	b.o.Log.Info("podman service", zap.String("socket", info.Socket), zap.String("version", info.Version),
		zap.Bool("own", info.Own), zap.Int("helper_pid", h.proc.Pid()))
	return h, nil
}

// Launch creates and starts spec's container through the helper and returns
// once it runs. ctx bounds the launch only; a failed or cancelled launch
// leaves no container.
func (b *Launcher) Launch(ctx context.Context, spec cellspec.Spec) (*Instance, error) {
	h, err := b.helper(ctx)
	if err != nil {
		return nil, fmt.Errorf("launch %q: %w", spec.Key, err)
	}
	in, id := h.reserve(spec.Output)
	result, err := h.call(ctx, id, kindLaunch, encodeSpec(spec))
	if err == nil {
		in.name, err = decodeStr(result, "container name")
		if err != nil {
			h.fail(err)
		}
	}
	if err != nil {
		h.drop(id)
		return nil, fmt.Errorf("launch %q: %w", spec.Key, err)
	}
	if ctx.Err() != nil {
		// The launch won the race with its cancel: undo it.
		stopped, cancel := context.WithCancel(context.Background())
		cancel()
		in.Stop(stopped)
		return nil, fmt.Errorf("launch %q: %w", spec.Key, ctx.Err())
	}
	return in, nil
}

// EndSession removes every container of session. It starts a helper only
// when one ran before (and died): without one, no container was made.
func (b *Launcher) EndSession(ctx context.Context, session string) error {
	b.mu.Lock()
	used := b.used
	b.mu.Unlock()
	if !used {
		return nil
	}
	h, err := b.helper(ctx)
	if err != nil {
		return fmt.Errorf("end session %s: %w", session, err)
	}
	_, err = h.call(ctx, h.newID(), kindEnd, encodeStr(session))
	if err != nil {
		return fmt.Errorf("end session %s: %w", session, err)
	}
	return nil
}

// CollectDead removes the containers of dead sessions under the runtime dir
// and the private dirs of dead podman backends, and returns the sessions
// collected. It starts the helper: call it only when something is to
// collect.
func (b *Launcher) CollectDead(ctx context.Context) ([]string, error) {
	h, err := b.helper(ctx)
	if err != nil {
		return nil, fmt.Errorf("collect: %w", err)
	}
	result, err := h.call(ctx, h.newID(), kindCollect, nil)
	if err != nil {
		return nil, fmt.Errorf("collect: %w", err)
	}
	ids, err := decodeStrs(result, "sessions")
	if err != nil {
		h.fail(err)
		return nil, fmt.Errorf("collect: %w", err)
	}
	return ids, nil
}

// Info is what the helper found when it opened; zero before.
func (b *Launcher) Info() Info {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.info
}

// Close stops every container the helper started, then the helper. It is
// safe to call more than once.
func (b *Launcher) Close(ctx context.Context) error {
	b.mu.Lock()
	h := b.cur
	already := b.closed
	b.closed = true
	b.mu.Unlock()
	if already || h == nil {
		return nil
	}
	_, err := h.call(ctx, h.newID(), kindClose, nil)
	if errors.Is(err, ErrHelperGone) {
		err = nil
	}
	select {
	case <-h.proc.Done():
	case <-ctx.Done():
	}
	h.proc.Stop(ctx)
	<-h.readDone
	return err
}

// helper is one running cellroot-podman and its connection.
type helper struct {
	proc *process.Instance
	conn net.Conn
	ch   *channel
	log  *zap.Logger
	// readDone is closed when the read loop has ended.
	readDone chan struct{}
	// dead is closed when the connection ended; deadErr says why.
	dead    chan struct{}
	deadErr error

	// mu guards nextID, pending, insts and deadErr.
	mu      sync.Mutex
	nextID  uint32
	pending map[uint32]chan []byte
	insts   map[uint32]*Instance
}

// start runs a helper on one end of a socketpair and opens Podman in it.
func start(ctx context.Context, o Options) (*helper, Info, error) {
	if o.Helper == "" {
		return nil, Info{}, fmt.Errorf("%w: no podman helper (%s) given", ErrUnavailable, HelperName)
	}
	ours, theirs, err := socketpair()
	if err != nil {
		return nil, Info{}, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	args := []string{"--base", o.Base, "--log-format", o.LogFormat}
	if o.Podman != "" {
		args = append(args, "--podman", o.Podman)
	}
	proc, err := process.NewLauncher().Start(context.Background(), process.Command{
		Path:   o.Helper,
		Args:   args,
		Env:    o.Env,
		Output: o.Stderr,
		Files:  []*os.File{theirs},
	})
	theirs.Close()
	if err != nil {
		ours.Close()
		return nil, Info{}, fmt.Errorf("%w: run the podman helper: %v", ErrUnavailable, err)
	}
	h := &helper{proc: proc, conn: ours, ch: newChannel(ours), log: o.Log, readDone: make(chan struct{}), dead: make(chan struct{}),
		pending: map[uint32]chan []byte{}, insts: map[uint32]*Instance{}}
	go h.read()
	result, err := h.call(ctx, h.newID(), kindOpen, encodeU32(ProtocolVersion))
	var info Info
	if err == nil {
		info, err = decodeInfo(result)
	}
	if err != nil {
		h.fail(err)
		stopped, cancel := context.WithCancel(context.Background())
		cancel()
		proc.Stop(stopped)
		<-h.readDone
		if errors.Is(err, ErrHelperGone) {
			err = fmt.Errorf("%w (%s)", err, proc.ExitStatus())
		}
		return nil, Info{}, fmt.Errorf("%w: %s: %v", ErrUnavailable, o.Helper, err)
	}
	return h, info, nil
}

func (h *helper) isDead() bool {
	select {
	case <-h.dead:
		return true
	default:
		return false
	}
}

func (h *helper) newID() uint32 {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.nextID++
	return h.nextID
}

// reserve makes the instance a launch will fill, so that output the cell
// prints before the launch's reply is not lost.
func (h *helper) reserve(out io.Writer) (*Instance, uint32) {
	id := h.newID()
	in := &Instance{h: h, handle: id, output: out}
	in.Exit, in.finish = cellspec.NewExit()
	h.mu.Lock()
	h.insts[id] = in
	h.mu.Unlock()
	return in, id
}

func (h *helper) drop(id uint32) {
	h.mu.Lock()
	delete(h.insts, id)
	h.mu.Unlock()
}

// call sends a request and waits for its reply. When ctx ends first it
// sends a cancel and still waits for the reply: the helper answers at once,
// and only then is it known what the request did.
func (h *helper) call(ctx context.Context, id uint32, k kind, payload []byte) ([]byte, error) {
	ch := make(chan []byte, 1)
	h.mu.Lock()
	if h.isDead() {
		err := h.deadErr
		h.mu.Unlock()
		return nil, err
	}
	h.pending[id] = ch
	h.mu.Unlock()
	if err := h.ch.send(k, id, payload); err != nil {
		h.fail(err)
	}
	var reply []byte
	select {
	case reply = <-ch:
	case <-h.dead:
		return nil, h.err()
	case <-ctx.Done():
		if err := h.ch.send(kindCancel, id, nil); err != nil {
			h.fail(err)
		}
		select {
		case reply = <-ch:
		case <-h.dead:
			return nil, h.err()
		}
	}
	result, msg, err := decodeReply(reply)
	if err != nil {
		h.fail(err)
		return nil, err
	}
	if msg != "" {
		return nil, errors.New(msg)
	}
	return result, nil
}

func (h *helper) err() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.deadErr
}

// fail ends the connection: a helper that broke the protocol, or whose
// socket failed, is of no more use. The read loop then finishes the rest.
func (h *helper) fail(err error) {
	h.mu.Lock()
	if h.deadErr == nil {
		h.deadErr = fmt.Errorf("%w: %v", ErrHelperGone, err)
	}
	h.mu.Unlock()
	h.conn.Close()
}

// read dispatches the helper's frames until the connection ends, then
// fails what waits and finishes every instance: their containers are the
// session's, and its end (or the next root) removes them.
func (h *helper) read() {
	defer close(h.readDone)
	var err error
	for err == nil {
		var f frame
		if f, err = h.ch.recv(); err == nil {
			err = h.handle(f)
		}
	}
	h.fail(err)
	h.mu.Lock()
	close(h.dead)
	insts := h.insts
	h.insts = map[uint32]*Instance{}
	h.pending = map[uint32]chan []byte{}
	h.mu.Unlock()
	for _, in := range insts {
		in.finish("podman helper ended: " + err.Error())
	}
	h.conn.Close()
}

func (h *helper) handle(f frame) error {
	switch f.kind {
	case kindReply:
		h.mu.Lock()
		ch := h.pending[f.id]
		delete(h.pending, f.id)
		h.mu.Unlock()
		if ch == nil {
			return fmt.Errorf("%w: reply to request %d, which is not waiting", ErrFrame, f.id)
		}
		ch <- f.payload
	case kindOutput:
		h.mu.Lock()
		in := h.insts[f.id]
		h.mu.Unlock()
		if in != nil && in.output != nil {
			in.output.Write(f.payload)
		}
	case kindExited:
		status, err := decodeStr(f.payload, "status")
		if err != nil {
			return err
		}
		h.mu.Lock()
		in := h.insts[f.id]
		now := time.Now()
		for id, old := range h.insts {
			if !old.endedAt.IsZero() && now.Sub(old.endedAt) > outputLinger {
				delete(h.insts, id)
			}
		}
		if in != nil {
			in.endedAt = now
		}
		h.mu.Unlock()
		if in == nil {
			return fmt.Errorf("%w: exit of instance %d, which is unknown", ErrFrame, f.id)
		}
		in.finish(status)
	default:
		return fmt.Errorf("%w: unexpected %s from the helper", ErrFrame, f.kind)
	}
	return nil
}

// Instance is one cell's container, as the root sees it through the helper.
type Instance struct {
	h      *helper
	handle uint32
	name   string // set before Launch returns
	output io.Writer
	// endedAt is guarded by h.mu.
	endedAt time.Time
	// Exit is Done, closed once the container has exited and has been
	// removed, or the helper ended, and ExitStatus, Podman's "exited N"
	// or why the helper ended. finish ends it, once.
	*cellspec.Exit
	finish func(status string)
}

// ID is the container's name (cell-<session>-<key>).
func (in *Instance) ID() string { return in.name }

// Stop sends SIGTERM to the cell and, when ctx ends (or had ended), kills
// and removes its container; it returns once the container is gone. It is
// safe to call many times, concurrently and after the cell exited.
func (in *Instance) Stop(ctx context.Context) error {
	if in.Ended() {
		return nil
	}
	if _, err := in.h.call(ctx, in.h.newID(), kindStop, encodeU32(in.handle)); err != nil {
		if errors.Is(err, ErrHelperGone) {
			return nil // done is closed: the session's end removes the container
		}
		return fmt.Errorf("stop container %s: %w", in.name, err)
	}
	// The exit frame follows the stop's reply.
	<-in.Done()
	return nil
}
