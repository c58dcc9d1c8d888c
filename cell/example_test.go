package cell_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/cellproject/cell/cell"
)

// The owner app starts a session root, grows a cell by name and calls it.
// (Not run here: it needs cellroot and an allowlist that grants "retina".)
func ExampleStart() {
	ctx := context.Background()
	s, err := cell.Start(ctx, cell.OwnerOptions{Logger: slog.Default()})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return
	}
	defer s.Close() // ends the session: the root tears every cell down

	retina, err := s.Grow(ctx, "retina")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return
	}
	defer retina.Close()
	seen, err := retina.Call(ctx, "sense", nil)
	fmt.Println(string(seen), err)
}

// A cell serves requests until the root, its idleness or a signal ends it.
// (Not run here: it runs only as a cell the root launched.)
func ExampleServe() {
	h := cell.HandlerFunc(func(ctx context.Context, method string, body []byte) ([]byte, error) {
		if method != "colour" {
			return nil, cell.UnknownMethod(method)
		}
		return []byte("red"), nil
	})
	err := cell.Serve(context.Background(), h, cell.ServeOptions{Junction: true, MaxConcurrent: 64})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
}

// Telling the allowlist's refusal from other failures, without the wire
// package. (Not run here: it needs a session.)
func ExampleIsDenied() {
	ctx := context.Background()
	s, err := cell.Join(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return
	}
	defer s.Close()
	nose, err := s.Grow(ctx, "nose")
	switch reason, denied := cell.DenialReason(err); {
	case err == nil:
		nose.Close()
	case denied:
		fmt.Println("the allowlist refuses nose:", reason)
	default:
		fmt.Println("nose failed:", err)
	}
}

// serveHere serves h on a socket of its own, as a cell would, for the
// runnable examples below.
func serveHere(h cell.Handler, opts cell.ServeOptions) (path string, stop func()) {
	dir, _ := os.MkdirTemp("", "cellexample")
	path = filepath.Join(dir, "cone.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { cell.ServeListener(ctx, ln, h, opts); close(done) }()
	return path, func() { cancel(); <-done; os.RemoveAll(dir) }
}

// Calls over any established connection, here a Unix socket outside a
// session.
func ExampleNewConn() {
	path, stop := serveHere(cell.HandlerFunc(func(ctx context.Context, method string, body []byte) ([]byte, error) {
		return bytes.ToUpper(body), nil
	}), cell.ServeOptions{})
	defer stop()

	nc, err := net.Dial("unix", path)
	if err != nil {
		panic(err)
	}
	c, err := cell.NewConn(context.Background(), "cone", nc)
	if err != nil {
		panic(err)
	}
	defer c.Close()
	out, err := c.Call(context.Background(), "shout", []byte("red"))
	fmt.Println(string(out), err)
	// Output: RED <nil>
}

// A gap junction: the same calls over shared memory, when both sides agree.
func ExampleWithJunction() {
	path, stop := serveHere(cell.HandlerFunc(func(ctx context.Context, method string, body []byte) ([]byte, error) {
		return body, nil
	}), cell.ServeOptions{Junction: true})
	defer stop()

	nc, err := net.Dial("unix", path)
	if err != nil {
		panic(err)
	}
	c, err := cell.NewConn(context.Background(), "cone", nc, cell.WithJunction())
	if err != nil {
		panic(err)
	}
	defer c.Close()
	out, err := c.Call(context.Background(), "echo", []byte("over shared memory"))
	fmt.Println(string(out), err, c.Junction())
	// Output: over shared memory <nil> true
}

// lineCounter takes streamed requests.
type lineCounter struct{}

func (lineCounter) Handle(ctx context.Context, method string, body []byte) ([]byte, error) {
	return nil, cell.UnknownMethod(method)
}

func (lineCounter) HandleStream(ctx context.Context, method string, body io.Reader) ([]byte, error) {
	b, err := io.ReadAll(body)
	return []byte(fmt.Sprint(strings.Count(string(b), "\n"))), err
}

// A body of any size, streamed in chunks.
func ExampleConn_CallStream() {
	path, stop := serveHere(lineCounter{}, cell.ServeOptions{})
	defer stop()

	nc, err := net.Dial("unix", path)
	if err != nil {
		panic(err)
	}
	c, err := cell.NewConn(context.Background(), "counter", nc)
	if err != nil {
		panic(err)
	}
	defer c.Close()
	out, err := c.CallStream(context.Background(), "count", strings.NewReader(strings.Repeat("a line\n", 1<<20)))
	fmt.Println(string(out), err)
	// Output: 1048576 <nil>
}
