package supervisor

import (
	"context"
	"errors"
	"net"
	"os"
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
	al, err := allowlist.Parse("test.toml", []byte(allowlistText))
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	w := Wiring{
		Allowlist:    al,
		Launchers:    map[cellspec.Backend]Launcher{cellspec.Process: Adapt(process.NewLauncher())},
		Capabilities: map[cellspec.Backend]policy.Capability{cellspec.Process: {Available: true}},
		Vet:          vet,
	}
	s, err := New(Config{
		Base:         t.TempDir(),
		Wire:         func(context.Context) Wiring { return w },
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
		s.Serve(context.Background(), conns[1])
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
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Hello(ctx, wire.RoleOwner, ""); err != nil {
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
