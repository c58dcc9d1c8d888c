package cell

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/cellproject/cell/internal/rundir"
	"github.com/cellproject/cell/wire"
)

// fakeRoot is a stand-in for cellroot's session socket: enough of the
// umbilical protocol to test the SDK without the real root.
type fakeRoot struct {
	t   *testing.T
	dir string
	ln  net.Listener

	mu     sync.Mutex
	tokens map[string]string // token -> cell key ("" for the owner)
	conns  map[net.Conn]struct{}
	spawn  func(name string) (wire.Reply, error)
	spawns int
	closed bool
	wg     sync.WaitGroup
}

const fakeSession = "0123456789abcdef"

func newFakeRoot(t *testing.T) *fakeRoot {
	t.Helper()
	dir := t.TempDir()
	ln, err := net.Listen("unix", filepath.Join(dir, rundir.UmbilicalName))
	if err != nil {
		t.Fatal(err)
	}
	r := &fakeRoot{t: t, dir: dir, ln: ln, tokens: map[string]string{"owner-token": ""}, conns: map[net.Conn]struct{}{}}
	r.wg.Add(1)
	go r.accept()
	t.Cleanup(r.close)
	return r
}

// addCell issues a token for the cell key and returns the environment a
// launched cell would get.
func (r *fakeRoot) addCell(key string) map[string]string {
	tok := "token-" + key
	r.mu.Lock()
	r.tokens[tok] = key
	r.mu.Unlock()
	return map[string]string{
		EnvName:       key,
		EnvSession:    fakeSession,
		EnvRuntimeDir: r.dir,
		EnvUmbilical:  filepath.Join(r.dir, rundir.UmbilicalName),
		EnvToken:      tok,
	}
}

// join joins the fake session as the cell key (or the owner for "").
func (r *fakeRoot) join(key string) *Session {
	r.t.Helper()
	env := r.addCell(key)
	if key == "" {
		env[EnvName] = ""
		env[EnvToken] = "owner-token"
	}
	s, err := JoinWith(context.Background(), JoinOptions{Getenv: func(k string) string { return env[k] }})
	if err != nil {
		r.t.Fatalf("join as %q: %v", key, err)
	}
	r.t.Cleanup(func() { s.Close() })
	return s
}

// close stops the fake root: every connection ends, as when cellroot dies.
func (r *fakeRoot) close() {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.closed = true
	r.ln.Close()
	for c := range r.conns {
		c.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
}

func (r *fakeRoot) accept() {
	defer r.wg.Done()
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		r.mu.Lock()
		if r.closed {
			r.mu.Unlock()
			c.Close()
			return
		}
		r.conns[c] = struct{}{}
		r.wg.Add(1)
		r.mu.Unlock()
		go r.serve(c)
	}
}

func (r *fakeRoot) serve(c net.Conn) {
	defer r.wg.Done()
	defer func() {
		r.mu.Lock()
		delete(r.conns, c)
		r.mu.Unlock()
		c.Close()
	}()
	helloed := false
	self := ""
	for {
		payload, err := wire.ReadFrame(c, wire.MaxFrame)
		if err != nil {
			return
		}
		req, err := wire.DecodeRequest(payload)
		if err != nil {
			return
		}
		rep := wire.Reply{ID: req.ID, OK: true}
		fail := func(code wire.Code, msg string) {
			rep = wire.Reply{ID: req.ID, Error: &wire.Error{Code: code, Message: msg}}
		}
		switch {
		case !helloed && req.Op != wire.OpHello:
			fail(wire.CodeHelloRequired, "hello first")
		case req.Op == wire.OpHello:
			r.mu.Lock()
			key, ok := r.tokens[req.Token]
			r.mu.Unlock()
			if !ok {
				fail(wire.CodeUnknownToken, "who are you")
				break
			}
			helloed, self = true, key
			rep.Session, rep.RuntimeDir, rep.Self = fakeSession, r.dir, self
		case req.Op == wire.OpSpawn:
			r.mu.Lock()
			r.spawns++
			spawn := r.spawn
			r.mu.Unlock()
			if spawn == nil {
				fail(wire.CodeSpawnFailed, "no spawner")
				break
			}
			got, err := spawn(req.Name)
			var we *wire.Error
			if errors.As(err, &we) {
				rep = wire.Reply{ID: req.ID, Error: we}
			} else if err != nil {
				fail(wire.CodeSpawnFailed, err.Error())
			} else {
				got.ID, got.OK = req.ID, true
				rep = got
			}
		case req.Op == wire.OpList:
			rep.Cells = []wire.CellInfo{{Key: "eye", Name: "eye", Parent: self, State: "running"}}
		default:
			fail(wire.CodeUnknownOp, string(req.Op))
		}
		if err := wire.WriteMessage(c, rep); err != nil {
			return
		}
		if rep.Error != nil && (rep.Error.Code == wire.CodeHelloRequired || rep.Error.Code == wire.CodeUnknownToken) {
			return
		}
	}
}

// spawnInProcess makes the fake root "launch" a cell by running Serve in a
// goroutine with its own session, and reply once the socket accepts.
func (r *fakeRoot) spawnInProcess(h Handler, opts ServeOptions) func(string) (wire.Reply, error) {
	var mu sync.Mutex
	running := map[string]bool{}
	return func(name string) (wire.Reply, error) {
		mu.Lock()
		defer mu.Unlock()
		sock := rundir.SocketPath(r.dir, name)
		if !running[name] {
			running[name] = true
			env := r.addCell(name)
			s, err := JoinWith(context.Background(), JoinOptions{Getenv: func(k string) string { return env[k] }})
			if err != nil {
				return wire.Reply{}, err
			}
			o := opts
			o.Session = s
			go func() {
				defer s.Close()
				Serve(context.Background(), h, o)
				mu.Lock()
				running[name] = false
				mu.Unlock()
			}()
		}
		if err := waitSocket(context.Background(), sock); err != nil {
			return wire.Reply{}, err
		}
		return wire.Reply{Key: name, Socket: sock}, nil
	}
}

// waitSocket polls until something accepts on path, as the root's probe does.
func waitSocket(ctx context.Context, path string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for {
		c, err := net.Dial("unix", path)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("socket %s not ready: %w", path, err)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// serveBG runs Serve in the background and returns its result channel.
func serveBG(ctx context.Context, h Handler, opts ServeOptions) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- Serve(ctx, h, opts) }()
	return ch
}

func waitErr(t *testing.T, ch <-chan error, within time.Duration) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(within):
		t.Fatalf("Serve did not return within %s", within)
		return nil
	}
}

func fileGone(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s still exists (lstat: %v)", path, err)
	}
}

var _ io.Closer = (*Conn)(nil)
