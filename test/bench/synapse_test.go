package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/cellproject/cell/cell"
	"github.com/cellproject/cell/internal/junction"
)

// The synapse figures: every subject beside its baseline, measured in
// rounds that alternate between them (one b.N iteration is one round of
// each), against servers in a child process, as between two cells. Each
// benchmark reports per-message figures as metrics; run.sh prints them side
// by side.

// synapseServerEnv makes the benchmark binary the servers' process.
const synapseServerEnv = "CELL_BENCH_SYNAPSE_SERVER"

func init() {
	if dir := os.Getenv(synapseServerEnv); dir != "" {
		if err := serveSynapse(dir); err != nil {
			fmt.Fprintln(os.Stderr, "synapse bench server:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
}

// The servers' sockets in the child's dir.
const (
	sockRaw      = "raw.sock"      // echoes the byte stream back
	sockRawRing  = "ring.sock"     // a raw junction: 'e' echoes, 's' sinks
	sockSDK      = "sdk.sock"      // cell.ServeListener, default options, junctions
	sockSDKQuick = "sdkquick.sock" // MaxConcurrent 1 and RecycleBodies: handlers on the reader, bodies lent
	sockRecycle  = "recycle.sock"  // RecycleBodies: request bodies reused
	sockGRPC     = "grpc.sock"
)

const msgSize = 64

// serveSynapse runs every server until stdin closes (the parent's end).
func serveSynapse(dir string) error {
	ctx, cancel := context.WithCancel(context.Background())
	go func() { io.Copy(io.Discard, os.Stdin); cancel() }()
	listen := func(name string) (net.Listener, error) { return net.Listen("unix", filepath.Join(dir, name)) }
	echo := cell.HandlerFunc(func(_ context.Context, _ string, body []byte) ([]byte, error) { return body, nil })
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	run := func(f func() error) {
		wg.Add(1)
		go func() { defer wg.Done(); errs <- f() }()
	}
	for name, opts := range map[string]cell.ServeOptions{
		sockSDK:      {Junction: true},
		sockSDKQuick: {Junction: true, MaxConcurrent: 1, RecycleBodies: true},
		sockRecycle:  {RecycleBodies: true},
	} {
		ln, err := listen(name)
		if err != nil {
			return err
		}
		run(func() error { return cell.ServeListener(ctx, ln, echo, opts) })
	}
	raw, err := listen(sockRaw)
	if err != nil {
		return err
	}
	go acceptEach(raw, func(c net.Conn) {
		buf := make([]byte, 256<<10)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			if _, err := c.Write(buf[:n]); err != nil {
				return
			}
		}
	})
	ring, err := listen(sockRawRing)
	if err != nil {
		return err
	}
	go acceptEach(ring, serveRawRing)
	gl, err := listen(sockGRPC)
	if err != nil {
		return err
	}
	gs := grpc.NewServer(grpc.ForceServerCodec(rawCodec{}))
	gs.RegisterService(&echoService, struct{}{})
	go gs.Serve(gl)
	<-ctx.Done()
	raw.Close()
	ring.Close()
	gs.Stop()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func acceptEach(ln net.Listener, f func(net.Conn)) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() { defer c.Close(); f(c) }()
	}
}

// serveRawRing: a mode byte, then a junction offer; 'e' echoes 64-byte
// messages, 's' reads an 8-byte count of messages, sinks them, answers 1 byte.
func serveRawRing(c net.Conn) {
	var mode [1]byte
	if _, err := io.ReadFull(c, mode[:]); err != nil {
		return
	}
	j, err := junction.Accept(c.(*net.UnixConn))
	if err != nil {
		return
	}
	defer j.Close()
	go func() { io.Copy(io.Discard, c); j.Close() }()
	buf := make([]byte, msgSize)
	switch mode[0] {
	case 'e':
		for {
			if _, err := io.ReadFull(j, buf); err != nil {
				return
			}
			if err := j.WriteBuffers([][]byte{buf}); err != nil {
				return
			}
		}
	case 's':
		var cnt [8]byte
		big := make([]byte, 64<<10)
		for {
			if _, err := io.ReadFull(j, cnt[:]); err != nil {
				return
			}
			left := int(binary.LittleEndian.Uint64(cnt[:])) * msgSize
			for left > 0 {
				n, err := j.Read(big[:min(left, len(big))])
				if err != nil {
					return
				}
				left -= n
			}
			if err := j.WriteBuffers([][]byte{{1}}); err != nil {
				return
			}
		}
	}
}

// rawCodec carries []byte as they are: gRPC with no protobuf cost, its
// best case.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(data []byte, v any) error {
	*(v.(*[]byte)) = append([]byte(nil), data...)
	return nil
}
func (rawCodec) Name() string { return "raw" }

var echoService = grpc.ServiceDesc{
	ServiceName: "bench.Echo",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{{MethodName: "Echo", Handler: func(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
		var in []byte
		if err := dec(&in); err != nil {
			return nil, err
		}
		return &in, nil
	}}},
}

// synapseServers starts the child process and waits for its sockets.
func synapseServers(b *testing.B) string {
	b.Helper()
	dir, err := os.MkdirTemp("", "cellsyn")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), synapseServerEnv+"="+dir)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { stdin.Close(); cmd.Wait() })
	deadline := time.Now().Add(10 * time.Second)
	for _, s := range []string{sockRaw, sockRawRing, sockSDK, sockSDKQuick, sockRecycle, sockGRPC} {
		for {
			if c, err := net.Dial("unix", filepath.Join(dir, s)); err == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("bench server socket %s never appeared", s)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	return dir
}

func sdkConn(b *testing.B, dir, sock string, opts ...cell.DialOption) *cell.Conn {
	b.Helper()
	nc, err := net.Dial("unix", filepath.Join(dir, sock))
	if err != nil {
		b.Fatal(err)
	}
	c, err := cell.NewConn(context.Background(), "bench", nc, opts...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return c
}

func grpcConn(b *testing.B, dir string) *grpc.ClientConn {
	b.Helper()
	gc, err := grpc.NewClient("unix://"+filepath.Join(dir, sockGRPC),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{}), grpc.MaxCallRecvMsgSize(64<<20), grpc.MaxCallSendMsgSize(64<<20)))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { gc.Close() })
	return gc
}

func rawConn(b *testing.B, dir string) net.Conn {
	b.Helper()
	c, err := net.Dial("unix", filepath.Join(dir, sockRaw))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return c
}

func rawJunction(b *testing.B, dir string, mode byte) *junction.Junction {
	b.Helper()
	c, err := net.Dial("unix", filepath.Join(dir, sockRawRing))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	if _, err := c.Write([]byte{mode}); err != nil {
		b.Fatal(err)
	}
	o, err := junction.NewOffer(junction.DefaultRing)
	if err != nil {
		b.Fatal(err)
	}
	if err := o.Send(c.(*net.UnixConn)); err != nil {
		b.Fatal(err)
	}
	j, err := o.Open()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { j.Close() })
	return j
}

// subject is one side of a figure: run n operations, moving size bytes each.
type subject struct {
	name string
	n    int
	run  func(n int) error
	ns   time.Duration
	ops  int
}

// interleave runs every subject once per b.N iteration, alternating, and
// reports each one's ns per operation (and MB/s when size > 0).
func interleave(b *testing.B, size int, subjects ...*subject) {
	for _, s := range subjects { // warm up: connections, buffers, JIT-free but page faults
		if err := s.run(max(s.n/10, 1)); err != nil {
			b.Fatalf("%s: %v", s.name, err)
		}
	}
	b.ResetTimer()
	for range b.N {
		for _, s := range subjects {
			start := time.Now()
			if err := s.run(s.n); err != nil {
				b.Fatalf("%s: %v", s.name, err)
			}
			s.ns += time.Since(start)
			s.ops += s.n
		}
	}
	b.StopTimer()
	for _, s := range subjects {
		per := float64(s.ns.Nanoseconds()) / float64(s.ops)
		b.ReportMetric(per, s.name+"-ns/op")
		b.ReportMetric(1e9/per, s.name+"-msg/s")
		if size > 0 {
			b.ReportMetric(float64(size)*1e3/per, s.name+"-MB/s")
		}
	}
	b.ReportMetric(0, "ns/op")
}

// rawPingPong: one message out, one back, n times.
func rawPingPong(c net.Conn, size int) func(int) error {
	out, in := make([]byte, size), make([]byte, size)
	return func(n int) error {
		for range n {
			if _, err := c.Write(out); err != nil {
				return err
			}
			if _, err := io.ReadFull(c, in); err != nil {
				return err
			}
		}
		return nil
	}
}

// rawWindow: n messages through the echo with at most window in flight.
func rawWindow(c net.Conn, size, window int) func(int) error {
	out := make([]byte, size)
	return func(n int) error {
		slots := make(chan struct{}, window)
		done := make(chan error, 1)
		go func() {
			in := make([]byte, size)
			for range n {
				if _, err := io.ReadFull(c, in); err != nil {
					done <- err
					return
				}
				<-slots
			}
			done <- nil
		}()
		for range n {
			slots <- struct{}{}
			if _, err := c.Write(out); err != nil {
				return err
			}
		}
		return <-done
	}
}

// parallel: n calls of call spread over window goroutines.
func parallel(window int, call func() error) func(int) error {
	return func(n int) error {
		var wg sync.WaitGroup
		errs := make(chan error, window)
		for g := range window {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := g; i < n; i += window {
					if err := call(); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		return <-errs
	}
}

func sdkCall(c *cell.Conn, body []byte) func() error {
	return func() error {
		got, err := c.Call(context.Background(), "echo", body)
		if err == nil && len(got) != len(body) {
			err = errors.New("short echo")
		}
		return err
	}
}

// recycleCall is sdkCall handing each reply back for reuse (cell.Recycle).
func recycleCall(c *cell.Conn, body []byte) func() error {
	return func() error {
		got, err := c.Call(context.Background(), "echo", body)
		if err == nil && len(got) != len(body) {
			err = errors.New("short echo")
		}
		cell.Recycle(got)
		return err
	}
}

func grpcCall(gc *grpc.ClientConn, body []byte) func() error {
	return func() error {
		var out []byte
		err := gc.Invoke(context.Background(), "/bench.Echo/Echo", &body, &out)
		if err == nil && len(out) != len(body) {
			err = errors.New("short echo")
		}
		return err
	}
}

func times(f func() error) func(int) error {
	return func(n int) error {
		for range n {
			if err := f(); err != nil {
				return err
			}
		}
		return nil
	}
}

// BenchmarkSynapseRTT: one 64-byte call at a time. raw is a Go UDS
// ping-pong; sdk the default server; quick the server with MaxConcurrent 1
// and RecycleBodies.
func BenchmarkSynapseRTT(b *testing.B) {
	dir := synapseServers(b)
	body := make([]byte, msgSize)
	interleave(b, 0,
		&subject{name: "raw", n: 2000, run: rawPingPong(rawConn(b, dir), msgSize)},
		&subject{name: "sdk", n: 2000, run: times(sdkCall(sdkConn(b, dir, sockSDK), body))},
		&subject{name: "quick", n: 2000, run: times(sdkCall(sdkConn(b, dir, sockSDKQuick), body))},
		&subject{name: "grpc", n: 500, run: times(grpcCall(grpcConn(b, dir), body))},
	)
}

// BenchmarkSynapsePipelined: 64-byte calls with 64 in flight on one
// connection.
func BenchmarkSynapsePipelined(b *testing.B) {
	dir := synapseServers(b)
	body := make([]byte, msgSize)
	const window = 64
	interleave(b, 0,
		&subject{name: "raw", n: 50000, run: rawWindow(rawConn(b, dir), msgSize, window)},
		&subject{name: "sdk", n: 50000, run: parallel(window, sdkCall(sdkConn(b, dir, sockSDK), body))},
		&subject{name: "grpc", n: 5000, run: parallel(window, grpcCall(grpcConn(b, dir), body))},
	)
}

// bulk: size-byte echoes, 4 in flight, beside raw UDS. Without recycled,
// the SDK with fresh bodies and gRPC; with it, the SDK recycling bodies on
// both sides, alone with raw in processes of their own: the pools are per
// process, and beside a subject that takes pooled bodies and never hands
// them back (the SDK with fresh bodies) a recycling program would be
// measured with the pools drained, which no program that recycles sees.
func bulk(b *testing.B, size, n int, recycled bool) {
	dir := synapseServers(b)
	body := make([]byte, size)
	subjects := []*subject{{name: "raw", n: n, run: rawWindow(rawConn(b, dir), size, bulkWindow)}}
	if recycled {
		subjects = append(subjects, &subject{name: "recycle", n: n, run: parallel(bulkWindow, recycleCall(sdkConn(b, dir, sockRecycle), body))})
	} else {
		subjects = append(subjects,
			&subject{name: "sdk", n: n, run: parallel(bulkWindow, sdkCall(sdkConn(b, dir, sockSDK), body))},
			&subject{name: "grpc", n: max(n/4, 1), run: parallel(bulkWindow, grpcCall(grpcConn(b, dir), body))})
	}
	interleave(b, size, subjects...)
}

const bulkWindow = 4

// BenchmarkSynapseBulk4K: 4 KiB echoes, 4 in flight.
func BenchmarkSynapseBulk4K(b *testing.B) { bulk(b, 4<<10, 5000, false) }

// BenchmarkSynapseBulk4KRecycled: the same, bodies recycled.
func BenchmarkSynapseBulk4KRecycled(b *testing.B) { bulk(b, 4<<10, 5000, true) }

// BenchmarkSynapseBulk1M: 1 MiB echoes, 4 in flight.
func BenchmarkSynapseBulk1M(b *testing.B) { bulk(b, 1<<20, 40, false) }

// BenchmarkSynapseBulk1MRecycled: the same, bodies recycled.
func BenchmarkSynapseBulk1MRecycled(b *testing.B) { bulk(b, 1<<20, 40, true) }

// BenchmarkSynapseJunctionRTT: one 64-byte call at a time over a gap
// junction (quick server), beside a raw ping-pong on the same rings.
func BenchmarkSynapseJunctionRTT(b *testing.B) {
	dir := synapseServers(b)
	j := rawJunction(b, dir, 'e')
	out, in := make([]byte, msgSize), make([]byte, msgSize)
	c := sdkConn(b, dir, sockSDKQuick, cell.WithJunction())
	if !c.Junction() {
		b.Fatal("the SDK connection stayed on the socket")
	}
	interleave(b, 0,
		&subject{name: "rawring", n: 20000, run: func(n int) error {
			for range n {
				if err := j.WriteBuffers([][]byte{out}); err != nil {
					return err
				}
				if _, err := io.ReadFull(j, in); err != nil {
					return err
				}
			}
			return nil
		}},
		&subject{name: "junction", n: 20000, run: times(sdkCall(c, make([]byte, msgSize)))},
	)
}

// BenchmarkSynapseJunctionOneWay: 64-byte one-way messages (Notify) over a
// gap junction, beside 64-byte writes to the raw ring with a reader that
// only counts.
func BenchmarkSynapseJunctionOneWay(b *testing.B) {
	dir := synapseServers(b)
	j := rawJunction(b, dir, 's')
	msg := make([]byte, msgSize)
	c := sdkConn(b, dir, sockSDKQuick, cell.WithJunction())
	if !c.Junction() {
		b.Fatal("the SDK connection stayed on the socket")
	}
	ctx := context.Background()
	interleave(b, 0,
		&subject{name: "rawring", n: 200000, run: func(n int) error {
			var cnt [8]byte
			binary.LittleEndian.PutUint64(cnt[:], uint64(n))
			if err := j.WriteBuffers([][]byte{cnt[:]}); err != nil {
				return err
			}
			for range n {
				if err := j.WriteBuffers([][]byte{msg}); err != nil {
					return err
				}
			}
			var ack [1]byte
			_, err := io.ReadFull(j, ack[:])
			return err
		}},
		&subject{name: "junction", n: 200000, run: func(n int) error {
			for range n {
				if err := c.Notify(ctx, "echo", msg); err != nil {
					return err
				}
			}
			// The quick server handles in order: this reply follows them all.
			_, err := c.Call(ctx, "echo", nil)
			return err
		}},
	)
}
