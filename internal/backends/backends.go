// Package backends opens the backends a session root launches cells with, as
// far as this machine has them, says what each can do, and closes them after
// the session: the one place that knows every kind of backend, so that the
// supervisor and the command need not.
package backends

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"

	"go.uber.org/zap"

	"github.com/cellproject/cell/bwrap"
	"github.com/cellproject/cell/internal/cellspec"
	"github.com/cellproject/cell/internal/hostcap"
	"github.com/cellproject/cell/internal/podmanhelper"
	"github.com/cellproject/cell/internal/process"
	"github.com/cellproject/cell/internal/rundir"
	"github.com/cellproject/cell/internal/scope"
	"github.com/cellproject/cell/policy"
	"github.com/cellproject/cell/supervisor"
)

// Options say where the tools are and what is wanted.
type Options struct {
	// Base is the user's runtime dir; Podman's private service dir goes
	// there. Empty: no Podman.
	Base string
	// Bwrap and Podman name the binaries; empty means on PATH.
	Bwrap, Podman string
	// WantPodman wires the podman backend: only worth it when a cell may
	// run there. Its helper opens Podman (which may start a service) at the
	// first podman cell, or at once when PodmanNow is set (doctor).
	WantPodman, PodmanNow bool
	// Helper is the cellroot-podman binary; empty means
	// $CELL_PODMAN_HELPER, else cellroot-podman beside this executable.
	Helper string
	// HelperStderr receives the helper's log, in HelperLogFormat.
	HelperStderr    io.Writer
	HelperLogFormat string
	// Gate is the cellroot binary the scope backend runs as its gate;
	// empty means this executable.
	Gate string
	Log  *zap.Logger
}

// Set is the opened backends of one root.
type Set struct {
	// Launchers launch cells, by backend; Capabilities say what each can do
	// here, with the reason when not.
	Launchers    map[cellspec.Backend]supervisor.Launcher
	Capabilities map[cellspec.Backend]policy.Capability
	// Podman is the service in use, when Podman was opened (PodmanNow).
	Podman *podmanhelper.Info

	pod *podmanhelper.Launcher
	sc  *scope.Launcher
}

// Open probes every backend and opens those that work. It never fails: a
// backend that cannot be opened is unavailable, with the reason.
func Open(ctx context.Context, o Options) *Set {
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	s := &Set{Launchers: map[cellspec.Backend]supervisor.Launcher{cellspec.Process: supervisor.Adapt(process.NewLauncher())}}
	hopts := hostcap.Options{Bwrap: o.Bwrap, ProbeCache: o.Base, Scope: s.openScope(o)}
	if o.WantPodman {
		hopts.Podman = s.openPodman(o)
	}
	caps := hostcap.Detect(ctx, hopts)
	if !o.WantPodman {
		caps.Capabilities[cellspec.Podman] = policy.Capability{Reason: "not probed: no cell of the allowlist may run on podman"}
	}
	s.Capabilities = caps.Capabilities
	if caps.BwrapPath != "" {
		s.Launchers[cellspec.Bwrap] = supervisor.Adapt(bwrap.NewLauncher(caps.BwrapPath))
	}
	if s.pod != nil {
		s.Launchers[cellspec.Podman] = supervisor.Adapt(s.pod)
	}
	if s.sc != nil && caps.Capabilities[cellspec.Scope].Available {
		s.Launchers[cellspec.Scope] = supervisor.Adapt(s.sc)
	}
	return s
}

// openPodman checks what the podman backend needs without running it: the
// helper binary and podman on PATH. The helper itself, and with it the
// service, runs at the first podman cell (or now, with PodmanNow); a failure
// then fails that spawn with the reason.
func (s *Set) openPodman(o Options) func(context.Context) error {
	return func(ctx context.Context) error {
		if o.Base == "" {
			return errors.New("no usable runtime dir for a Podman service")
		}
		if os.Geteuid() == 0 {
			return errors.New("the podman backend runs rootless containers only: run cellroot as the user")
		}
		helper, err := HelperPath(o.Helper)
		if err != nil {
			return err
		}
		name := o.Podman
		if name == "" {
			name = "podman"
		}
		if _, err := exec.LookPath(name); err != nil {
			return fmt.Errorf("podman not found (%v): install it (apt-get install podman)", err)
		}
		pod := podmanhelper.NewLauncher(podmanhelper.Options{Helper: helper, Base: o.Base, Podman: o.Podman,
			Stderr: o.HelperStderr, LogFormat: o.HelperLogFormat, Log: o.Log.Named("podman")})
		if o.PodmanNow {
			info, err := pod.Open(ctx)
			if err != nil {
				pod.Close(ctx)
				return err
			}
			s.Podman = &info
		}
		s.pod = pod
		return nil
	}
}

// HelperPath finds the podman helper: flagValue, else $CELL_PODMAN_HELPER,
// else cellroot-podman beside this executable. It must be an executable
// regular file; the error says where it was looked for.
func HelperPath(flagValue string) (string, error) {
	p := flagValue
	if p == "" {
		p = os.Getenv("CELL_PODMAN_HELPER")
	}
	if p == "" {
		self, err := os.Executable()
		if err != nil {
			return "", fmt.Errorf("find the podman helper beside cellroot: %w", err)
		}
		p = filepath.Join(filepath.Dir(self), podmanhelper.HelperName)
	}
	fi, err := os.Stat(p)
	switch {
	case err != nil:
		return "", fmt.Errorf("podman helper %s: %w (install %s beside cellroot, or pass --podman-helper)", p, err, podmanhelper.HelperName)
	case !fi.Mode().IsRegular() || fi.Mode()&0o111 == 0:
		return "", fmt.Errorf("podman helper %s is not an executable file (mode %s)", p, fi.Mode())
	}
	return p, nil
}

func (s *Set) openScope(o Options) func(context.Context) error {
	return func(ctx context.Context) error {
		gate := o.Gate
		if gate == "" {
			self, err := os.Executable()
			if err != nil {
				return fmt.Errorf("find cellroot for the scope gate: %w", err)
			}
			gate = self
		}
		bw, err := bwrap.Find(o.Bwrap)
		if err != nil {
			return fmt.Errorf("scopes run bubblewrap: %w", err)
		}
		sc, err := scope.NewLauncher(ctx, scope.Options{Gate: gate, Bwrap: bw})
		if err != nil {
			return err
		}
		s.sc = sc
		return nil
	}
}

// CollectDead removes what killed sessions under base left in the backends:
// containers still labelled with them, and their empty slices. The podman
// helper runs for it only when a podman backend died without closing: only
// such a backend can have left containers.
func (s *Set) CollectDead(ctx context.Context, base string) error {
	live := func(id string) bool { return rundir.Live(base, id) }
	var errs []error
	if s.pod != nil && podmanhelper.DeadBackends(base) {
		if _, err := s.pod.CollectDead(ctx); err != nil {
			errs = append(errs, fmt.Errorf("containers of dead sessions: %w", err))
		}
	}
	if _, ok := s.Launchers[cellspec.Scope]; ok {
		if _, err := s.sc.CollectDead(ctx, live); err != nil {
			errs = append(errs, fmt.Errorf("slices of dead sessions: %w", err))
		}
	}
	return errors.Join(errs...)
}

// Close releases what the backends hold beyond the session: a Podman service
// the root started, the bus connection. Call it after the session ended.
func (s *Set) Close(ctx context.Context) error {
	var err error
	if s.pod != nil {
		err = s.pod.Close(ctx)
	}
	if s.sc != nil {
		s.sc.Close()
	}
	return err
}
