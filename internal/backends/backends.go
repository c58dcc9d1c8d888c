// Package backends opens the backends a session root launches cells with, as
// far as this machine has them, says what each can do, and closes them after
// the session: the one place that knows every kind of backend, so that the
// supervisor and the command need not.
package backends

import (
	"context"
	"errors"
	"fmt"
	"os"

	"go.uber.org/zap"

	"github.com/cellproject/cell/bwrap"
	"github.com/cellproject/cell/internal/cellspec"
	"github.com/cellproject/cell/internal/hostcap"
	"github.com/cellproject/cell/internal/process"
	"github.com/cellproject/cell/internal/rundir"
	"github.com/cellproject/cell/internal/scope"
	"github.com/cellproject/cell/podman"
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
	// WantPodman opens Podman, which may start a service: only worth it
	// when a cell may run there.
	WantPodman bool
	// Gate is the cellroot binary the scope backend runs as its gate;
	// empty means this executable.
	Gate string
	Log  *zap.Logger
}

// Set is the opened backends of one root.
type Set struct {
	// Backends are the launchers, by kind; Capabilities what each can do
	// here, with the reason when not.
	Backends     map[cellspec.Backend]supervisor.Backend
	Capabilities map[cellspec.Backend]policy.Capability
	// Podman is the service in use, when Podman was opened.
	Podman *PodmanService

	pod *podman.Backend
	sc  *scope.Backend
}

// PodmanService is the Podman API the podman backend talks to.
type PodmanService struct {
	Socket, Version string
	// Own is true when the root started the service itself because no
	// podman.socket of the user answered.
	Own bool
}

func (p *PodmanService) String() string {
	s := fmt.Sprintf("API %s on %s", p.Version, p.Socket)
	if p.Own {
		s += " (a service of the root's own: no podman.socket of the user answered)"
	}
	return s
}

// Open probes every backend and opens those that work. It never fails: a
// backend that cannot be opened is unavailable, with the reason.
func Open(ctx context.Context, o Options) *Set {
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	s := &Set{Backends: map[cellspec.Backend]supervisor.Backend{cellspec.Process: supervisor.Adapt(process.New())}}
	hopts := hostcap.Options{Bwrap: o.Bwrap, Scope: s.openScope(o)}
	if o.WantPodman {
		hopts.Podman = s.openPodman(o)
	}
	caps := hostcap.Detect(ctx, hopts)
	if !o.WantPodman {
		caps.Capabilities[cellspec.Podman] = policy.Capability{Reason: "not probed: no cell of the allowlist may run on podman"}
	}
	s.Capabilities = caps.Capabilities
	if caps.BwrapPath != "" {
		s.Backends[cellspec.Bwrap] = supervisor.Adapt(bwrap.New(caps.BwrapPath))
	}
	if s.pod != nil {
		s.Backends[cellspec.Podman] = supervisor.Adapt(s.pod)
	}
	if s.sc != nil && caps.Capabilities[cellspec.Scope].Available {
		s.Backends[cellspec.Scope] = supervisor.Adapt(s.sc)
	}
	return s
}

func (s *Set) openPodman(o Options) func(context.Context) error {
	return func(ctx context.Context) error {
		if o.Base == "" {
			return errors.New("no usable runtime dir for a Podman service")
		}
		pod, err := podman.Open(ctx, podman.Options{Podman: o.Podman, Base: o.Base, Log: o.Log.Named("podman")})
		if err != nil {
			return err
		}
		s.pod = pod
		s.Podman = &PodmanService{Socket: pod.Socket(), Version: pod.Version(), Own: pod.OwnService()}
		return nil
	}
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
		sc, err := scope.New(ctx, scope.Options{Gate: gate, Bwrap: bw})
		if err != nil {
			return err
		}
		s.sc = sc
		return nil
	}
}

// CollectDead removes what killed sessions under base left in the backends:
// containers still labelled with them, and their empty slices.
func (s *Set) CollectDead(ctx context.Context, base string) error {
	live := func(id string) bool { return rundir.Live(base, id) }
	var errs []error
	if s.pod != nil {
		if _, err := s.pod.CollectDead(ctx, live); err != nil {
			errs = append(errs, fmt.Errorf("containers of dead sessions: %w", err))
		}
	}
	if _, ok := s.Backends[cellspec.Scope]; ok {
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
