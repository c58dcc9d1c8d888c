package podmanhelper

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/cellproject/cell/internal/cellspec"
	"github.com/cellproject/cell/internal/rundir"
)

// Podman is the launcher the helper serves: the podman package's, wrapped by
// cmd/cellroot-podman so that this package does not link the bindings.
type Podman interface {
	Launch(ctx context.Context, spec cellspec.Spec) (Container, error)
	EndSession(ctx context.Context, session string) error
	CollectDead(ctx context.Context, live func(session string) bool) ([]string, error)
	Close(ctx context.Context) error
}

// Container is one launched cell of a Podman backend.
type Container interface {
	ID() string
	Done() <-chan struct{}
	ExitStatus() string
	Stop(ctx context.Context) error
}

// ServeOptions configure Serve.
type ServeOptions struct {
	// Open opens the launcher when the root's open arrives.
	Open func(ctx context.Context) (Podman, Info, error)
	// Base is the user's runtime dir, whose session locks say which
	// sessions live (for collect).
	Base string
	// CloseTimeout bounds closing the launcher when the root goes away
	// without a close (default 10 s).
	CloseTimeout time.Duration
	Log          *zap.Logger
}

// Serve answers the root on conn until the root sends close, conn ends or
// ctx is cancelled (a SIGTERM), and closes the launcher before it returns.
// It returns nil after a close, the reason otherwise.
func Serve(ctx context.Context, conn io.ReadWriteCloser, o ServeOptions) error {
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	if o.CloseTimeout == 0 {
		o.CloseTimeout = 10 * time.Second
	}
	s := &server{o: o, ch: newChannel(conn), conn: conn, inflight: map[uint32]context.CancelFunc{}, insts: map[uint32]Container{}}
	s.life, s.end = context.WithCancel(ctx)
	stop := context.AfterFunc(s.life, func() { conn.Close() })
	defer stop()
	err := s.loop()
	s.end()
	s.wg.Wait()
	if p := s.backend(); p != nil {
		// Safe after a close too: a closed backend closes at once.
		cctx, cancel := context.WithTimeout(context.Background(), o.CloseTimeout)
		defer cancel()
		if cerr := p.Close(cctx); cerr != nil {
			o.Log.Warn("close the podman backend", zap.Error(cerr))
		}
	}
	conn.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	return err
}

type server struct {
	o    ServeOptions
	ch   *channel
	conn io.Closer

	// life ends when Serve ends; every request's context derives from it.
	life context.Context
	end  context.CancelFunc
	wg   sync.WaitGroup

	// mu guards everything below.
	mu sync.Mutex
	// state is where open is: nothing may come before it, nor twice.
	state    openState
	p        Podman // set once state is opened
	closed   bool   // a close was asked for
	inflight map[uint32]context.CancelFunc
	insts    map[uint32]Container
}

type openState int

const (
	notOpened openState = iota
	opening
	opened
)

// loop reads requests until the connection ends or breaks a rule.
func (s *server) loop() error {
	for {
		f, err := s.ch.recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return fmt.Errorf("podmanhelper: the root closed the connection")
			}
			return fmt.Errorf("podmanhelper: read request: %w", err)
		}
		if err := s.dispatch(f); err != nil {
			return err
		}
	}
}

// backend is the opened backend; requests other than open run only after
// the open succeeded.
func (s *server) backend() Podman {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.p
}

// dispatch starts one request. A malformed or misplaced one ends the
// connection.
func (s *server) dispatch(f frame) error {
	if f.kind == kindCancel {
		if err := decodeEmpty(f.payload); err != nil {
			return err
		}
		s.mu.Lock()
		if c := s.inflight[f.id]; c != nil {
			c()
		}
		s.mu.Unlock()
		return nil
	}
	s.mu.Lock()
	state := s.state
	if f.kind == kindOpen && state == notOpened {
		s.state = opening
	}
	s.mu.Unlock()
	switch {
	case f.kind == kindOpen && state != notOpened:
		return fmt.Errorf("%w: a second open", ErrFrame)
	case f.kind != kindOpen && state != opened:
		return fmt.Errorf("%w: %s before the open succeeded", ErrFrame, f.kind)
	}
	var run func(ctx context.Context) ([]byte, error)
	switch f.kind {
	case kindOpen:
		v, err := decodeU32(f.payload, "version")
		if err != nil {
			return err
		}
		run = func(ctx context.Context) ([]byte, error) {
			if v != ProtocolVersion {
				return nil, fmt.Errorf("protocol version %d is not this helper's %d", v, ProtocolVersion)
			}
			p, info, err := s.o.Open(ctx)
			if err != nil {
				return nil, err
			}
			s.mu.Lock()
			s.p, s.state = p, opened
			s.mu.Unlock()
			return encodeInfo(info), nil
		}
	case kindLaunch:
		spec, err := decodeSpec(f.payload)
		if err != nil {
			return err
		}
		run = func(ctx context.Context) ([]byte, error) { return s.launch(ctx, f.id, spec) }
	case kindStop:
		h, err := decodeU32(f.payload, "handle")
		if err != nil {
			return err
		}
		run = func(ctx context.Context) ([]byte, error) {
			s.mu.Lock()
			c := s.insts[h]
			s.mu.Unlock()
			if c == nil {
				// Exited and reported already: nothing left to stop.
				return nil, nil
			}
			return nil, c.Stop(ctx)
		}
	case kindEnd:
		session, err := decodeStr(f.payload, "session")
		if err != nil {
			return err
		}
		run = func(ctx context.Context) ([]byte, error) { return nil, s.backend().EndSession(ctx, session) }
	case kindCollect:
		if err := decodeEmpty(f.payload); err != nil {
			return err
		}
		run = func(ctx context.Context) ([]byte, error) {
			ids, err := s.backend().CollectDead(ctx, func(id string) bool { return rundir.Live(s.o.Base, id) })
			if err != nil {
				return nil, err
			}
			return encodeStrs(ids), nil
		}
	case kindClose:
		if err := decodeEmpty(f.payload); err != nil {
			return err
		}
		run = func(ctx context.Context) ([]byte, error) {
			s.mu.Lock()
			s.closed = true
			s.mu.Unlock()
			return nil, s.backend().Close(ctx)
		}
	default:
		return fmt.Errorf("%w: unexpected %s from the root", ErrFrame, f.kind)
	}
	ctx, cancel := context.WithCancel(s.life)
	s.mu.Lock()
	if _, dup := s.inflight[f.id]; dup {
		s.mu.Unlock()
		cancel()
		return fmt.Errorf("%w: request id %d is already in flight", ErrFrame, f.id)
	}
	s.inflight[f.id] = cancel
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		result, err := run(ctx)
		s.mu.Lock()
		delete(s.inflight, f.id)
		s.mu.Unlock()
		cancel()
		s.reply(f.id, result, err)
		if f.kind == kindClose || (f.kind == kindOpen && err != nil) {
			// Nothing follows a close or a failed open: ending the
			// connection ends the loop, and the helper.
			s.conn.Close()
		}
	}()
	return nil
}

// launch starts the container and, once the root has its reply, watches it
// for the exited frame.
func (s *server) launch(ctx context.Context, id uint32, spec cellspec.Spec) ([]byte, error) {
	spec.Output = &outputWriter{ch: s.ch, id: id}
	c, err := s.backend().Launch(ctx, spec)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.insts[id] = c
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		select {
		case <-c.Done():
		case <-s.life.Done():
			return
		}
		s.mu.Lock()
		delete(s.insts, id)
		s.mu.Unlock()
		if err := s.ch.send(kindExited, id, encodeStr(c.ExitStatus())); err != nil {
			s.o.Log.Debug("report an exit", zap.Error(err))
		}
	}()
	return encodeStr(c.ID()), nil
}

func (s *server) reply(id uint32, result []byte, err error) {
	if serr := s.ch.send(kindReply, id, encodeReply(result, err)); serr != nil {
		s.o.Log.Debug("reply", zap.Error(serr))
	}
}

// outputWriter sends a cell's output to the root as output frames.
type outputWriter struct {
	ch *channel
	id uint32
}

func (w *outputWriter) Write(p []byte) (int, error) {
	for off := 0; off < len(p); off += maxOutputChunk {
		end := min(off+maxOutputChunk, len(p))
		if err := w.ch.send(kindOutput, w.id, p[off:end]); err != nil {
			return off, err
		}
	}
	return len(p), nil
}
