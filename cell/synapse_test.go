package cell

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// synapseHandler serves the methods the synapse tests use.
type synapseHandler struct {
	seen    atomic.Int64 // notifications received
	order   []int        // notify arguments in arrival order (MaxConcurrent 1)
	mu      sync.Mutex
	release chan struct{} // "hold" waits for it
	tag     string        // which server answered
}

func (h *synapseHandler) Handle(ctx context.Context, method string, body []byte) ([]byte, error) {
	switch method {
	case "echo":
		return body, nil
	case "tag":
		return []byte(h.tag), nil
	case "note":
		n, _ := strconv.Atoi(string(body))
		h.mu.Lock()
		h.order = append(h.order, n)
		h.mu.Unlock()
		h.seen.Add(1)
		return nil, nil
	case "hold":
		select {
		case <-h.release:
			return []byte("held"), nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	case "sleep":
		d, _ := time.ParseDuration(string(body))
		time.Sleep(d)
		return []byte("slept"), nil
	}
	return nil, UnknownMethod(method)
}

func (h *synapseHandler) HandleStream(ctx context.Context, method string, body io.Reader) ([]byte, error) {
	sum := sha256.New()
	n, err := io.Copy(sum, body)
	if err != nil {
		return nil, err
	}
	return []byte(fmt.Sprintf("%d %x", n, sum.Sum(nil))), nil
}

// listenTemp listens on a fresh socket path.
func listenTemp(t *testing.T) (*net.UnixListener, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "c.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	return ln, path
}

// serveTemp serves h on a fresh socket until the test ends.
func serveTemp(t *testing.T, h Handler, opts ServeOptions) string {
	t.Helper()
	ln, path := listenTemp(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ServeListener(ctx, ln, h, opts) }()
	t.Cleanup(func() {
		cancel()
		if err := waitErr(t, done, 10*time.Second); err != nil {
			t.Errorf("ServeListener = %v", err)
		}
	})
	return path
}

// dialTemp connects to path with a Conn that redials the same path.
func dialTemp(t *testing.T, path string, opts ...DialOption) *Conn {
	t.Helper()
	c, err := newRedialConn(context.Background(), "c", func(ctx context.Context) (net.Conn, error) {
		return dialSocket(ctx, "c", path)
	}, newDialConfig(opts))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// transports runs f over the socket and over a gap junction.
func transports(t *testing.T, f func(t *testing.T, junction bool)) {
	for _, j := range []bool{false, true} {
		name := "socket"
		if j {
			name = "junction"
		}
		t.Run(name, func(t *testing.T) { f(t, j) })
	}
}

func dialOpts(junction bool) []DialOption {
	if junction {
		return []DialOption{WithJunction()}
	}
	return nil
}

func TestSynapseJunctionNegotiated(t *testing.T) {
	h := &synapseHandler{}
	on := dialTemp(t, serveTemp(t, h, ServeOptions{Junction: true}), WithJunction())
	if !on.Junction() {
		t.Fatal("the server offers junctions and the client asked, but the connection stayed on the socket")
	}
	// Fallback: a server that does not offer junctions keeps the socket.
	off := dialTemp(t, serveTemp(t, h, ServeOptions{}), WithJunction())
	if off.Junction() {
		t.Fatal("junction although the server does not offer one")
	}
	for _, c := range []*Conn{on, off} {
		if got, err := c.Call(context.Background(), "echo", []byte("red")); err != nil || string(got) != "red" {
			t.Fatalf("echo (junction %v) = %q, %v", c.Junction(), got, err)
		}
	}
	// Not asked: no junction, even where offered.
	if plain := dialTemp(t, serveTemp(t, h, ServeOptions{Junction: true})); plain.Junction() {
		t.Fatal("junction without WithJunction")
	}
}

func TestSynapseOrderAndNotify(t *testing.T) {
	transports(t, func(t *testing.T, j bool) {
		h := &synapseHandler{}
		c := dialTemp(t, serveTemp(t, h, ServeOptions{Junction: true, MaxConcurrent: 1}), dialOpts(j)...)
		ctx := context.Background()
		const n = 2000
		for i := range n {
			if err := c.Notify(ctx, "note", []byte(strconv.Itoa(i))); err != nil {
				t.Fatal(err)
			}
		}
		// A call after the notifications is answered after them, in order.
		if _, err := c.Call(ctx, "echo", nil); err != nil {
			t.Fatal(err)
		}
		h.mu.Lock()
		defer h.mu.Unlock()
		if len(h.order) != n {
			t.Fatalf("%d notifications handled before the call's reply, want %d", len(h.order), n)
		}
		for i, v := range h.order {
			if v != i {
				t.Fatalf("notification %d handled as number %d: out of order", v, i)
			}
		}
	})
}

func TestSynapseLargeBodies(t *testing.T) {
	transports(t, func(t *testing.T, j bool) {
		c := dialTemp(t, serveTemp(t, &synapseHandler{}, ServeOptions{Junction: true}), dialOpts(j)...)
		ctx := context.Background()
		big := make([]byte, DefaultMaxBody)
		for i := range big {
			big[i] = byte(i * 7)
		}
		got, err := c.Call(ctx, "echo", big)
		if err != nil || !bytes.Equal(got, big) {
			t.Fatalf("16 MiB echo: %d bytes, %v", len(got), err)
		}
		if _, err := c.Call(ctx, "echo", make([]byte, DefaultMaxBody+1)); !errors.Is(err, ErrTooLarge) {
			t.Fatalf("body over the bound: %v, want ErrTooLarge", err)
		}
		// The connection is still good after the refusal (nothing was sent).
		if got, err := c.Call(ctx, "echo", []byte("after")); err != nil || string(got) != "after" {
			t.Fatalf("echo after refusal = %q, %v", got, err)
		}
	})
}

// TestSynapseConcurrentLargeBodies: large calls from several goroutines,
// whose writes and replies fill the socket both ways at once; someone must
// keep reading the replies while the calls still write, or neither side
// moves. The cell handles in line (MaxConcurrent 1), so that only the
// client can keep things going.
func TestSynapseConcurrentLargeBodies(t *testing.T) {
	transports(t, func(t *testing.T, j bool) {
		c := dialTemp(t, serveTemp(t, &synapseHandler{}, ServeOptions{Junction: true, MaxConcurrent: 1}), dialOpts(j)...)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		inParallel(t, 4, func(g int) error {
			for i := range 3 {
				want := bytes.Repeat([]byte{byte(g*3 + i)}, 4<<20+g)
				got, err := c.Call(ctx, "echo", want)
				if err != nil || !bytes.Equal(got, want) {
					return fmt.Errorf("goroutine %d, call %d: %d bytes back, %v", g, i, len(got), err)
				}
			}
			return nil
		})
	})
}

// TestSynapseRecycledBodies: with request bodies recycled by the cell (and,
// with MaxConcurrent 1, small ones lent from its read buffer) and replies
// by the caller, bodies of every pooled size, many at once, each come back
// whole and unmixed: no buffer is reused while a frame is still read into
// it or written from it. Streams go between them: an in-line reader that
// keeps its slot across a batch gives it up for a stream's handler.
func TestSynapseRecycledBodies(t *testing.T) {
	for _, mc := range []int{0, 1} {
		t.Run(fmt.Sprintf("MaxConcurrent=%d", mc), func(t *testing.T) {
			transports(t, func(t *testing.T, j bool) {
				opts := ServeOptions{Junction: true, RecycleBodies: true, MaxConcurrent: mc}
				c := dialTemp(t, serveTemp(t, &synapseHandler{}, opts), dialOpts(j)...)
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				sizes := []int{100, 1, minPooledBody, 40 << 10, 200, readBuffer + 1, readChunk, readChunk + 3}
				inParallel(t, 4, func(g int) error {
					for i := range 32 {
						want := bytes.Repeat([]byte{byte(g*32 + i)}, sizes[(g+i)%len(sizes)])
						if g == 0 && i%4 == 0 {
							sum := sha256.Sum256(want)
							got, err := c.CallStream(ctx, "sum", bytes.NewReader(want))
							if w := fmt.Sprintf("%d %x", len(want), sum); err != nil || string(got) != w {
								return fmt.Errorf("stream %d = %q, %v; want %q", i, got, err, w)
							}
							continue
						}
						got, err := c.Call(ctx, "echo", want)
						if err != nil || !bytes.Equal(got, want) {
							return fmt.Errorf("goroutine %d, call %d: %d of %d bytes back, %v", g, i, len(got), len(want), err)
						}
						Recycle(got)
					}
					return nil
				})
			})
		})
	}
}

func TestRecycleClasses(t *testing.T) {
	for _, n := range []int{0, 1, minPooledBody - 1, minPooledBody, minPooledBody + 1, 3 << 20, 1 << maxPooledShift, 1<<maxPooledShift + 1} {
		for range 3 {
			b := newBody(n)
			if len(b) != n {
				t.Fatalf("newBody(%d) has length %d", n, len(b))
			}
			if n >= minPooledBody && n <= 1<<maxPooledShift && cap(b) >= 2*n {
				t.Fatalf("newBody(%d) has capacity %d, over twice the length", n, cap(b))
			}
			Recycle(b)
			Recycle(make([]byte, 1, n+1)) // capacities off the powers of two
		}
	}
}

func TestSynapseBoundAnnounced(t *testing.T) {
	// The server accepts 8 KiB bodies: the client refuses more before sending.
	c := dialTemp(t, serveTemp(t, &synapseHandler{}, ServeOptions{MaxBody: 8192}))
	if _, err := c.Call(context.Background(), "echo", make([]byte, 8193)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("over the server's bound: %v", err)
	}
	// The client accepts 8 KiB replies: the server sends an error instead.
	c = dialTemp(t, serveTemp(t, &synapseHandler{}, ServeOptions{}), WithMaxBody(8192))
	_, err := c.Call(context.Background(), "echo", make([]byte, 9000))
	var re *RemoteError
	if !errors.As(err, &re) {
		t.Fatalf("reply over the client's bound: %v, want a RemoteError", err)
	}
}

func TestSynapseStreams(t *testing.T) {
	transports(t, func(t *testing.T, j bool) {
		c := dialTemp(t, serveTemp(t, &synapseHandler{}, ServeOptions{Junction: true}), dialOpts(j)...)
		for _, size := range []int{0, 5, streamChunk, 40<<20 + 3} {
			data := make([]byte, size)
			for i := range data {
				data[i] = byte(i>>8) ^ byte(i)
			}
			sum := sha256.Sum256(data)
			got, err := c.CallStream(context.Background(), "sum", bytes.NewReader(data))
			want := fmt.Sprintf("%d %s", size, hex.EncodeToString(sum[:]))
			if err != nil || string(got) != want {
				t.Fatalf("stream of %d bytes = %q, %v; want %q", size, got, err, want)
			}
		}
	})
	// A handler that takes no streams says so.
	c := dialTemp(t, serveTemp(t, echoHandler(), ServeOptions{}))
	_, err := c.CallStream(context.Background(), "echo", bytes.NewReader([]byte("x")))
	if !errors.Is(err, &RemoteError{Code: CodeNoStreams}) {
		t.Fatalf("stream to a plain handler: %v", err)
	}
	if got, err := c.Call(context.Background(), "echo", []byte("ok")); err != nil || string(got) != "ok" {
		t.Fatalf("call after refused stream = %q, %v", got, err)
	}
}

// TestSynapseStreamBound: a stream whose handler waits for chunks holds no
// handler slot, so calls on the same connection still run with
// MaxConcurrent 1; a second stream past the bound is refused at once, and
// the first completes.
func TestSynapseStreamBound(t *testing.T) {
	transports(t, func(t *testing.T, j bool) {
		c := dialTemp(t, serveTemp(t, &synapseHandler{}, ServeOptions{Junction: true, MaxConcurrent: 1}), dialOpts(j)...)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		pr, pw := io.Pipe()
		first := make([]byte, streamChunk) // one whole chunk: the request goes out with it
		sum := sha256.New()
		sum.Write(first)
		sum.Write([]byte("tail"))
		done := make(chan error, 1)
		go func() {
			got, err := c.CallStream(ctx, "sum", pr)
			if want := fmt.Sprintf("%d %x", len(first)+4, sum.Sum(nil)); err == nil && string(got) != want {
				err = fmt.Errorf("first stream = %q, want %q", got, want)
			}
			done <- err
		}()
		if _, err := pw.Write(first); err != nil {
			t.Fatal(err)
		}
		// The stream is open and its handler waits for the rest. A call gets
		// through beside it (a handler slot held by the stream would stop it).
		if got, err := c.Call(ctx, "echo", []byte("beside")); err != nil || string(got) != "beside" {
			t.Fatalf("call beside an open stream = %q, %v", got, err)
		}
		_, err := c.CallStream(ctx, "sum", bytes.NewReader(make([]byte, 3*streamChunk)))
		if !errors.Is(err, &RemoteError{Code: CodeTooManyStreams}) {
			t.Fatalf("stream past the bound: %v, want %s", err, CodeTooManyStreams)
		}
		pw.Write([]byte("tail"))
		pw.Close()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if got, err := c.Call(ctx, "echo", []byte("after")); err != nil || string(got) != "after" {
			t.Fatalf("call after the streams = %q, %v", got, err)
		}
	})
}

func TestSynapseConcurrentCalls(t *testing.T) {
	transports(t, func(t *testing.T, j bool) {
		c := dialTemp(t, serveTemp(t, &synapseHandler{}, ServeOptions{Junction: true, MaxConcurrent: 8}), dialOpts(j)...)
		inParallel(t, 64, func(g int) error {
			for i := range 200 {
				want := fmt.Sprintf("%d/%d/%s", g, i, bytes.Repeat([]byte{'x'}, (g*i)%5000))
				got, err := c.Call(context.Background(), "echo", []byte(want))
				if err != nil || string(got) != want {
					return fmt.Errorf("goroutine %d call %d: %d bytes, %v", g, i, len(got), err)
				}
			}
			return nil
		})
	})
}

// TestSynapseLongCallAmongMany: a call left waiting while hundreds of later
// ones come and go (ids past the table of calls in flight wrap onto its
// slot) still gets its own reply, and so does each of the others.
func TestSynapseLongCallAmongMany(t *testing.T) {
	transports(t, func(t *testing.T, j bool) {
		h := &synapseHandler{release: make(chan struct{})}
		// Slots for the four held calls, and one for the rest.
		c := dialTemp(t, serveTemp(t, h, ServeOptions{Junction: true, MaxConcurrent: 5}), dialOpts(j)...)
		held := make(chan error, 1)
		go func() {
			got, err := c.Call(context.Background(), "hold", nil)
			if err == nil && string(got) != "held" {
				err = fmt.Errorf("the held call got %q", got)
			}
			held <- err
		}()
		// Some of these are in flight beside another long one, so that a
		// slot is taken when its next id comes round too.
		for i := range 3 * pendingSlots {
			if i%pendingSlots == 1 {
				go c.Call(context.Background(), "hold", nil)
			}
			want := strconv.Itoa(i)
			if got, err := c.Call(context.Background(), "echo", []byte(want)); err != nil || string(got) != want {
				t.Fatalf("call %d: %q, %v", i, got, err)
			}
		}
		close(h.release)
		if err := waitErr(t, held, 10*time.Second); err != nil {
			t.Fatal(err)
		}
	})
}

// TestSynapseReplyNotHeldBehindHandler: two requests arriving in one read,
// a quick one and one whose handler waits until its caller has the quick
// one's reply. The quick reply, held back to go out with the next, must not
// wait for that handler, whether the cell hands the reading on or runs
// every handler in line (MaxConcurrent 1).
func TestSynapseReplyNotHeldBehindHandler(t *testing.T) {
	for _, mc := range []int{1, 4} {
		t.Run(fmt.Sprintf("MaxConcurrent=%d", mc), func(t *testing.T) {
			h := &synapseHandler{release: make(chan struct{})}
			nc, err := net.Dial("unix", serveTemp(t, h, ServeOptions{MaxConcurrent: mc}))
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			pre := preface{minVer: 1, maxVer: 1, maxBody: 1 << 20}.bytes()
			nc.Write(pre[:])
			if _, err := io.ReadFull(nc, pre[:]); err != nil {
				t.Fatalf("server preface: %v", err)
			}
			both := append(rawFrame(6, kindRequest, 0, 4, 1, "echohi"), rawFrame(4, kindRequest, 0, 4, 2, "hold")...)
			if _, err := nc.Write(both); err != nil {
				t.Fatal(err)
			}
			nc.SetReadDeadline(time.Now().Add(10 * time.Second))
			got := make([]byte, headerLen+2)
			_, err = io.ReadFull(nc, got)
			close(h.release)
			if err != nil {
				t.Fatalf("the quick reply waited for the handler after it: %v", err)
			}
			if hd, _ := parseHeader(got[:headerLen], 1<<20); hd.kind != kindReply || hd.id != 1 || string(got[headerLen:]) != "hi" {
				t.Fatalf("first reply %+v %q, want id 1 \"hi\"", hd, got[headerLen:])
			}
		})
	}
}

func TestSynapseBoundedConcurrency(t *testing.T) {
	h := &synapseHandler{release: make(chan struct{})}
	var running, peak atomic.Int32
	bounded := HandlerFunc(func(ctx context.Context, method string, body []byte) ([]byte, error) {
		n := running.Add(1)
		defer running.Add(-1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		return h.Handle(ctx, method, body)
	})
	path := serveTemp(t, bounded, ServeOptions{MaxConcurrent: 3})
	var wg sync.WaitGroup
	for range 3 { // several connections share the one bound
		c := dialTemp(t, path)
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c.Call(context.Background(), "hold", nil)
			}()
		}
	}
	// Wait until the bound is reached, then give it time to be exceeded.
	for running.Load() < 3 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	close(h.release)
	wg.Wait()
	if p := peak.Load(); p != 3 {
		t.Fatalf("peak handlers running = %d, want the bound 3", p)
	}
}

// TestSynapseDrain: a server that stops sends GOAWAY, finishes the calls in
// flight, and the client's new calls go to the next instance on the same
// listener (what the root hands over in an upgrade): no call fails.
func TestSynapseDrain(t *testing.T) {
	transports(t, func(t *testing.T, j bool) {
		ln, path := listenTemp(t)
		ln.SetUnlinkOnClose(false)
		f, err := ln.File()
		if err != nil {
			t.Fatal(err)
		}
		next, err := net.FileListener(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		old := &synapseHandler{tag: "old", release: make(chan struct{})}
		oldCtx, stopOld := context.WithCancel(context.Background())
		oldDone := make(chan error, 1)
		go func() {
			oldDone <- ServeListener(oldCtx, ln, old, ServeOptions{Junction: true, ShutdownTimeout: 20 * time.Second})
		}()

		c := dialTemp(t, path, dialOpts(j)...)
		ctx := context.Background()
		if got, err := c.Call(ctx, "tag", nil); err != nil || string(got) != "old" {
			t.Fatalf("before the drain: %q, %v", got, err)
		}
		held := make(chan error, 1)
		go func() {
			got, err := c.Call(ctx, "hold", nil)
			if err == nil && string(got) != "held" {
				err = fmt.Errorf("hold = %q", got)
			}
			held <- err
		}()
		// Calls keep going through the drain, from another goroutine.
		stopCalls := make(chan struct{})
		callErrs := make(chan error, 1)
		var answered sync.Map
		go func() {
			defer close(callErrs)
			for {
				select {
				case <-stopCalls:
					return
				default:
				}
				got, err := c.Call(ctx, "tag", nil)
				if err != nil {
					callErrs <- err
					return
				}
				answered.Store(string(got), true)
			}
		}()
		time.Sleep(20 * time.Millisecond)
		stopOld() // the old instance is told to go (SIGTERM in a cell)
		newCtx, stopNew := context.WithCancel(context.Background())
		newDone := make(chan error, 1)
		go func() {
			newDone <- ServeListener(newCtx, next, &synapseHandler{tag: "new"}, ServeOptions{Junction: true})
		}()

		// The old one waits for its call in flight.
		select {
		case err := <-oldDone:
			t.Fatalf("old Serve returned (%v) with a call in flight", err)
		case <-time.After(100 * time.Millisecond):
		}
		close(old.release)
		if err := <-held; err != nil {
			t.Fatalf("the call in flight across the drain failed: %v", err)
		}
		if err := waitErr(t, oldDone, 10*time.Second); err != nil {
			t.Fatalf("old Serve = %v", err)
		}
		for {
			if _, ok := answered.Load("new"); ok {
				break
			}
			select {
			case err := <-callErrs:
				t.Fatalf("a call failed across the drain: %v", err)
			case <-time.After(time.Millisecond):
			}
		}
		close(stopCalls)
		if err, ok := <-callErrs; ok && err != nil {
			t.Fatalf("a call failed across the drain: %v", err)
		}
		if c.Junction() != j {
			t.Errorf("after the redial junction = %v, want %v", c.Junction(), j)
		}
		c.Close()
		stopNew()
		if err := waitErr(t, newDone, 10*time.Second); err != nil {
			t.Fatalf("new Serve = %v", err)
		}
	})
}

// TestSynapseDrainGrace: a client that never leaves is cut off when the
// grace period ends, and the handler's ctx is cancelled.
func TestSynapseDrainGrace(t *testing.T) {
	ln, _ := listenTemp(t)
	h := &synapseHandler{release: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ServeListener(ctx, ln, h, ServeOptions{ShutdownTimeout: 200 * time.Millisecond}) }()
	nc, err := net.Dial("unix", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewConn(context.Background(), "c", nc)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	res := make(chan error, 1)
	go func() { _, err := c.Call(context.Background(), "hold", nil); res <- err }()
	time.Sleep(20 * time.Millisecond)
	cancel()
	if err := waitErr(t, done, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := <-res; err == nil {
		t.Fatal("a call held past the grace period succeeded")
	}
}

// TestSynapsePeerDeath: the serving process dies in the middle of a call;
// the call fails at once (not at its ctx's end), on both transports.
func TestSynapsePeerDeath(t *testing.T) {
	transports(t, func(t *testing.T, j bool) {
		path := filepath.Join(t.TempDir(), "c.sock")
		cmd := helperCmd(t, "synapse-serve", map[string]string{"SOCK": path})
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer cmd.Wait()
		defer cmd.Process.Kill()
		if err := waitSocket(context.Background(), path); err != nil {
			t.Fatal(err)
		}
		c := dialTemp(t, path, dialOpts(j)...)
		if c.Junction() != j {
			t.Fatalf("junction = %v, want %v", c.Junction(), j)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		res := make(chan error, 2)
		for range 2 {
			go func() { _, err := c.Call(ctx, "hold", nil); res <- err }()
		}
		time.Sleep(50 * time.Millisecond)
		cmd.Process.Kill()
		for range 2 {
			err := <-res
			if err == nil || errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("call to a dead peer = %v, want a prompt failure", err)
			}
		}
		if _, err := c.Call(ctx, "echo", nil); err == nil {
			t.Fatal("call on a connection to a dead peer succeeded")
		}
	})
}

// helperSynapseServe serves synapseHandler on $SOCK, with junctions, until
// killed.
func helperSynapseServe() int {
	ln, err := net.Listen("unix", os.Getenv("SOCK"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := ServeListener(context.Background(), ln, &synapseHandler{release: make(chan struct{})}, ServeOptions{Junction: true}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// TestSynapseVersionRefused: a client asking only for a version the server
// lacks gets ErrVersion; a server answering with another version likewise.
func TestSynapseVersionRefused(t *testing.T) {
	path := serveTemp(t, echoHandler(), ServeOptions{})
	nc, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	p := preface{minVer: 2, maxVer: 9}.bytes()
	nc.Write(p[:])
	var b [prefaceLen]byte
	if _, err := io.ReadFull(nc, b[:]); err != nil {
		t.Fatal(err)
	}
	got, err := parsePreface(b[:])
	if err != nil || got.maxVer != 0 {
		t.Fatalf("refusal preface = %+v, %v; want version 0", got, err)
	}

	a, z := net.Pipe()
	go func() {
		io.ReadFull(z, b[:])
		p := preface{minVer: 2, maxVer: 2}.bytes()
		z.Write(p[:])
	}()
	if _, err := NewConn(context.Background(), "x", a); !errors.Is(err, ErrVersion) {
		t.Fatalf("NewConn against version 2 = %v, want ErrVersion", err)
	}
}

// TestSynapseGoAwayWithoutRedial: a NewConn cannot redial; after GOAWAY its
// new calls fail with ErrClosed instead of looping.
func TestSynapseGoAwayWithoutRedial(t *testing.T) {
	ln, path := listenTemp(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	h := &synapseHandler{release: make(chan struct{})}
	go func() { done <- ServeListener(ctx, ln, h, ServeOptions{}) }()
	nc, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewConn(context.Background(), "c", nc)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	held := make(chan error, 1)
	go func() { _, err := c.Call(context.Background(), "hold", nil); held <- err }()
	time.Sleep(20 * time.Millisecond)
	cancel() // GOAWAY; the held call keeps the connection open
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := c.Call(context.Background(), "echo", nil)
		if errors.Is(err, ErrClosed) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("calls after GOAWAY: %v, want ErrClosed", err)
		}
		time.Sleep(time.Millisecond)
	}
	close(h.release)
	if err := <-held; err != nil {
		t.Fatalf("the call in flight: %v", err)
	}
	if err := waitErr(t, done, 5*time.Second); err != nil {
		t.Fatal(err)
	}
}

// A call whose ctx ends gives up waiting, whether it reads the link itself
// or waits behind another call that does, and the link stays usable for
// the calls left.
func TestSynapseCallCancel(t *testing.T) {
	transports(t, func(t *testing.T, j bool) {
		h := &synapseHandler{release: make(chan struct{})}
		c := dialTemp(t, serveTemp(t, h, ServeOptions{Junction: true}), dialOpts(j)...)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		held := make(chan error, 1)
		go func() {
			got, err := c.Call(ctx, "hold", nil)
			if err == nil && string(got) != "held" {
				err = fmt.Errorf("reply %q", got)
			}
			held <- err
		}()
		for range 3 {
			short, stop := context.WithTimeout(ctx, 20*time.Millisecond)
			_, err := c.Call(short, "hold", nil)
			stop()
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("call with an ended ctx = %v, want DeadlineExceeded", err)
			}
		}
		close(h.release)
		if err := <-held; err != nil {
			t.Fatalf("the call left waiting: %v", err)
		}
		if got, err := c.Call(ctx, "echo", []byte("still")); err != nil || string(got) != "still" {
			t.Fatalf("after the cancelled calls: %q, %v", got, err)
		}
	})
}

// An idle junction link costs the client no CPU: once no call waits, the
// link's watcher sleeps on the ring's eventfd, and the next call still
// takes the reading back from it.
func TestSynapseJunctionIdleSleeps(t *testing.T) {
	c := dialTemp(t, serveTemp(t, &synapseHandler{}, ServeOptions{Junction: true}), WithJunction())
	ctx := context.Background()
	for i := range 3 {
		if _, err := c.Call(ctx, "echo", []byte("x")); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		c.mu.Lock()
		jr := c.cur.Load().ch.r.(junctionReader)
		c.mu.Unlock()
		for !jr.j.ReadAsleep() {
			time.Sleep(time.Millisecond)
		}
	}
}

// An idle server's hand-off watch stops looking (it costs no CPU), and a
// handler that starts in line wakes it: a slow handler is then still handed
// off, which TestPipelining shows on a watch parked since the start.
func TestHandoffWatchParks(t *testing.T) {
	srv := newServer(&synapseHandler{}, ServeOptions{}.withDefaults())
	go srv.watch.run()
	defer srv.watch.close()
	for i := range 3 {
		srv.watch.busy()
		if srv.watch.parked.Load() {
			t.Fatalf("round %d: the watch stayed parked after a handler began", i)
		}
		for !srv.watch.parked.Load() {
			time.Sleep(time.Millisecond)
		}
	}
}

// inParallel runs f(0) to f(n-1) at once and reports each error they return.
func inParallel(t *testing.T, n int, f func(g int) error) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for g := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(g); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// stalledClient opens a connection (on a gap junction when junction is
// set) that sends n requests for method and then reads nothing: no reply
// it is sent leaves the server's side. It closes at the test's end.
func stalledClient(t *testing.T, path string, junction bool, method string, n int) {
	t.Helper()
	nc, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	p := preface{minVer: 1, maxVer: 1, maxBody: DefaultMaxBody}
	if junction {
		p.features = featJunction
	}
	b := p.bytes()
	var rep [prefaceLen]byte
	if _, err := nc.Write(b[:]); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(nc, rep[:]); err != nil {
		t.Fatal(err)
	}
	write := func(b []byte) error { _, err := nc.Write(b); return err }
	if junction {
		jo, err := newJunctionOffer()
		if err != nil {
			t.Fatal(err)
		}
		if ok, err := jo.send(nc); err != nil || !ok {
			t.Fatalf("junction offer: %v, %v", ok, err)
		}
		j, err := jo.o.Open()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { j.Close() })
		write = func(b []byte) error { return j.WriteBuffers([][]byte{b}) }
	}
	for i := range n {
		if err := write(rawFrame(uint32(len(method)), kindRequest, 0, uint16(len(method)), uint64(i+1), method)); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSynapseStalledClientStarvesNoOne: a client that sends requests and
// never reads the replies must not keep the cell from serving others. Its
// replies wait for it, but not in the handler slots every connection
// shares; and the cell reads its requests only as it takes replies, so it
// holds a bounded number of them.
func TestSynapseStalledClientStarvesNoOne(t *testing.T) {
	const slots = 4
	big := make([]byte, 4<<20) // more than a socket's buffer or a ring holds
	transports(t, func(t *testing.T, junction bool) {
		var stalled atomic.Int64
		h := HandlerFunc(func(ctx context.Context, method string, body []byte) ([]byte, error) {
			if method == "big" {
				stalled.Add(1)
				return big, nil
			}
			return body, nil
		})
		path := serveTemp(t, h, ServeOptions{MaxConcurrent: slots, Junction: true})
		sent := 4 * maxBacklog
		stalledClient(t, path, junction, "big", sent)
		// The attack is armed: the stalled client's handlers ran, as many
		// as there are slots, so every slot would be held by a reply that
		// cannot be written if replies kept their slots.
		for stalled.Load() < slots {
			time.Sleep(time.Millisecond)
		}
		// Let the cell read what it will of the stalled connection.
		for last := int64(-1); last != stalled.Load(); {
			last = stalled.Load()
			time.Sleep(100 * time.Millisecond)
		}
		if n := stalled.Load(); n > maxBacklog+slots+1 {
			t.Errorf("the cell ran %d of the stalled client's %d requests; at most %d replies may wait for it", n, sent, maxBacklog+slots+1)
		}

		c := dialTemp(t, path, dialOpts(junction)...)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		inParallel(t, 4*slots, func(g int) error {
			for i := range 20 {
				want := fmt.Sprintf("%d.%d", g, i)
				got, err := c.Call(ctx, "echo", []byte(want))
				if err != nil || string(got) != want {
					return fmt.Errorf("call %s beside the stalled client = %q, %v", want, got, err)
				}
			}
			return nil
		})
	})
}
