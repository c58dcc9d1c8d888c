package podman

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containers/podman/v5/pkg/bindings"
	"github.com/containers/podman/v5/pkg/bindings/containers"
	"go.uber.org/zap"

	"github.com/cellproject/cell/internal/cellspec"
	"github.com/cellproject/cell/internal/process"
	"github.com/cellproject/cell/internal/rundir"
)

// Errors callers branch on.
var (
	// ErrNotFound: no podman binary on PATH.
	ErrNotFound = errors.New("podman: podman not found")
	// ErrNoService: neither the user's socket answered nor a service of our
	// own came up.
	ErrNoService = errors.New("podman: no Podman service")
	// ErrInvalidSpec: the spec cannot become a container.
	ErrInvalidSpec = errors.New("podman: invalid spec")
	// ErrClosed: the launcher was closed.
	ErrClosed = errors.New("podman: backend closed")
	// ErrRoot: the backend runs rootless containers, and we are root.
	ErrRoot = errors.New("podman: the podman backend runs rootless containers only")
)

// Options configure Open. Every field has a usable zero value except Base.
type Options struct {
	// Podman is the podman binary, used only to start a service of our
	// own; empty means "podman" on PATH.
	Podman string
	// Base is the user's runtime dir for Cell (rundir.Base). The backend
	// keeps its private dir (own service socket, cell roots) beside the
	// sessions there, and labels every container with it.
	Base string
	// UserSocket is the user's Podman API socket; empty means
	// $XDG_RUNTIME_DIR/podman/podman.sock. It is used when it answers.
	UserSocket string
	// Env is the environment of a service we start; nil means ours.
	Env []string
	// ServiceOutput receives the output of a service we start; nil
	// discards it.
	ServiceOutput io.Writer
	// StartTimeout bounds finding or starting the service (default 60 s:
	// a socket-activated service's first start under emulation takes tens
	// of seconds, and the bound only matters when the service never comes).
	StartTimeout time.Duration
	// Log receives diagnostics; nil discards them.
	Log *zap.Logger
}

// Launcher launches cells as containers of one Podman service.
type Launcher struct {
	opts Options
	conn context.Context // bindings connection; carries no deadline
	// priv is the backend's private dir (mode 0700, never mounted into a
	// container): the socket of a service we started, the lock that says
	// this backend lives, and one root dir per container.
	priv    string
	lock    *os.File
	service *process.Instance // nil when the user's socket is used
	socket  string
	version string
	seq     atomic.Uint64 // numbers the containers launched

	// life ends when Close starts: it stops every watcher goroutine.
	life   context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// mu guards insts and closed.
	mu     sync.Mutex
	insts  map[*Instance]struct{}
	closed bool
}

var _ interface {
	Launch(context.Context, cellspec.Spec) (*Instance, error)
	EndSession(context.Context, string) error
} = (*Launcher)(nil)

// Open finds the user's Podman service or starts one of its own, and checks
// it answers. The caller must Close the launcher, which stops such a service.
// An error wraps ErrRoot, ErrNotFound or ErrNoService and says why.
func Open(ctx context.Context, opts Options) (*Launcher, error) {
	if opts.Log == nil {
		opts.Log = zap.NewNop()
	}
	if opts.StartTimeout == 0 {
		opts.StartTimeout = 60 * time.Second
	}
	if opts.Base == "" {
		return nil, fmt.Errorf("podman: open: no runtime dir given")
	}
	if opts.UserSocket == "" && os.Getenv("XDG_RUNTIME_DIR") != "" {
		opts.UserSocket = filepath.Join(os.Getenv("XDG_RUNTIME_DIR"), "podman", "podman.sock")
	}
	if os.Geteuid() == 0 {
		// Root's Podman is rootful: keep-id means nothing there, and a
		// cell must never run as root on the host's behalf.
		return nil, fmt.Errorf("%w: cellroot runs as root; run it as the user", ErrRoot)
	}
	bin := opts.Podman
	if bin == "" {
		bin = "podman"
	}
	path, lookErr := exec.LookPath(bin)
	if lookErr != nil {
		return nil, fmt.Errorf("%w (%v): install it (apt-get install podman)", ErrNotFound, lookErr)
	}
	ctx, cancel := context.WithTimeout(ctx, opts.StartTimeout)
	defer cancel()

	b := &Launcher{opts: opts, insts: map[*Instance]struct{}{}}
	var err error
	if b.priv, err = os.MkdirTemp(opts.Base, rundir.PodmanPrivatePrefix); err != nil {
		return nil, fmt.Errorf("podman: private dir: %w", err)
	}
	// The cleanup holds b itself, not a named result: a failed open
	// returns nil, and closing that nil would panic the root.
	opened := false
	defer func() {
		if !opened {
			b.Close(context.Background())
		}
	}()
	if b.lock, err = rundir.TryLock(filepath.Join(b.priv, "lock")); err != nil {
		return nil, fmt.Errorf("podman: lock private dir: %w", err)
	}
	b.life, b.cancel = context.WithCancel(context.Background())

	// The user's socket-activated service first: nothing to start, and it
	// outlives us as it should.
	if opts.UserSocket != "" {
		if fi, statErr := os.Stat(opts.UserSocket); statErr == nil && fi.Mode()&os.ModeSocket != 0 {
			if b.conn, err = connect(ctx, opts.UserSocket); err == nil {
				b.socket = opts.UserSocket
				b.version = versionOf(b.conn)
				opened = true
				return b, nil
			}
			opts.Log.Info("the user's podman socket does not answer; starting a service", zap.String("socket", opts.UserSocket), zap.Error(err))
		}
	}
	if err = b.startService(ctx, path); err != nil {
		return nil, err
	}
	opened = true
	return b, nil
}

// startService runs `podman system service` on a socket in the private dir
// through the process package, so that it dies with the root however the
// root ends, and waits until it answers.
func (b *Launcher) startService(ctx context.Context, path string) error {
	sock := filepath.Join(b.priv, "podman.sock")
	env := b.opts.Env
	if env == nil {
		env = os.Environ()
	}
	svc, err := process.NewLauncher().Start(ctx, process.Command{
		Path: path,
		// --time=0: no idle exit; it lives exactly as long as we do.
		Args:   []string{"system", "service", "--time=0", "unix://" + sock},
		Env:    env,
		Output: b.opts.ServiceOutput,
	})
	if err != nil {
		return fmt.Errorf("%w: start podman system service: %v", ErrNoService, err)
	}
	b.service = svc
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if _, err := os.Stat(sock); err == nil {
			if b.conn, err = connect(ctx, sock); err == nil {
				b.socket = sock
				b.version = versionOf(b.conn)
				return nil
			}
		}
		select {
		case <-svc.Done():
			return fmt.Errorf("%w: podman system service exited (%s) before it answered", ErrNoService, svc.ExitStatus())
		case <-ctx.Done():
			return fmt.Errorf("%w: podman system service did not answer on %s: %v", ErrNoService, sock, ctx.Err())
		case <-tick.C:
		}
	}
}

// connect opens a bindings connection (which pings the service) whose
// context carries no deadline: the connection outlives the open.
func connect(ctx context.Context, sock string) (context.Context, error) {
	type result struct {
		conn context.Context
		err  error
	}
	// NewConnection keeps the context it is given for every later call, so
	// it gets a background one; the ping is bounded by ctx from outside.
	ch := make(chan result, 1)
	go func() {
		c, err := bindings.NewConnection(context.Background(), "unix://"+sock)
		ch <- result{c, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, fmt.Errorf("ping podman service at %s: %w", sock, r.err)
		}
		return r.conn, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("ping podman service at %s: %w", sock, ctx.Err())
	}
}

func versionOf(conn context.Context) string {
	if v := bindings.ServiceVersion(conn); v != nil {
		return v.String()
	}
	return "unknown"
}

// Version is the API version of the service in use.
func (b *Launcher) Version() string { return b.version }

// Socket is the API socket in use.
func (b *Launcher) Socket() string { return b.socket }

// OwnService reports whether the launcher started the service itself.
func (b *Launcher) OwnService() bool { return b.service != nil }

// callCtx is a context for one API call: the connection's values, ctx's
// deadline and cancellation.
// forceRemove kills and removes container id at once, in whatever state it
// is; one that is already gone is no error.
func (b *Launcher) forceRemove(ctx context.Context, id string) error {
	cctx, cancel := b.callCtx(ctx)
	defer cancel()
	_, err := containers.Remove(cctx, id, new(containers.RemoveOptions).WithForce(true).WithIgnore(true).WithTimeout(0))
	if err != nil && !isNotFound(err) {
		return err
	}
	return nil
}

func (b *Launcher) callCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	c, cancel := context.WithCancel(b.conn)
	stop := context.AfterFunc(ctx, cancel)
	if d, ok := ctx.Deadline(); ok {
		var cancelT context.CancelFunc
		c, cancelT = context.WithDeadline(c, d)
		return c, func() { cancelT(); stop(); cancel() }
	}
	return c, func() { stop(); cancel() }
}

// Launch creates and starts spec's container and returns once it runs. ctx
// bounds the launch only; a failed or cancelled launch leaves no container.
func (b *Launcher) Launch(ctx context.Context, spec cellspec.Spec) (*Instance, error) {
	b.mu.Lock()
	closed := b.closed
	b.mu.Unlock()
	if closed {
		return nil, fmt.Errorf("launch %q: %w", spec.Key, ErrClosed)
	}
	root, err := b.makeRoot(spec)
	if err != nil {
		return nil, fmt.Errorf("launch %q: %w", spec.Key, err)
	}
	s, err := Spec(spec, root, b.opts.Base)
	if err != nil {
		os.RemoveAll(root)
		return nil, fmt.Errorf("launch %q: %w", spec.Key, err)
	}
	// Two instances of a key run at once during an upgrade: names carry a
	// sequence number as scope units do.
	s.Name = fmt.Sprintf("%s-%d", s.Name, b.seq.Add(1))
	// The log beside the root, not in Podman's container dir: it must
	// outlive the container's automatic removal (see Instance.copyLogs).
	s.LogConfiguration.Path = root + ".log"
	cctx, cancel := b.callCtx(ctx)
	defer cancel()
	created, err := containers.CreateWithSpec(cctx, s, nil)
	if err != nil {
		os.RemoveAll(root)
		os.Remove(root + ".log")
		return nil, fmt.Errorf("launch %q: create container: %w", spec.Key, err)
	}
	in := newInstance(b, created.ID, s.Name, root, spec.Output)
	if err := containers.Start(cctx, created.ID, nil); err != nil {
		in.discard()
		return nil, fmt.Errorf("launch %q: start container: %w", spec.Key, err)
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		in.discard()
		return nil, fmt.Errorf("launch %q: %w", spec.Key, ErrClosed)
	}
	b.insts[in] = struct{}{}
	b.wg.Add(2)
	b.mu.Unlock()
	go in.watch()
	go in.copyLogs()
	return in, nil
}

// makeRoot makes the container's root dir: empty, with the mount points.
func (b *Launcher) makeRoot(spec cellspec.Spec) (string, error) {
	root, err := os.MkdirTemp(b.priv, "root-")
	if err != nil {
		return "", fmt.Errorf("container root: %w", err)
	}
	dirs, files := mountPoints(spec)
	for _, d := range dirs {
		if err := os.Mkdir(filepath.Join(root, d), 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			os.RemoveAll(root)
			return "", fmt.Errorf("container root: %w", err)
		}
	}
	// Podman copies the mode of the root's /tmp onto the tmpfs it mounts
	// there (tmpcopyup): sticky and world-writable, so the cell, which is
	// not root inside, can write in it.
	if err := os.Chmod(filepath.Join(root, "tmp"), 0o1777); err != nil {
		os.RemoveAll(root)
		return "", fmt.Errorf("container root: %w", err)
	}
	for _, f := range files {
		fh, err := os.OpenFile(filepath.Join(root, f), os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			os.RemoveAll(root)
			return "", fmt.Errorf("container root: %w", err)
		}
		fh.Close()
	}
	return root, nil
}

// forget drops a finished instance.
func (b *Launcher) forget(in *Instance) {
	b.mu.Lock()
	delete(b.insts, in)
	b.mu.Unlock()
}

// EndSession removes every container labelled with session, running or
// not: what the cells of the session left, whatever the supervisor knew of.
func (b *Launcher) EndSession(ctx context.Context, session string) error {
	_, err := b.removeWhere(ctx, func(labels map[string]string) bool { return labels[LabelSession] == session })
	return err
}

// Close stops every container this backend started, then the service it
// started, and removes its private dir. It is safe to call more than once.
func (b *Launcher) Close(ctx context.Context) error {
	b.mu.Lock()
	already := b.closed
	b.closed = true
	insts := make([]*Instance, 0, len(b.insts))
	for in := range b.insts {
		insts = append(insts, in)
	}
	b.mu.Unlock()
	if already {
		return nil
	}
	var errs []error
	for _, in := range insts {
		if err := in.Stop(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if b.cancel != nil {
		b.cancel()
	}
	b.wg.Wait()
	if b.service != nil {
		// SIGTERM lets the service finish its requests; it holds no
		// container processes (conmon does), so a kill loses nothing.
		if err := b.service.Stop(ctx); err != nil {
			errs = append(errs, fmt.Errorf("podman: stop service: %w", err))
		}
	}
	if b.priv != "" {
		if err := os.RemoveAll(b.priv); err != nil {
			errs = append(errs, fmt.Errorf("podman: remove private dir: %w", err))
		}
	}
	if b.lock != nil {
		b.lock.Close()
	}
	return errors.Join(errs...)
}
