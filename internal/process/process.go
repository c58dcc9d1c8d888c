package process

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/cellproject/cell/internal/cellspec"
)

// ErrUnsupported is returned where this platform cannot run cells.
var ErrUnsupported = errors.New("process: unsupported platform")

// outputGrace bounds how long reaping waits for the output copier after the
// process group is gone. A descendant that escaped the group (setsid) may keep
// the output pipe open; the cell is still reported as exited.
const outputGrace = 2 * time.Second

// Command is one child to start: an arbitrary argv with a cell's environment
// and output. The process backend fills it from a spec; the bwrap backend puts
// bubblewrap in front of the cell's argv.
type Command struct {
	// Path is the absolute path of the program; it is also argv[0].
	Path string
	// Args are argv[1:].
	Args []string
	// Env is the child's whole environment; nothing is inherited, and a nil
	// Env means an empty one.
	Env []string
	// Output receives stdout and stderr; nil sends them to /dev/null.
	Output io.Writer
	// SpareLeader makes Stop's graceful SIGTERM go to every process of the
	// group except its leader. Set it when the leader is a launcher such as
	// bwrap: bwrap dies of SIGTERM (it forwards nothing), and its death takes
	// the sandbox down before the cell can finish its own shutdown, and loses
	// the cell's exit status, which bwrap relays once the cell has exited.
	// The forced SIGKILL still goes to the whole group.
	SpareLeader bool
	// Files are passed to the child as descriptors 3, 4, ...; the caller
	// closes its copies once Start returns.
	Files []*os.File
	// FreshKeyring starts the child with a new, empty, anonymous session
	// keyring instead of the root's: kernel keyrings are not namespaced, so
	// a sandbox would otherwise reach every key the owner's login put in
	// its session keyring. Only the forking thread changes keyring (see
	// Instance.run); the root's other threads keep theirs.
	FreshKeyring bool
}

// Launcher launches cells as plain child processes.
type Launcher struct{}

// NewLauncher returns the launcher of the process backend.
func NewLauncher() *Launcher { return &Launcher{} }

var _ interface {
	Launch(context.Context, cellspec.Spec) (*Instance, error)
} = (*Launcher)(nil)

// Launch starts spec.Exec with spec.Args, exactly spec.Env, cwd "/", stdin
// /dev/null and stdout and stderr to spec.Output. ctx bounds the launch only,
// not the cell's life; a cancelled ctx or a failed exec leaves nothing running.
func (b *Launcher) Launch(ctx context.Context, spec cellspec.Spec) (*Instance, error) {
	inst, err := b.Start(ctx, Command{
		Path:   spec.Exec,
		Args:   spec.Args,
		Env:    spec.Env,
		Output: spec.Output,
	})
	if err != nil {
		return nil, fmt.Errorf("launch %q: %w", spec.Key, err)
	}
	return inst, nil
}

// Start starts c as a child in its own session and process group, with cwd
// "/", stdin /dev/null and a SIGKILL death signal, and returns once it runs.
// ctx bounds the start only; a cancelled ctx or a failed exec leaves nothing
// running.
func (b *Launcher) Start(ctx context.Context, c Command) (*Instance, error) {
	if !supported {
		return nil, fmt.Errorf("start %s: %w", c.Path, ErrUnsupported)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("start %s: %w", c.Path, err)
	}
	cmd := &exec.Cmd{
		Path: c.Path,
		Args: append([]string{c.Path}, c.Args...),
		// A non-nil empty slice: a nil Env would inherit ours.
		Env:         append([]string{}, c.Env...),
		Dir:         "/",
		Stdout:      c.Output,
		Stderr:      c.Output,
		SysProcAttr: sysProcAttr(),
		WaitDelay:   outputGrace,
		ExtraFiles:  c.Files,
	}
	in := &Instance{spareLeader: c.SpareLeader}
	in.Exit, in.end = cellspec.NewExit()
	started := make(chan error, 1)
	go in.run(cmd, c.FreshKeyring, started)
	if err := <-started; err != nil {
		return nil, fmt.Errorf("start %s: %w", c.Path, err)
	}
	if err := ctx.Err(); err != nil {
		// The caller gave up while we started: leave nothing behind.
		in.kill()
		<-in.Done()
		return nil, fmt.Errorf("start %s: %w", c.Path, err)
	}
	return in, nil
}

// Instance is one running child and, through its process group, everything
// it started that stayed in the group.
type Instance struct {
	// Exit is Done and ExitStatus: "exited N" or "signal NAME" ("signal
	// killed"), set once the child is reaped and the rest of its group
	// has been sent SIGKILL.
	*cellspec.Exit
	end         func(status string)
	pid         int
	spareLeader bool

	// mu guards reaped. Signals to the group are sent with mu held and
	// only while reaped is false: until the leader is reaped its pid,
	// which is also the group id, cannot be reused, so a signal can never
	// reach an unrelated process.
	mu     sync.Mutex
	reaped bool
}

// run starts cmd and reaps it. It runs on its own goroutine locked to its OS
// thread and never unlocks: Linux delivers Pdeathsig when the thread that
// forked the child exits, not when the process does (golang/go#27505), and Go
// ends a thread whose locked goroutine returns. Staying locked and blocked in
// the wait for the child's whole life keeps the forking thread alive exactly
// as long as the child needs it; the thread ends only after the reap, when
// the death signal has nothing left to hit.
//
// The same holds for a fresh keyring: the session keyring is a credential of
// the thread, so joining a new one on this locked thread just before the
// fork gives it to the child only, and it ends with the thread.
func (in *Instance) run(cmd *exec.Cmd, freshKeyring bool, started chan<- error) {
	runtime.LockOSThread()
	if freshKeyring {
		if err := joinNewSessionKeyring(); err != nil {
			started <- err
			return
		}
	}
	if err := cmd.Start(); err != nil {
		started <- err
		return
	}
	in.pid = cmd.Process.Pid
	started <- nil

	// Wait for the exit without reaping, so the group id stays ours while
	// we kill what the leader left in its group.
	waitExit(in.pid)

	in.mu.Lock()
	// Members left behind after the leader exited are part of the cell:
	// they go with it, while the zombie leader still pins the group id.
	_ = killGroup(in.pid, syscall.SIGKILL)
	err := cmd.Wait()
	in.reaped = true
	in.mu.Unlock()
	in.end(describe(cmd, err))
}

// ID is the child's pid in decimal.
func (in *Instance) ID() string { return strconv.Itoa(in.pid) }

// Pid is the child's pid; with Setsid it is also its process group and
// session id.
func (in *Instance) Pid() int { return in.pid }

// Stop sends SIGTERM to the child's process group (all but its leader when
// the Command said SpareLeader) and waits for the child to be reaped or ctx
// to end; when ctx ends (or had ended already, which skips the SIGTERM) it
// sends SIGKILL to the whole group and waits for the reap. It returns nil
// once the child is reaped, whichever way it ended (ExitStatus tells), and an
// error only when the SIGKILL could not be sent, without waiting then. It is
// safe to call many times, concurrently and after the child exited.
// Processes that left the group (setsid) are beyond its reach: containing
// those is the job of a pid namespace or a cgroup.
func (in *Instance) Stop(ctx context.Context) error {
	if in.Ended() {
		return nil
	}
	if ctx.Err() == nil {
		// A ctx that has ended already asks for force only; a SIGTERM
		// racing the SIGKILL would make the outcome random. A failed
		// SIGTERM is no reason to skip the wait: the SIGKILL follows.
		_ = in.signal(syscall.SIGTERM, in.spareLeader)
		select {
		case <-in.Done():
			return nil
		case <-ctx.Done():
		}
	}
	if err := in.signal(syscall.SIGKILL, false); err != nil {
		return fmt.Errorf("stop pid %d: %w", in.pid, err)
	}
	<-in.Done()
	return nil
}

// kill sends SIGKILL to the whole group.
func (in *Instance) kill() { _ = in.signal(syscall.SIGKILL, false) }

// signal sends sig to the group unless the leader was reaped already.
func (in *Instance) signal(sig syscall.Signal, spareLeader bool) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.reaped {
		return nil
	}
	if spareLeader {
		return signalMembers(in.pid, sig)
	}
	return killGroup(in.pid, sig)
}

// describe renders how cmd ended.
func describe(cmd *exec.Cmd, waitErr error) string {
	ps := cmd.ProcessState
	if ps == nil {
		return "unknown: " + waitErr.Error()
	}
	ws, ok := ps.Sys().(syscall.WaitStatus)
	if !ok {
		return ps.String()
	}
	switch {
	case ws.Exited():
		return "exited " + strconv.Itoa(ws.ExitStatus())
	case ws.Signaled():
		s := "signal " + ws.Signal().String()
		if ws.CoreDump() {
			s += " (core dumped)"
		}
		return s
	default:
		return ps.String()
	}
}
