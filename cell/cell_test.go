package cell

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cellproject/cell/internal/rundir"
	"github.com/cellproject/cell/wire"
)

// helperEnv makes the test binary act as a helper process (a cell, or a fake
// cellroot) instead of running tests.
const helperEnv = "CELL_TEST_HELPER"

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "":
		os.Exit(m.Run())
	case "serve":
		os.Exit(helperServe())
	case "cellroot":
		os.Exit(helperCellroot(false))
	case "synapse-serve":
		os.Exit(helperSynapseServe())
	case "cellroot-stuck":
		os.Exit(helperCellroot(true))
	default:
		fmt.Fprintln(os.Stderr, "unknown helper", os.Getenv(helperEnv))
		os.Exit(2)
	}
}

// helperServe is a cell in its own process: exit 0 when Serve returns nil,
// 3 for ErrAlreadyRunning, 1 otherwise.
func helperServe() int {
	err := Serve(context.Background(), echoHandler(), ServeOptions{})
	switch {
	case err == nil:
		return 0
	case errors.Is(err, ErrAlreadyRunning):
		fmt.Fprintln(os.Stderr, err)
		return 3
	default:
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
}

// helperCellroot answers the owner's hello on fd 3 like `cellroot serve
// --umbilical-fd 3`, then waits for EOF (or, stuck, ignores it).
func helperCellroot(stuck bool) int {
	f := os.NewFile(3, "umbilical")
	payload, err := wire.ReadFrame(f, wire.MaxFrame)
	if err != nil {
		return 1
	}
	req, err := wire.DecodeRequest(payload)
	if err != nil || req.Op != wire.OpHello || req.Role != wire.RoleOwner || req.Token != "" {
		return 1
	}
	if strings.Join(os.Args[1:], " ") != os.Getenv("WANT_ARGS") {
		wire.WriteMessage(f, wire.Reply{ID: req.ID, Error: &wire.Error{Code: wire.CodeBadFrame, Message: "args " + strings.Join(os.Args[1:], " ")}})
		return 1
	}
	wire.WriteMessage(f, wire.Reply{ID: req.ID, OK: true, Session: fakeSession, RuntimeDir: os.Getenv("RUNTIME_DIR"), Token: "owner-token"})
	if stuck {
		time.Sleep(time.Hour)
	}
	var b [1]byte
	f.Read(b[:])
	return 0
}

func echoHandler() Handler {
	return HandlerFunc(func(ctx context.Context, method string, body []byte) ([]byte, error) {
		switch method {
		case "echo":
			return body, nil
		case "fail":
			return nil, errors.New("it broke")
		default:
			return nil, UnknownMethod(method)
		}
	})
}

func TestJoinMissingEnv(t *testing.T) {
	_, err := JoinWith(context.Background(), JoinOptions{Getenv: func(k string) string {
		if k == EnvSession {
			return "x"
		}
		return ""
	}})
	if !errors.Is(err, ErrNotInSession) {
		t.Fatalf("err = %v, want ErrNotInSession", err)
	}
	for _, v := range []string{EnvRuntimeDir, EnvUmbilical, EnvToken} {
		if !strings.Contains(err.Error(), v) {
			t.Errorf("error %q does not name %s", err, v)
		}
	}
	if strings.Contains(err.Error(), EnvSession) {
		t.Errorf("error %q names %s, which is set", err, EnvSession)
	}
}

func TestJoinRoles(t *testing.T) {
	r := newFakeRoot(t)
	if got := r.join("eye").Self(); got != "eye" {
		t.Errorf("cell Self = %q, want eye", got)
	}
	owner := r.join("")
	if owner.Self() != "" {
		t.Errorf("owner Self = %q, want empty", owner.Self())
	}
	env := strings.Join(owner.Env(), "\n")
	for _, want := range []string{EnvSession + "=" + fakeSession, EnvRuntimeDir + "=" + r.dir, EnvToken + "=owner-token"} {
		if !strings.Contains(env, want) {
			t.Errorf("Env lacks %s:\n%s", want, env)
		}
	}
	if strings.Contains(env, EnvName) {
		t.Errorf("Env hands on %s:\n%s", EnvName, env)
	}
	cells, err := owner.List(context.Background())
	if err != nil || len(cells) != 1 || cells[0].Key != "eye" {
		t.Errorf("List = %v, %v", cells, err)
	}
}

func TestServeCalls(t *testing.T) {
	r := newFakeRoot(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := serveBG(ctx, echoHandler(), ServeOptions{Session: r.join("cone")})
	owner := r.join("")
	c := growReady(t, owner, "cone")
	defer c.Close()

	got, err := c.Call(ctx, "echo", []byte("red"))
	if err != nil || string(got) != "red" {
		t.Fatalf("echo = %q, %v", got, err)
	}
	got, err = c.Call(ctx, "echo", nil)
	if err != nil || len(got) != 0 {
		t.Fatalf("empty echo = %q, %v", got, err)
	}
	_, err = c.Call(ctx, "fail", nil)
	var re *RemoteError
	if !errors.As(err, &re) || re.Message != "it broke" || re.Method != "fail" || re.Code != "" {
		t.Fatalf("fail: err = %#v", err)
	}
	_, err = c.Call(ctx, "smell", nil)
	if !errors.Is(err, &RemoteError{Code: CodeUnknownMethod}) {
		t.Fatalf("unknown method: err = %v", err)
	}
	if _, err := c.Call(ctx, "echo", make([]byte, DefaultMaxBody+1)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversize body: err = %v", err)
	}
	big := bytes.Repeat([]byte{0xff}, DefaultMaxBody)
	if got, err := c.Call(ctx, "echo", big); err != nil || !bytes.Equal(got, big) {
		t.Fatalf("DefaultMaxBody echo: %d bytes, %v", len(got), err)
	}

	cancel()
	if err := waitErr(t, done, 5*time.Second); err != nil {
		t.Fatalf("Serve = %v, want nil after ctx end", err)
	}
	fileGone(t, rundir.SocketPath(r.dir, "cone"))
	fileGone(t, rundir.LockPath(r.dir, "cone"))
	if _, err := c.Call(context.Background(), "echo", nil); err == nil {
		t.Fatal("call after Serve returned succeeded")
	}
}

// growReady connects to a cell started with serveBG, waiting for its socket.
func growReady(t *testing.T, s *Session, key string) *Conn {
	t.Helper()
	if err := waitSocket(context.Background(), rundir.SocketPath(s.Dir(), key)); err != nil {
		t.Fatal(err)
	}
	c, err := s.Connect(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestPipelining(t *testing.T) {
	r := newFakeRoot(t)
	release := make(chan struct{})
	var slowStarted sync.WaitGroup
	slowStarted.Add(1)
	h := HandlerFunc(func(ctx context.Context, method string, body []byte) ([]byte, error) {
		if method == "slow" {
			slowStarted.Done()
			select {
			case <-release:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		return append([]byte(method+":"), body...), nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	serveBG(ctx, h, ServeOptions{Session: r.join("retina")})
	c := growReady(t, r.join(""), "retina")
	defer c.Close()

	// A slow call must not hold up the others on the same connection.
	slow := make(chan error, 1)
	go func() {
		got, err := c.Call(ctx, "slow", []byte("s"))
		if err == nil && string(got) != "slow:s" {
			err = fmt.Errorf("slow got %q", got)
		}
		slow <- err
	}()
	slowStarted.Wait()

	const n = 200
	inParallel(t, n, func(i int) error {
		want := fmt.Sprintf("fast:%d", i)
		got, err := c.Call(ctx, "fast", []byte(fmt.Sprint(i)))
		if err != nil || string(got) != want {
			return fmt.Errorf("call %d = %q, %v; want %q", i, got, err, want)
		}
		return nil
	})
	select {
	case err := <-slow:
		t.Fatalf("slow call finished before release: %v", err)
	default:
	}
	close(release)
	if err := <-slow; err != nil {
		t.Fatal(err)
	}
}

func TestCallCancelAndClose(t *testing.T) {
	r := newFakeRoot(t)
	block := make(chan struct{})
	defer close(block)
	h := HandlerFunc(func(ctx context.Context, method string, body []byte) ([]byte, error) {
		if method == "block" {
			<-block
		}
		return body, nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	serveBG(ctx, h, ServeOptions{Session: r.join("nose"), ShutdownTimeout: 100 * time.Millisecond})
	c := growReady(t, r.join(""), "nose")

	// A call abandoned by its ctx leaves the connection usable.
	cctx, ccancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer ccancel()
	if _, err := c.Call(cctx, "block", nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("blocked call: err = %v, want DeadlineExceeded", err)
	}
	if got, err := c.Call(ctx, "echo", []byte("still")); err != nil || string(got) != "still" {
		t.Fatalf("after cancel: %q, %v", got, err)
	}

	// Close fails calls in flight.
	pending := make(chan error, 1)
	go func() {
		_, err := c.Call(context.Background(), "block", nil)
		pending <- err
	}()
	time.Sleep(50 * time.Millisecond)
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-pending:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("pending call: err = %v, want ErrClosed", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("pending call not failed by Close")
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := c.Call(ctx, "echo", nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("call after Close: err = %v", err)
	}
}

func TestIdleExit(t *testing.T) {
	r := newFakeRoot(t)
	const idle = 200 * time.Millisecond
	done := serveBG(context.Background(), echoHandler(), ServeOptions{Session: r.join("eye"), IdleTimeout: idle})
	c := growReady(t, r.join(""), "eye")
	start := time.Now()

	// An open connection keeps the cell alive.
	time.Sleep(3 * idle)
	if _, err := c.Call(context.Background(), "echo", nil); err != nil {
		t.Fatalf("call after %s with the connection open: %v", time.Since(start), err)
	}
	c.Close()
	closed := time.Now()
	if err := waitErr(t, done, 5*time.Second); err != nil {
		t.Fatalf("Serve = %v, want nil on idle exit", err)
	}
	if d := time.Since(closed); d < idle-20*time.Millisecond {
		t.Errorf("exited %s after the last connection closed, before the idle timeout %s", d, idle)
	}
	fileGone(t, rundir.SocketPath(r.dir, "eye"))
	fileGone(t, rundir.LockPath(r.dir, "eye"))
}

func TestUmbilicalCloseExit(t *testing.T) {
	r := newFakeRoot(t)
	done := serveBG(context.Background(), echoHandler(), ServeOptions{Session: r.join("eye")})
	c := growReady(t, r.join(""), "eye")
	defer c.Close()
	r.close() // the root dies
	if err := waitErr(t, done, 5*time.Second); err != nil {
		t.Fatalf("Serve = %v, want nil when the umbilical closes", err)
	}
	fileGone(t, rundir.SocketPath(r.dir, "eye"))
	fileGone(t, rundir.LockPath(r.dir, "eye"))
}

// logRecorder is a slog handler that keeps every record.
type logRecorder struct {
	mu      sync.Mutex
	records []slog.Record
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	l.records = append(l.records, r.Clone())
	l.mu.Unlock()
	return nil
}
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logRecorder) WithGroup(string) slog.Handler      { return l }

func (l *logRecorder) all() []slog.Record {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]slog.Record(nil), l.records...)
}

func TestProbeIsQuiet(t *testing.T) {
	r := newFakeRoot(t)
	logs := &logRecorder{}
	ctx, cancel := context.WithCancel(context.Background())
	done := serveBG(ctx, echoHandler(), ServeOptions{Session: r.join("eye"), Logger: slog.New(logs)})
	sock := rundir.SocketPath(r.dir, "eye")
	for range 5 {
		if err := waitSocket(ctx, sock); err != nil { // connect, close
			t.Fatal(err)
		}
	}
	cancel()
	waitErr(t, done, 5*time.Second)
	stopping := 0
	for _, rec := range logs.all() {
		if rec.Level > slog.LevelInfo {
			t.Errorf("probe logged %s: %s", rec.Level, rec.Message)
		}
		rec.Attrs(func(a slog.Attr) bool {
			if rec.Message == "serve stopping" && a.Key == "why" && a.Value.String() == "context ended" {
				stopping++
			}
			return true
		})
	}
	if stopping != 1 {
		t.Errorf("no log line saying why Serve stopped: %v", logs.all())
	}
}

// rawFrame is a frame header (and payload) as a hostile client would write it.
func rawFrame(size uint32, kind frameKind, flags uint8, nameLen uint16, id uint64, payload string) []byte {
	b := make([]byte, headerLen, headerLen+len(payload))
	header{size: size, kind: kind, flags: flags, nameLen: nameLen, id: id}.put(b)
	return append(b, payload...)
}

func TestMalformedRequestClosesConnection(t *testing.T) {
	r := newFakeRoot(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	serveBG(ctx, echoHandler(), ServeOptions{Session: r.join("eye"), MaxBody: 1 << 20})
	sock := rundir.SocketPath(r.dir, "eye")
	if err := waitSocket(ctx, sock); err != nil {
		t.Fatal(err)
	}
	good := preface{minVer: 1, maxVer: 1, maxBody: 1 << 20}.bytes()
	cases := map[string][]byte{
		"not a preface":       []byte(`{"id":1,"op":"hello","v":1}`),
		"unknown kind":        rawFrame(0, 99, 0, 0, 1, ""),
		"reply from a client": rawFrame(0, kindReply, 0, 0, 1, ""),
		"id 0 request":        rawFrame(4, kindRequest, 0, 4, 0, "echo"),
		"no method":           rawFrame(0, kindRequest, 0, 0, 1, ""),
		"name past payload":   rawFrame(2, kindRequest, 0, 4, 1, "ec"),
		"oversize body":       rawFrame(4+(1<<20)+1, kindRequest, 0, 4, 1, "echo"),
		"data for no stream":  rawFrame(1, kindData, 0, 0, 7, "x"),
		"goaway from client":  rawFrame(0, kindGoAway, 0, 0, 0, ""),
		"unknown flags":       rawFrame(4, kindRequest, 0x80, 4, 1, "echo"),
	}
	for name, bad := range cases {
		nc, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		if name != "not a preface" {
			nc.Write(good[:])
			var rep [prefaceLen]byte
			if _, err := io.ReadFull(nc, rep[:]); err != nil {
				t.Fatalf("%s: server preface: %v", name, err)
			}
		}
		nc.Write(bad)
		nc.SetReadDeadline(time.Now().Add(2 * time.Second))
		var b [1]byte
		// Closed with bytes unread, the kernel may answer with a reset.
		if _, err := nc.Read(b[:]); !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("%s: read = %v, want the connection closed", name, err)
		}
		nc.Close()
	}
	// The cell keeps serving others.
	c := growReady(t, r.join(""), "eye")
	defer c.Close()
	if _, err := c.Call(ctx, "echo", nil); err != nil {
		t.Fatal(err)
	}
}

func TestGrow(t *testing.T) {
	r := newFakeRoot(t)
	var served atomic.Int32
	r.spawn = r.spawnInProcess(HandlerFunc(func(ctx context.Context, method string, body []byte) ([]byte, error) {
		served.Add(1)
		return []byte("red"), nil
	}), ServeOptions{IdleTimeout: time.Minute})
	owner := r.join("")
	ctx := context.Background()

	// Many goroutines growing one cell at once all reach the one instance.
	const n = 20
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := owner.Grow(ctx, "cone")
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			if got, err := c.Call(ctx, "colour", nil); err != nil || string(got) != "red" {
				t.Errorf("colour = %q, %v", got, err)
			}
		}()
	}
	wg.Wait()
	if served.Load() != n {
		t.Errorf("served %d calls, want %d", served.Load(), n)
	}
	r.mu.Lock()
	spawns := r.spawns
	r.mu.Unlock()
	if spawns < 1 || spawns > n {
		t.Errorf("%d spawn requests", spawns)
	}
	// Once it runs, Grow connects without asking the root.
	c, err := owner.Grow(ctx, "cone")
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	r.mu.Lock()
	if r.spawns != spawns {
		t.Errorf("Grow of a running cell asked the root to spawn")
	}
	r.mu.Unlock()
}

func TestGrowDenied(t *testing.T) {
	r := newFakeRoot(t)
	r.spawn = func(name string) (wire.Reply, error) {
		return wire.Reply{}, &wire.Error{Code: wire.CodeDenied, Reason: "edge_denied", Message: "eye may not spawn " + name}
	}
	eye := r.join("eye")
	_, err := eye.Grow(context.Background(), "nose")
	if !wire.IsCode(err, wire.CodeDenied) {
		t.Fatalf("err = %v, want a denial", err)
	}
	var we *wire.Error
	if !errors.As(err, &we) || we.Reason != "edge_denied" || !strings.Contains(err.Error(), "nose") {
		t.Fatalf("err = %v, want reason edge_denied naming nose", err)
	}
	// The request connection stays usable after a denial.
	if _, err := eye.List(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := eye.Grow(context.Background(), "../x"); err == nil {
		t.Fatal("Grow of a bad name succeeded")
	}
}

func TestSessionRedialsAfterCancel(t *testing.T) {
	r := newFakeRoot(t)
	r.spawn = func(name string) (wire.Reply, error) {
		time.Sleep(200 * time.Millisecond)
		return wire.Reply{}, errors.New("too slow")
	}
	owner := r.join("")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := owner.Spawn(ctx, "eye"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Spawn = %v, want DeadlineExceeded", err)
	}
	if _, err := owner.List(context.Background()); err != nil {
		t.Fatalf("List after an abandoned Spawn: %v", err)
	}
	owner.Close()
	if _, err := owner.List(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("List after Close: %v", err)
	}
}

// TestLockAcrossProcesses runs one instance of a cell as a separate process
// and checks that a second one, here, refuses with ErrAlreadyRunning and
// leaves the first one's socket alone; then the reverse.
func TestLockAcrossProcesses(t *testing.T) {
	r := newFakeRoot(t)
	env := r.addCell("retina")
	cmd := helperCmd(t, "serve", env)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	sock := rundir.SocketPath(r.dir, "retina")
	if err := waitSocket(context.Background(), sock); err != nil {
		t.Fatal(err, stderr.String())
	}

	err := Serve(context.Background(), echoHandler(), ServeOptions{Session: r.join("retina")})
	if !errors.Is(err, ErrAlreadyRunning) {
		t.Fatalf("second Serve = %v, want ErrAlreadyRunning", err)
	}
	c := growReady(t, r.join(""), "retina")
	if _, err := c.Call(context.Background(), "echo", nil); err != nil {
		t.Fatalf("first instance after the refused second: %v", err)
	}
	c.Close()

	// And the reverse: this process serves, a second process refuses.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r.close() // the helper's umbilical closes: it exits 0
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("helper: %v\n%s", err, stderr.String())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("helper did not exit when its umbilical closed")
	}
	fileGone(t, sock)

	r2 := newFakeRoot(t)
	done := serveBG(ctx, echoHandler(), ServeOptions{Session: r2.join("retina")})
	if err := waitSocket(ctx, rundir.SocketPath(r2.dir, "retina")); err != nil {
		t.Fatal(err)
	}
	cmd = helperCmd(t, "serve", r2.addCell("retina"))
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Fatalf("second process: %v, want exit 3\n%s", err, out)
	}
	cancel()
	if err := waitErr(t, done, 5*time.Second); err != nil {
		t.Fatal(err)
	}
}

func helperCmd(t *testing.T, mode string, env map[string]string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+mode)
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	return cmd
}

func TestStart(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(helperEnv, "cellroot")
	t.Setenv("RUNTIME_DIR", dir)
	t.Setenv("WANT_ARGS", "serve --umbilical-fd 3 --allowlist /x/allow.toml --verbose")
	var stderr bytes.Buffer
	s, err := Start(context.Background(), OwnerOptions{
		Cellroot:  os.Args[0],
		Allowlist: "/x/allow.toml",
		Args:      []string{"--verbose"},
		Stderr:    &stderr,
	})
	if err != nil {
		t.Fatalf("Start: %v\n%s", err, stderr.String())
	}
	if s.ID() != fakeSession || s.Dir() != dir || s.Self() != "" {
		t.Errorf("session %q dir %q self %q", s.ID(), s.Dir(), s.Self())
	}
	env := strings.Join(s.Env(), "\n")
	if !strings.Contains(env, EnvUmbilical+"="+filepath.Join(dir, rundir.UmbilicalName)) || !strings.Contains(env, EnvToken+"=owner-token") {
		t.Errorf("Env:\n%s", env)
	}
	start := time.Now()
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v\n%s", err, stderr.String())
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("Close took %s", time.Since(start))
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestStartStuckRootIsKilled(t *testing.T) {
	t.Setenv(helperEnv, "cellroot-stuck")
	t.Setenv("RUNTIME_DIR", t.TempDir())
	t.Setenv("WANT_ARGS", "serve --umbilical-fd 3")
	s, err := Start(context.Background(), OwnerOptions{Cellroot: os.Args[0], StopTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	pid := s.owner.cmd.Process.Pid
	start := time.Now()
	if err := s.Close(); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("Close = %v, want a kill report", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Close took %s", d)
	}
	if s.owner.cmd.ProcessState == nil || s.owner.cmd.ProcessState.Pid() != pid {
		t.Error("cellroot not reaped")
	}
}

func TestStartFailsCleanly(t *testing.T) {
	t.Setenv(helperEnv, "cellroot")
	t.Setenv("WANT_ARGS", "something else")
	_, err := Start(context.Background(), OwnerOptions{Cellroot: os.Args[0], Stderr: new(bytes.Buffer)})
	if !wire.IsCode(err, wire.CodeBadFrame) {
		t.Fatalf("Start = %v, want the root's error reply", err)
	}
}

func TestCellrootNotFound(t *testing.T) {
	t.Setenv(EnvCellroot, "")
	t.Setenv("PATH", t.TempDir())
	_, err := Start(context.Background(), OwnerOptions{})
	if !errors.Is(err, ErrCellrootNotFound) {
		t.Fatalf("err = %v, want ErrCellrootNotFound", err)
	}
	for _, want := range []string{"OwnerOptions.Cellroot", "$CELLROOT", "$PATH"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
}
