package podmanhelper

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cellproject/cell/internal/cellspec"
	"github.com/cellproject/cell/internal/testutil"
	"github.com/cellproject/cell/quota"
)

// The test binary is its own helper (go-plugin's pattern): with
// PODMANHELPER_TEST_SERVE set it serves a fake Podman on descriptor 3.
func TestMain(m *testing.M) {
	if os.Getenv("PODMANHELPER_TEST_SERVE") == "1" {
		f := os.NewFile(3, "root")
		conn, err := net.FileConn(f)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		err = Serve(context.Background(), conn, ServeOptions{Base: os.TempDir(), Open: func(ctx context.Context) (Podman, Info, error) {
			if msg := os.Getenv("PODMANHELPER_TEST_OPEN_FAILS"); msg != "" {
				return nil, Info{}, errors.New(msg)
			}
			return &fakePodman{}, Info{Socket: "/fake.sock", Version: "9.9.9"}, nil
		}})
		if err != nil {
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// fakePodman runs nothing: a container lives until stopped; one whose args
// say "stubborn" ignores the graceful stop.
type fakePodman struct {
	mu    sync.Mutex
	conts []*fakeContainer
}

func (p *fakePodman) Launch(ctx context.Context, spec cellspec.Spec) (Container, error) {
	if spec.Exec == "/fail" {
		return nil, errors.New("no such image")
	}
	c := &fakeContainer{name: "cell-" + spec.Session + "-" + spec.Key, stubborn: slices.Contains(spec.Args, "stubborn")}
	c.Exit, c.end = cellspec.NewExit()
	fmt.Fprintf(spec.Output, "hello from %s env=%s\n", spec.Key, strings.Join(spec.Env, ","))
	p.mu.Lock()
	p.conts = append(p.conts, c)
	p.mu.Unlock()
	return c, nil
}

func (p *fakePodman) EndSession(ctx context.Context, session string) error { return nil }

func (p *fakePodman) CollectDead(ctx context.Context, live func(string) bool) ([]string, error) {
	return []string{"0123456789abcdef"}, nil
}

func (p *fakePodman) Close(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conts {
		c.end("stopped with the backend")
	}
	return nil
}

type fakeContainer struct {
	*cellspec.Exit
	end      func(status string)
	name     string
	stubborn bool
}

func (c *fakeContainer) ID() string { return c.name }
func (c *fakeContainer) Stop(ctx context.Context) error {
	if !c.stubborn {
		c.end("exited 143")
		return nil
	}
	<-ctx.Done()
	c.end("exited 137")
	return nil
}

func newTestLauncher(t *testing.T, env ...string) *Launcher {
	t.Helper()
	var stderr testutil.SyncBuffer
	b := NewLauncher(Options{Helper: os.Args[0], Base: t.TempDir(), Env: append([]string{"PODMANHELPER_TEST_SERVE=1"}, env...), Stderr: &stderr})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := b.Close(ctx); err != nil {
			t.Errorf("close: %v", err)
		}
		if t.Failed() {
			t.Logf("helper's stderr:\n%s", stderr.String())
		}
	})
	return b
}

func testSpec(key string, out io.Writer, args ...string) cellspec.Spec {
	return cellspec.Spec{Name: key, Key: key, Session: "0123456789abcdef", SessionDir: "/run/x", Exec: "/bin/cell", Args: args,
		Backend: cellspec.Podman, Limits: quota.Limits{MemoryBytes: 1 << 20, CPU: 0.5, Pids: 3}, Env: []string{"CELL_NAME=" + key}, Output: out}
}

func waitContains(t *testing.T, b *testutil.SyncBuffer, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(b.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("output %q does not contain %q", b.String(), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestLaunchOutputStopClose(t *testing.T) {
	b := newTestLauncher(t)
	ctx := context.Background()
	info, err := b.Open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Version != "9.9.9" || info.Socket != "/fake.sock" {
		t.Errorf("info %+v", info)
	}
	var out testutil.SyncBuffer
	in, err := b.Launch(ctx, testSpec("eye", &out))
	if err != nil {
		t.Fatal(err)
	}
	if in.ID() != "cell-0123456789abcdef-eye" {
		t.Errorf("ID %q", in.ID())
	}
	waitContains(t, &out, "hello from eye env=CELL_NAME=eye\n")
	if err := in.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-in.Done():
	default:
		t.Fatal("Stop returned before Done")
	}
	if got := in.ExitStatus(); got != "exited 143" {
		t.Errorf("status %q", got)
	}
	if err := in.Stop(ctx); err != nil {
		t.Errorf("second stop: %v", err)
	}
	if _, err := b.Launch(ctx, cellspec.Spec{Key: "bad", Exec: "/fail"}); err == nil || !strings.Contains(err.Error(), "no such image") {
		t.Errorf("failed launch: %v, want the helper's error", err)
	}
	ids, err := b.CollectDead(ctx)
	if err != nil || !slices.Equal(ids, []string{"0123456789abcdef"}) {
		t.Errorf("collect: %v %v", ids, err)
	}
	h := b.cur
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := b.Close(cctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-h.proc.Done():
		if st := h.proc.ExitStatus(); st != "exited 0" {
			t.Errorf("helper ended %q, want exited 0 after a close", st)
		}
	default:
		t.Error("the helper runs on after Close")
	}
	if _, err := b.Launch(ctx, testSpec("late", nil)); !errors.Is(err, ErrClosed) {
		t.Errorf("launch after close: %v, want ErrClosed", err)
	}
}

func TestStopForcesWhenCtxEnds(t *testing.T) {
	b := newTestLauncher(t)
	in, err := b.Launch(context.Background(), testSpec("stubborn", nil, "stubborn"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := in.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if got := in.ExitStatus(); got != "exited 137" {
		t.Errorf("status %q, want the forced exit", got)
	}
}

func TestOpenFailureIsStickyAndSaysWhy(t *testing.T) {
	b := newTestLauncher(t, "PODMANHELPER_TEST_OPEN_FAILS=no podman service answered")
	_, err := b.Launch(context.Background(), testSpec("eye", nil))
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "no podman service answered") {
		t.Fatalf("launch: %v, want ErrUnavailable with the helper's reason", err)
	}
	_, err2 := b.Launch(context.Background(), testSpec("eye", nil))
	if !errors.Is(err2, ErrUnavailable) || b.cur != nil {
		t.Errorf("second launch: %v (helper %v), want the same failure without a new helper", err2, b.cur)
	}
}

func TestMissingOrBrokenHelper(t *testing.T) {
	for name, helper := range map[string]string{"missing": "/nonexistent/cellroot-podman", "broken": "/bin/true"} {
		t.Run(name, func(t *testing.T) {
			b := NewLauncher(Options{Helper: helper, Base: t.TempDir()})
			defer b.Close(context.Background())
			_, err := b.Launch(context.Background(), testSpec("eye", nil))
			if !errors.Is(err, ErrUnavailable) {
				t.Fatalf("launch: %v, want ErrUnavailable", err)
			}
			t.Logf("%s helper: %v", name, err)
		})
	}
}

func TestHelperDeathFinishesInstancesAndNextLaunchRestarts(t *testing.T) {
	b := newTestLauncher(t)
	in, err := b.Launch(context.Background(), testSpec("eye", nil))
	if err != nil {
		t.Fatal(err)
	}
	old := b.cur
	stopped, cancel := context.WithCancel(context.Background())
	cancel()
	old.proc.Stop(stopped) // SIGKILL
	select {
	case <-in.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the instance did not end with its helper")
	}
	if !strings.Contains(in.ExitStatus(), "helper ended") {
		t.Errorf("status %q", in.ExitStatus())
	}
	if err := in.Stop(context.Background()); err != nil {
		t.Errorf("stop after the helper died: %v", err)
	}
	in2, err := b.Launch(context.Background(), testSpec("eye", nil))
	if err != nil {
		t.Fatalf("launch after the helper died: %v", err)
	}
	if b.cur == old {
		t.Error("no new helper")
	}
	in2.Stop(context.Background())
}

// TestServerRefusesBadFrames: a root that breaks the protocol ends the
// connection, and Serve returns an error wrapping ErrFrame.
func TestServerRefusesBadFrames(t *testing.T) {
	open := func(ctx context.Context) (Podman, Info, error) { return &fakePodman{}, Info{}, nil }
	openFrame := frameBytes(kindOpen, 1, encodeU32(ProtocolVersion))
	cases := map[string][]byte{
		"launch before open": frameBytes(kindLaunch, 1, encodeSpec(testSpec("x", nil))),
		"oversize":           {0xff, 0xff, 0xff, 0xff},
		"unknown kind":       append(slices.Clone(openFrame), frameBytes(99, 2, nil)...),
		"trailing bytes":     append(slices.Clone(openFrame), frameBytes(kindStop, 2, []byte{0, 0, 0, 1, 7})...),
		"bad bool":           append(slices.Clone(openFrame), frameBytes(kindLaunch, 2, bytes.Repeat([]byte{0}, 50))...),
		"second open":        append(slices.Clone(openFrame), frameBytes(kindOpen, 2, encodeU32(1))...),
	}
	for name, input := range cases {
		t.Run(name, func(t *testing.T) {
			root, helper := net.Pipe()
			done := make(chan error, 1)
			go func() { done <- Serve(context.Background(), helper, ServeOptions{Open: open, Base: t.TempDir()}) }()
			go io.Copy(io.Discard, root)
			root.Write(input)
			select {
			case err := <-done:
				if !errors.Is(err, ErrFrame) {
					t.Errorf("Serve: %v, want ErrFrame", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Serve did not end on a bad frame")
			}
			root.Close()
		})
	}
}

func frameBytes(k kind, id uint32, payload []byte) []byte {
	var buf bytes.Buffer
	c := newChannel(struct {
		io.Reader
		io.Writer
	}{nil, &buf})
	if err := c.send(k, id, payload); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

func TestSpecRoundTrip(t *testing.T) {
	s := testSpec("eye", nil, "-a", "")
	s.Network, s.LimitsEnforced = true, true
	got, err := decodeSpec(encodeSpec(s))
	if err != nil {
		t.Fatal(err)
	}
	s.Output = nil
	if fmt.Sprint(got) != fmt.Sprint(s) {
		t.Errorf("round trip:\n got %+v\nwant %+v", got, s)
	}
	p := encodeSpec(s)
	for n := 0; n < len(p); n++ {
		if _, err := decodeSpec(p[:n]); !errors.Is(err, ErrFrame) {
			t.Fatalf("a spec cut to %d of %d bytes decoded: %v", n, len(p), err)
		}
	}
}

// FuzzRecv: any byte stream yields frames within the bound or an error,
// never a panic or an allocation over MaxFrame.
func FuzzRecv(f *testing.F) {
	f.Add(frameBytes(kindOpen, 1, encodeU32(1)))
	f.Add(frameBytes(kindLaunch, 7, encodeSpec(testSpec("eye", nil))))
	f.Add([]byte{0, 0, 0, 4, 1})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 1, 2, 3})
	f.Fuzz(func(t *testing.T, data []byte) {
		c := newChannel(struct {
			io.Reader
			io.Writer
		}{bytes.NewReader(data), io.Discard})
		for {
			fr, err := c.recv()
			if err != nil {
				return
			}
			if len(fr.payload) > MaxFrame-headerLen {
				t.Fatalf("payload of %d bytes", len(fr.payload))
			}
		}
	})
}

// FuzzDecodeSpec: a payload that decodes has exactly one encoding, so
// strictness holds: re-encoding gives the same bytes.
func FuzzDecodeSpec(f *testing.F) {
	f.Add(encodeSpec(testSpec("eye", nil, "x")))
	f.Add(encodeSpec(cellspec.Spec{}))
	f.Add([]byte{0, 0, 0, 9})
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := decodeSpec(data)
		if err != nil {
			if !errors.Is(err, ErrFrame) {
				t.Fatalf("error %v does not wrap ErrFrame", err)
			}
			return
		}
		if again := encodeSpec(s); !bytes.Equal(again, data) {
			t.Fatalf("decoded %+v re-encodes to %x, not %x", s, again, data)
		}
	})
}

// FuzzDecodeReply: replies and their results decode or fail cleanly.
func FuzzDecodeReply(f *testing.F) {
	f.Add(encodeReply(encodeInfo(Info{Socket: "/s", Version: "5"}), nil))
	f.Add(encodeReply(nil, errors.New("boom")))
	f.Add(encodeReply(encodeStrs([]string{"a", "b"}), nil))
	f.Fuzz(func(t *testing.T, data []byte) {
		result, msg, err := decodeReply(data)
		if err != nil || msg != "" {
			return
		}
		decodeInfo(result)
		decodeStrs(result, "sessions")
		decodeStr(result, "name")
	})
}
