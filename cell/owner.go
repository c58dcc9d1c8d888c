package cell

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/cellproject/cell/internal/rundir"
	"github.com/cellproject/cell/wire"
)

// EnvCellroot names the cellroot binary when OwnerOptions.Cellroot is empty.
const EnvCellroot = "CELLROOT"

// DefaultStopTimeout is how long Session.Close waits for cellroot to tear the
// session down before killing it.
const DefaultStopTimeout = 10 * time.Second

// OwnerOptions configures Start; the zero value is ready to use.
type OwnerOptions struct {
	// Cellroot is the cellroot binary. Empty: $CELLROOT, else "cellroot"
	// on $PATH.
	Cellroot string
	// Allowlist, when set, is passed as --allowlist; otherwise cellroot reads
	// the user's default allowlist.
	Allowlist string
	// Args are more flags for `cellroot serve`, after the SDK's own.
	Args []string
	// Stderr receives cellroot's log; nil means os.Stderr.
	Stderr io.Writer
	// StopTimeout bounds how long Close waits for cellroot to exit before
	// killing its process group; 0 means DefaultStopTimeout.
	StopTimeout time.Duration
	// Logger receives the SDK's own logs; nil means none.
	Logger *slog.Logger
}

// ownerProc is the cellroot process an owner started, and the connection
// whose life is the session's.
type ownerProc struct {
	conn        net.Conn // the owner's umbilical; closing it ends the session
	cmd         *exec.Cmd
	stopTimeout time.Duration
	exited      chan struct{} // closed once cmd.Wait has returned
	waitErr     error         // cmd.Wait's result, valid once exited is closed
	sessionDir  string        // set once the root said hello
}

// waitSessionGone waits, up to stopTimeout, for the root to remove the
// session dir, which it does last in its teardown.
func (p *ownerProc) waitSessionGone() error {
	if p.sessionDir == "" {
		return nil
	}
	deadline := time.Now().Add(p.stopTimeout)
	for time.Now().Before(deadline) {
		if _, err := os.Lstat(p.sessionDir); errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("the session root did not remove %s within %s", p.sessionDir, p.stopTimeout)
}

// Start starts a session root for this process, the owner, and says hello
// to it. When the user runs the socket-activated root
// ($XDG_RUNTIME_DIR/cellroot.sock, deploy/systemd) and opts name no binary,
// allowlist or flags, Start connects there: systemd starts a root for this
// connection alone. Otherwise it execs `cellroot serve --umbilical-fd 3` on
// one end of a socketpair. Either way the session lasts until Close, or until
// this process dies (the kernel closes the socket and the root tears down).
// ctx bounds the start-up only, not the session.
func Start(ctx context.Context, opts OwnerOptions) (*Session, error) {
	log := orNop(opts.Logger)
	if sock := activationSocket(opts); sock != "" {
		conn, err := (&net.Dialer{}).DialContext(ctx, "unix", sock)
		if err == nil {
			log.Debug("using the socket-activated session root", "socket", sock)
			op := &ownerProc{conn: conn, stopTimeout: opts.StopTimeout}
			if op.stopTimeout <= 0 {
				op.stopTimeout = DefaultStopTimeout
			}
			return helloOwner(ctx, op, sock, log)
		}
		// A socket file nobody listens on is what a stopped socket unit
		// leaves; starting our own root is as safe and as confined.
		log.Debug("socket-activated root unreachable; starting cellroot", "socket", sock, "err", err)
	}
	bin, err := findCellroot(opts.Cellroot)
	if err != nil {
		return nil, err
	}
	ours, theirs, err := socketpair()
	if err != nil {
		return nil, fmt.Errorf("start cellroot: %w", err)
	}
	conn, err := net.FileConn(ours)
	ours.Close() // FileConn holds its own duplicate
	if err != nil {
		theirs.Close()
		return nil, fmt.Errorf("start cellroot: umbilical: %w", err)
	}

	args := []string{"serve", "--umbilical-fd", "3"}
	if opts.Allowlist != "" {
		args = append(args, "--allowlist", opts.Allowlist)
	}
	args = append(args, opts.Args...)
	// Not CommandContext: ctx bounds the start, while the root must live as
	// long as the session.
	cmd := exec.Command(bin, args...)
	cmd.ExtraFiles = []*os.File{theirs} // fd 3 in the child
	cmd.Stderr = opts.Stderr
	if cmd.Stderr == nil {
		cmd.Stderr = os.Stderr
	}
	cmd.SysProcAttr = ownGroup()
	err = cmd.Start()
	theirs.Close() // only the child may hold it, or its EOF never comes
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("start cellroot %s: %w", bin, err)
	}
	op := &ownerProc{conn: conn, cmd: cmd, stopTimeout: opts.StopTimeout, exited: make(chan struct{})}
	if op.stopTimeout <= 0 {
		op.stopTimeout = DefaultStopTimeout
	}
	// Ends when the process exits, which stop guarantees.
	go func() {
		op.waitErr = cmd.Wait()
		close(op.exited)
	}()
	log.Debug("cellroot started", "bin", bin, "pid", cmd.Process.Pid)

	return helloOwner(ctx, op, bin, log)
}

// helloOwner says hello as the owner on op's connection and makes the
// session; what names the root in errors (its binary or socket).
func helloOwner(ctx context.Context, op *ownerProc, what string, log *slog.Logger) (*Session, error) {
	rep, err := wire.NewClient(op.conn).Hello(ctx, wire.RoleOwner, "")
	if err != nil {
		stopErr := op.stop(log)
		if stopErr != nil {
			return nil, fmt.Errorf("start cellroot %s: hello: %w (%w)", what, err, stopErr)
		}
		return nil, fmt.Errorf("start cellroot %s: hello: %w", what, err)
	}
	if rep.Session == "" || rep.RuntimeDir == "" || rep.Token == "" {
		op.stop(log)
		return nil, fmt.Errorf("start cellroot %s: hello reply lacks session, runtime_dir or token", what)
	}
	log.Debug("session started", "session", rep.Session, "dir", rep.RuntimeDir)
	op.sessionDir = rep.RuntimeDir
	return &Session{
		id:        rep.Session,
		dir:       rep.RuntimeDir,
		rootDir:   rep.RuntimeDir,
		umbilical: filepath.Join(rep.RuntimeDir, rundir.UmbilicalName),
		token:     rep.Token,
		role:      wire.RoleOwner,
		log:       log,
		owner:     op,
	}, nil
}

// ActivationSocketName is the socket unit's path under $XDG_RUNTIME_DIR
// (deploy/systemd/cellroot.socket): each connection to it starts a root of
// its own.
const ActivationSocketName = "cellroot.sock"

// activationSocket returns the socket-activated root's path when the owner
// asked for nothing only an exec'd root can give (a binary, an allowlist,
// flags) and the socket exists; "" otherwise.
func activationSocket(opts OwnerOptions) string {
	if opts.Cellroot != "" || opts.Allowlist != "" || len(opts.Args) > 0 || os.Getenv(EnvCellroot) != "" {
		return ""
	}
	dir := os.Getenv("XDG_RUNTIME_DIR")
	if dir == "" {
		return ""
	}
	sock := filepath.Join(dir, ActivationSocketName)
	if st, err := os.Stat(sock); err != nil || st.Mode().Type() != os.ModeSocket {
		return ""
	}
	return sock
}

// findCellroot picks the cellroot binary: explicit, $CELLROOT, then $PATH.
func findCellroot(explicit string) (string, error) {
	if explicit != "" {
		return explicit, nil
	}
	if env := os.Getenv(EnvCellroot); env != "" {
		return env, nil
	}
	p, err := exec.LookPath("cellroot")
	if err != nil {
		return "", fmt.Errorf("%w: set OwnerOptions.Cellroot (-cellroot), or $%s, or put cellroot on $PATH (%w)",
			ErrCellrootNotFound, EnvCellroot, err)
	}
	return p, nil
}

// stop ends the session by closing the owner connection, then waits for
// cellroot to exit, killing its process group after stopTimeout. A
// socket-activated root is not our child: stop waits for its session dir to
// go instead.
func (p *ownerProc) stop(log *slog.Logger) error {
	p.conn.Close()
	if p.cmd == nil {
		return p.waitSessionGone()
	}
	timer := time.NewTimer(p.stopTimeout)
	defer timer.Stop()
	select {
	case <-p.exited:
	case <-timer.C:
		log.Warn("cellroot did not exit; killing it", "pid", p.cmd.Process.Pid, "waited", p.stopTimeout)
		// The process is our unreaped child until exited closes, so its
		// pid (and group id) cannot have been reused.
		killGroup(p.cmd.Process.Pid)
		<-p.exited
		return fmt.Errorf("cellroot did not exit within %s after the session ended; killed", p.stopTimeout)
	}
	if p.waitErr != nil {
		var ee *exec.ExitError
		if errors.As(p.waitErr, &ee) {
			return fmt.Errorf("cellroot exited: %w", p.waitErr)
		}
		return fmt.Errorf("wait for cellroot: %w", p.waitErr)
	}
	return nil
}
