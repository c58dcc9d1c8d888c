package bwrap

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/cellproject/cell/internal/cellspec"
	"github.com/cellproject/cell/internal/process"
)

// DefaultPath is used when New or Find get an empty bwrap path.
const DefaultPath = "bwrap"

// ErrInvalidSpec is returned for a spec whose paths cannot be bound into a
// sandbox.
var ErrInvalidSpec = errors.New("bwrap: invalid spec")

// Args returns bubblewrap's options for spec's sandbox with layers o: everything that goes
// before "--" and the cell's argv. It expects spec.Exec and spec.SessionDir
// (if set) to be absolute and clean; [Launcher.Launch] checks that.
//
// The environment is not part of the argv: the caller runs bwrap with exactly
// spec.Env as its environment, and bwrap hands it on unchanged. That keeps
// CELL_TOKEN out of /proc/PID/cmdline, which every user on the host can read
// (--setenv would put it there).
//
// o says which of the capsid's layers go in (see [Sandbox]); their options
// come first, so that they precede everything that depends on them (--size
// must come right before the /tmp --tmpfs).
//
// There is no --new-session: the process lifecycle starts bwrap in a new
// session of its own, with no controlling terminal (which is what
// --new-session protects against: TIOCSTI into the user's terminal), and
// keeping the cell in bwrap's process group is what lets a graceful stop
// reach it.
func Args(spec cellspec.Spec, o Options) []string {
	a := []string{
		// --unshare-all only tries a user namespace; require one, so a
		// machine without them fails loudly instead of sandboxing less.
		"--unshare-all", "--unshare-user",
	}
	if spec.Network {
		a = append(a, "--share-net")
	}
	if o.DisableUserns {
		a = append(a, "--disable-userns", "--assert-userns-disabled")
	}
	if o.SeccompFD > 0 {
		a = append(a, "--seccomp", strconv.Itoa(o.SeccompFD))
	}
	a = append(a,
		"--die-with-parent",
		"--cap-drop", "ALL",
		"--hostname", "cell",
		"--proc", "/proc",
		"--dev", "/dev",
	)
	if o.TmpSize > 0 {
		a = append(a, "--size", strconv.FormatUint(o.TmpSize, 10))
	}
	a = append(a, "--tmpfs", "/tmp")

	// bwrap's new root is an empty tmpfs. Create the parents of bound
	// paths ourselves (mode 0755), except those inside a host directory
	// already bound, which exist there.
	made := map[string]bool{"/": true, "/proc": true, "/dev": true, "/tmp": true}
	var bound []string
	parents := func(p string) {
		var todo []string
		for d := filepath.Dir(p); !made[d]; d = filepath.Dir(d) {
			todo = append(todo, d)
		}
		for i := len(todo) - 1; i >= 0; i-- {
			d := todo[i]
			made[d] = true
			if !under(d, bound) {
				a = append(a, "--dir", d)
			}
		}
	}
	if spec.SessionDir != "" {
		// After the /tmp tmpfs: the session dir may live under /tmp.
		parents(spec.SessionDir)
		// Read-only: the root creates every file there (it binds each
		// cell's socket and hands the listener over), so a cell can
		// connect to the sockets but cannot create, unlink, replace or
		// fill anything.
		a = append(a, "--ro-bind", spec.SessionDir, spec.SessionDir)
		made[spec.SessionDir] = true
		bound = append(bound, spec.SessionDir)
	}
	// The binary last, so no other mount can cover it.
	parents(spec.Exec)
	a = append(a, "--ro-bind", spec.Exec, spec.Exec)

	return append(a,
		// Nothing but /tmp and the session dir is writable: not the root
		// tmpfs (where the parents were made), not /dev's tmpfs.
		"--remount-ro", "/dev",
		"--remount-ro", "/",
		"--chdir", "/",
	)
}

// under reports whether p is one of dirs or inside one.
func under(p string, dirs []string) bool {
	for _, d := range dirs {
		if p == d || strings.HasPrefix(p, d+"/") {
			return true
		}
	}
	return false
}

// Launcher runs cells in bubblewrap sandboxes.
type Launcher struct {
	path string
	proc *process.Launcher
}

// NewLauncher returns a launcher running bwrapPath ("" means "bwrap" from $PATH).
func NewLauncher(bwrapPath string) *Launcher {
	if bwrapPath == "" {
		bwrapPath = DefaultPath
	}
	return &Launcher{path: bwrapPath, proc: process.NewLauncher()}
}

var _ interface {
	Launch(context.Context, cellspec.Spec) (*process.Instance, error)
} = (*Launcher)(nil)

// Launch starts `bwrap Args(spec) -- spec.Exec spec.Args...` with exactly
// spec.Env and returns once bwrap runs; a sandbox that bwrap fails to set up
// shows as an early exit, with bwrap's message in spec.Output. The instance
// is bwrap's: its ID is bwrap's pid, its exit status the cell's (bwrap
// relays it). Stop's SIGTERM goes to the sandbox's processes, not to bwrap;
// its SIGKILL to all of them, and bwrap's death takes the sandbox with it.
func (b *Launcher) Launch(ctx context.Context, spec cellspec.Spec) (*process.Instance, error) {
	if err := checkSpec(spec); err != nil {
		return nil, fmt.Errorf("launch %q: %w", spec.Key, err)
	}
	path, err := Find(b.path)
	if err != nil {
		return nil, fmt.Errorf("launch %q: %w", spec.Key, err)
	}
	sb, err := Prepare(ctx, path, spec, 3)
	if err != nil {
		return nil, fmt.Errorf("launch %q: %w", spec.Key, err)
	}
	defer sb.Close()
	args := append(sb.Args, "--", spec.Exec)
	args = append(args, spec.Args...)
	inst, err := b.proc.Start(ctx, process.Command{
		Path:         path,
		Args:         args,
		Env:          spec.Env,
		Output:       spec.Output,
		SpareLeader:  true,
		Files:        sb.Files,
		FreshKeyring: true,
	})
	if err != nil {
		return nil, fmt.Errorf("launch %q: %w", spec.Key, err)
	}
	return inst, nil
}

// checkSpec rejects paths that Args cannot bind as they are.
func checkSpec(spec cellspec.Spec) error {
	if err := checkPath("exec", spec.Exec); err != nil {
		return err
	}
	if spec.SessionDir != "" {
		if err := checkPath("session dir", spec.SessionDir); err != nil {
			return err
		}
	}
	return nil
}

func checkPath(what, p string) error {
	if !filepath.IsAbs(p) || filepath.Clean(p) != p || p == "/" {
		return fmt.Errorf("%w: %s %q is not an absolute clean path below /", ErrInvalidSpec, what, p)
	}
	switch p {
	case "/proc", "/dev", "/tmp":
		return fmt.Errorf("%w: %s %q would replace a sandbox mount", ErrInvalidSpec, what, p)
	}
	if under(p, []string{"/proc", "/dev"}) {
		return fmt.Errorf("%w: %s %q lies in a sandbox mount", ErrInvalidSpec, what, p)
	}
	return nil
}

// Find is the one way Cell finds bubblewrap: path ("" means DefaultPath on
// $PATH) made absolute, because sandboxes and the scope gate run with an
// environment that has no PATH. A missing binary is ErrNotInstalled, with
// the install command.
func Find(path string) (string, error) {
	if path == "" {
		path = DefaultPath
	}
	p, err := exec.LookPath(path)
	if err != nil {
		return "", fmt.Errorf("%w: %q: %v (install it: apt-get install bubblewrap)", ErrNotInstalled, path, err)
	}
	return filepath.Abs(p)
}
