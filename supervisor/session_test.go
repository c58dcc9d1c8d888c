package supervisor

import (
	"context"
	"errors"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cellproject/cell/allowlist"
	"github.com/cellproject/cell/internal/audit"
	"github.com/cellproject/cell/internal/cellspec"
	"github.com/cellproject/cell/internal/process"
	"github.com/cellproject/cell/policy"
	"github.com/cellproject/cell/wire"
)

type recorder struct {
	mu     sync.Mutex
	events []audit.Event
}

func (r *recorder) Record(e audit.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

func (r *recorder) spawns() []audit.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []audit.Event
	for _, e := range r.events {
		if e.Kind == audit.KindSpawn {
			out = append(out, e)
		}
	}
	return out
}

// startInProcess runs a session in this process with the process backend,
// talking to it through a real socketpair as its owner.
func startInProcess(t *testing.T, allowlistText string, vet func(context.Context, cellspec.Spec) error) (*wire.Client, *recorder) {
	t.Helper()
	w := processWiring(t, allowlistText)
	w.Vet = vet
	return startWired(t, context.Background(), func(context.Context) Wiring { return w })
}

// processWiring is the wiring of an allowlist whose cells run on the
// process backend.
func processWiring(t *testing.T, allowlistText string) Wiring {
	t.Helper()
	al, err := allowlist.Parse("test.toml", []byte(allowlistText))
	if err != nil {
		t.Fatal(err)
	}
	return Wiring{
		Allowlist:    al,
		Launchers:    map[cellspec.Backend]Launcher{cellspec.Process: Adapt(process.NewLauncher())},
		Capabilities: map[cellspec.Backend]policy.Capability{cellspec.Process: {Available: true}},
	}
}

// startWired is startInProcess with the session's Wire of the caller's
// making, serving until ctx ends (as on a signal) or the owner goes; it
// returns once the owner's hello was answered.
func startWired(t *testing.T, ctx context.Context, wireFn func(context.Context) Wiring) (*wire.Client, *recorder) {
	t.Helper()
	rec := &recorder{}
	s, err := New(Config{
		Base:         t.TempDir(),
		Wire:         wireFn,
		Audit:        rec,
		ReadyTimeout: 2 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conns := make([]net.Conn, 2)
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "umbilical")
		conns[i], err = net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan struct{})
	go func() {
		s.Serve(ctx, conns[1])
		close(done)
	}()
	c := wire.NewClient(conns[0])
	t.Cleanup(func() {
		c.Close()
		<-done
		if _, err := os.Stat(s.Dir()); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("session dir left after teardown: %v", err)
		}
	})
	helloCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Hello(helloCtx, wire.RoleOwner, ""); err != nil {
		t.Fatal(err)
	}
	return c, rec
}

const trueAllowlist = `
version = 1
[cell.quick]
exec = "/bin/true"
backend = "process"
`

func TestVetFailureDeniesAndAudits(t *testing.T) {
	c, rec := startInProcess(t, trueAllowlist, func(context.Context, cellspec.Spec) error {
		return errors.New("sha256 mismatch")
	})
	_, err := c.Spawn(context.Background(), "quick", "")
	var werr *wire.Error
	if !errors.As(err, &werr) || werr.Code != wire.CodeDenied || werr.Reason != string(policy.Unverified) {
		t.Fatalf("spawn err = %v, want denied (unverified)", err)
	}
	ev := rec.spawns()
	if len(ev) != 1 || ev[0].Allow || ev[0].Code != string(policy.Unverified) {
		t.Fatalf("audit = %+v, want one unverified denial", ev)
	}
}

func TestVetPassThenLaunch(t *testing.T) {
	vetted := 0
	c, rec := startInProcess(t, trueAllowlist, func(_ context.Context, spec cellspec.Spec) error {
		vetted++
		if spec.Exec != "/bin/true" {
			t.Errorf("vetted %q", spec.Exec)
		}
		return nil
	})
	// /bin/true exits at once, never binding a socket: the spawn fails,
	// with the reason, after an allow.
	_, err := c.Spawn(context.Background(), "quick", "")
	if !wire.IsCode(err, wire.CodeSpawnFailed) {
		t.Fatalf("spawn err = %v, want spawn_failed", err)
	}
	if vetted != 1 {
		t.Fatalf("vetted %d times", vetted)
	}
	if ev := rec.spawns(); len(ev) != 1 || !ev[0].Allow {
		t.Fatalf("audit = %+v, want one allow", ev)
	}
}

// heldWire is a Wire that returns w only once released, and tells when
// the session called it.
type heldWire struct {
	w        Wiring
	called   chan struct{}
	released chan struct{}
	once     sync.Once
}

func newHeldWire(w Wiring) *heldWire {
	return &heldWire{w: w, called: make(chan struct{}), released: make(chan struct{})}
}

func (h *heldWire) wire(context.Context) Wiring {
	close(h.called)
	<-h.released
	return h.w
}

// release lets wire return; safe to call twice.
func (h *heldWire) release() { h.once.Do(func() { close(h.released) }) }

// spawnBeforeWired sends a spawn of name while the session's Wire is held
// (the owner's hello was answered without it), checks that the spawn is not
// answered before Wire returns, releases it and returns the spawn's error.
func spawnBeforeWired(t *testing.T, h *heldWire, name string) (error, *recorder) {
	t.Helper()
	c, rec := startWired(t, context.Background(), h.wire)
	// Registered after startWired's: runs first, so a failing test still
	// lets the session end.
	t.Cleanup(h.release)
	<-h.called
	answered := make(chan error, 1)
	go func() {
		_, err := c.Spawn(context.Background(), name, "")
		answered <- err
	}()
	// Long enough for a spawn that did not wait to have been answered.
	time.Sleep(50 * time.Millisecond)
	select {
	case err := <-answered:
		t.Fatalf("the spawn was answered before the allowlist and the backends were loaded: %v", err)
	default:
	}
	h.release()
	return <-answered, rec
}

// TestSpawnRightAfterHelloWaitsForTheAllowlist: a spawn sent while the
// allowlist and the backends are still loading is decided by them once they
// are loaded: allowed when listed, denied when not, never denied for want
// of them.
func TestSpawnRightAfterHelloWaitsForTheAllowlist(t *testing.T) {
	for _, tc := range []struct {
		name  string
		allow bool
		code  wire.Code
	}{
		// /bin/true exits without taking its listener: allowed, then
		// spawn_failed.
		{name: "quick", allow: true, code: wire.CodeSpawnFailed},
		{name: "unlisted", allow: false, code: wire.CodeDenied},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err, rec := spawnBeforeWired(t, newHeldWire(processWiring(t, trueAllowlist)), tc.name)
			if !wire.IsCode(err, tc.code) {
				t.Fatalf("spawn err = %v, want %s", err, tc.code)
			}
			ev := rec.spawns()
			if len(ev) != 1 || ev[0].Allow != tc.allow {
				t.Fatalf("audit = %+v, want one decision with allow %v", ev, tc.allow)
			}
			if !tc.allow && ev[0].Code != string(policy.NotListed) {
				t.Fatalf("denied with %s, want %s", ev[0].Code, policy.NotListed)
			}
		})
	}
}

// TestSpawnRightAfterHelloWithBrokenAllowlist: a spawn waiting for an
// allowlist that turns out unusable is denied with the allowlist's error.
func TestSpawnRightAfterHelloWithBrokenAllowlist(t *testing.T) {
	w := processWiring(t, trueAllowlist)
	w.Allowlist, w.AllowlistErr = nil, errors.New("allowlist unusable, every spawn is denied: test.toml:3: unknown key")
	err, _ := spawnBeforeWired(t, newHeldWire(w), "quick")
	var werr *wire.Error
	if !errors.As(err, &werr) || werr.Code != wire.CodeDenied || werr.Reason != string(policy.NoAllowlist) ||
		!strings.Contains(werr.Message, "test.toml:3: unknown key") {
		t.Fatalf("spawn err = %v, want denied (%s) naming the allowlist's error", err, policy.NoAllowlist)
	}
}

// TestSignalWhileWiring: a session ending (a signal) while the wiring loads
// answers the waiting spawn shutting_down at once, and still waits for Wire
// before it ends (startWired's cleanup checks that it ended and left no
// files).
func TestSignalWhileWiring(t *testing.T) {
	h := newHeldWire(processWiring(t, trueAllowlist))
	ctx, signal := context.WithCancel(context.Background())
	c, _ := startWired(t, ctx, h.wire)
	t.Cleanup(h.release)
	<-h.called
	answered := make(chan error, 1)
	go func() {
		_, err := c.Spawn(context.Background(), "quick", "")
		answered <- err
	}()
	// Let the spawn be read and wait before the signal comes.
	time.Sleep(50 * time.Millisecond)
	signal()
	if err := <-answered; !wire.IsCode(err, wire.CodeShuttingDown) {
		t.Fatalf("spawn err = %v, want shutting_down", err)
	}
	h.release()
}

func TestCheckPeerRefusesOtherUsers(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fds[0]), "a")
	conn, err := net.FileConn(f)
	f.Close()
	unix.Close(fds[1])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if pid, err := checkPeer(conn, os.Getuid()); err != nil || pid != os.Getpid() {
		t.Fatalf("own uid: pid %d, %v", pid, err)
	}
	if _, err := checkPeer(conn, os.Getuid()+1); !errors.Is(err, errForeignPeer) {
		t.Fatalf("another uid: err = %v, want errForeignPeer", err)
	}
}
