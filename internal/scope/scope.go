package scope

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"

	sdbus "github.com/coreos/go-systemd/v22/dbus"

	"github.com/cellproject/cell/bwrap"
	"github.com/cellproject/cell/internal/cellspec"
	"github.com/cellproject/cell/internal/process"
	"github.com/cellproject/cell/internal/rundir"
)

// ErrJobFailed is wrapped when systemd reports a job other than "done".
var ErrJobFailed = errors.New("scope: systemd job failed")

// Options say where the programs are.
type Options struct {
	// Gate is the cellroot binary that runs RunGate as GateCommand.
	Gate string
	// Bwrap is the absolute path of the bubblewrap binary.
	Bwrap string
}

// Launcher launches cells in transient scopes of the user's manager.
type Launcher struct {
	opts  Options
	conn  *sdbus.Conn
	procs *process.Launcher
	seq   atomic.Uint64
	// used records that a scope was made, so that EndSession only stops a
	// slice that can exist.
	used atomic.Bool
}

var _ interface {
	Launch(context.Context, cellspec.Spec) (*Instance, error)
} = (*Launcher)(nil)

// ErrNoUserManager is wrapped when the user's systemd manager cannot be
// reached over the session bus.
var ErrNoUserManager = errors.New("scope: no systemd user manager on the session bus")

// NewLauncher connects to the user's systemd manager over the session bus and
// checks that it answers.
func NewLauncher(ctx context.Context, opts Options) (*Launcher, error) {
	// Without either, the D-Bus library would try to autolaunch a bus of
	// its own, which is never the user's manager.
	if os.Getenv("DBUS_SESSION_BUS_ADDRESS") == "" {
		bus := filepath.Join(os.Getenv("XDG_RUNTIME_DIR"), "bus")
		if st, err := os.Stat(bus); os.Getenv("XDG_RUNTIME_DIR") == "" || err != nil || st.Mode().Type() != os.ModeSocket {
			return nil, fmt.Errorf("%w: DBUS_SESSION_BUS_ADDRESS is unset and there is no $XDG_RUNTIME_DIR/bus (is this a systemd login session?)", ErrNoUserManager)
		}
	}
	conn, err := sdbus.NewUserConnectionContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: %v (a login session sets XDG_RUNTIME_DIR and DBUS_SESSION_BUS_ADDRESS)", ErrNoUserManager, err)
	}
	if _, err := conn.GetManagerProperty("Version"); err != nil {
		conn.Close()
		return nil, fmt.Errorf("%w: %v", ErrNoUserManager, err)
	}
	return &Launcher{opts: opts, conn: conn, procs: process.NewLauncher()}, nil
}

// Close drops the bus connection.
func (b *Launcher) Close() { b.conn.Close() }

// Instance is one cell in its scope.
type Instance struct {
	*process.Instance
	unit string
}

// Unit is the scope's unit name.
func (in *Instance) Unit() string { return in.unit }

// ID names the scope, which is what journalctl and systemctl know it by.
func (in *Instance) ID() string { return in.unit }

// Launch starts the cell's sandbox behind the gate, creates its scope with
// the gate's pid, and opens the gate once systemd has done so.
func (b *Launcher) Launch(ctx context.Context, spec cellspec.Spec) (*Instance, error) {
	unit := UnitName(spec.Session, spec.Key, b.seq.Add(1))
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("launch %q: %w", spec.Key, err)
	}
	defer w.Close()
	// The gate is fd 3; bubblewrap's own descriptors (the filter) follow.
	sb, err := bwrap.Prepare(ctx, b.opts.Bwrap, spec, gateFD+1)
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("launch %q: %w", spec.Key, err)
	}
	defer sb.Close()
	args := append([]string{GateCommand, "--", b.opts.Bwrap}, sb.Args...)
	args = append(append(args, "--", spec.Exec), spec.Args...)
	inst, err := b.procs.Start(ctx, process.Command{
		Path:         b.opts.Gate,
		Args:         args,
		Env:          spec.Env,
		Output:       spec.Output,
		SpareLeader:  true,
		Files:        append([]*os.File{r}, sb.Files...),
		FreshKeyring: true,
	})
	r.Close()
	if err != nil {
		return nil, fmt.Errorf("launch %q: %w", spec.Key, err)
	}
	b.used.Store(true)
	if err := b.startScope(ctx, unit, Properties(spec, SliceName(spec.Session), inst.Pid())); err != nil {
		dead, cancel := context.WithCancel(context.Background())
		cancel()
		inst.Stop(dead) // closing w without a byte also makes the gate exit
		return nil, fmt.Errorf("launch %q in scope %s: %w", spec.Key, unit, err)
	}
	if _, err := w.Write([]byte{1}); err != nil {
		return nil, fmt.Errorf("launch %q: open the gate: %w", spec.Key, err)
	}
	return &Instance{Instance: inst, unit: unit}, nil
}

// startScope creates the unit and waits for systemd's verdict on the job:
// a scope whose job failed holds nothing, and must not be reported as running.
func (b *Launcher) startScope(ctx context.Context, unit string, props []sdbus.Property) error {
	result := make(chan string, 1)
	if _, err := b.conn.StartTransientUnitContext(ctx, unit, "fail", props, result); err != nil {
		return err
	}
	select {
	case r := <-result:
		if r != "done" {
			b.conn.ResetFailedUnitContext(context.WithoutCancel(ctx), unit)
			return fmt.Errorf("%w: %s", ErrJobFailed, r)
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// EndSession stops the session's slice, ending any scope still in it.
func (b *Launcher) EndSession(ctx context.Context, session string) error {
	if !b.used.Load() {
		return nil
	}
	slice := SliceName(session)
	result := make(chan string, 1)
	if _, err := b.conn.StopUnitContext(ctx, slice, "replace", result); err != nil {
		return fmt.Errorf("stop %s: %w", slice, err)
	}
	select {
	case r := <-result:
		if r != "done" {
			return fmt.Errorf("stop %s: %w: %s", slice, ErrJobFailed, r)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stop %s: %w", slice, ctx.Err())
	}
}

// CollectDead stops the slices of sessions that are no longer alive: a root
// that was killed could not stop its own, and an empty slice stays loaded.
// Only slices named like ours (app-cell_<16 hex>.slice), of sessions live says
// are dead, and holding no process are stopped: a session of another
// runtime dir looks dead from here, but its slice is populated. It returns
// the sessions it stopped.
func (b *Launcher) CollectDead(ctx context.Context, live func(session string) bool) ([]string, error) {
	units, err := b.conn.ListUnitsByPatternsContext(ctx, nil, []string{slicePrefix + "*.slice"})
	if err != nil {
		return nil, fmt.Errorf("list session slices: %w", err)
	}
	var stopped []string
	var errs []error
	for _, u := range units {
		// SliceName's escaping leaves a session id as it is.
		id, ok := strings.CutPrefix(strings.TrimSuffix(u.Name, ".slice"), slicePrefix)
		if !ok || !rundir.ValidSessionID(id) || live(id) || b.populated(ctx, u.Name) {
			continue
		}
		result := make(chan string, 1)
		if _, err := b.conn.StopUnitContext(ctx, u.Name, "replace", result); err != nil {
			errs = append(errs, fmt.Errorf("stop %s: %w", u.Name, err))
			continue
		}
		select {
		case <-result:
		case <-ctx.Done():
			return stopped, ctx.Err()
		}
		stopped = append(stopped, id)
	}
	return stopped, errors.Join(errs...)
}

// populated reports whether the unit's cgroup holds any process; when that
// cannot be read it says yes, so that nothing live is ever stopped.
func (b *Launcher) populated(ctx context.Context, unit string) bool {
	p, err := b.conn.GetUnitTypePropertyContext(ctx, unit, "Slice", "ControlGroup")
	if err != nil {
		return true
	}
	cg, ok := p.Value.Value().(string)
	if !ok || cg == "" {
		return true
	}
	events, err := os.ReadFile(filepath.Join("/sys/fs/cgroup", cg, "cgroup.events"))
	if err != nil {
		// No cgroup at all: nothing can run in it.
		return !errors.Is(err, os.ErrNotExist)
	}
	return !strings.Contains(string(events), "populated 0")
}
