package sessionroot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"time"

	"go.uber.org/zap"

	"github.com/cellproject/cell/allowlist"
	"github.com/cellproject/cell/internal/app"
	"github.com/cellproject/cell/internal/audit"
	"github.com/cellproject/cell/internal/backends"
	"github.com/cellproject/cell/internal/cellspec"
	"github.com/cellproject/cell/internal/rundir"
	"github.com/cellproject/cell/policy"
	"github.com/cellproject/cell/supervisor"
)

// Options are one session root's settings; the zero value of each field but
// Owner is its default.
type Options struct {
	Owner Owner
	// Allowlist is the allowlist file; empty means rundir.AllowlistPath's
	// default.
	Allowlist string
	// Bwrap and Podman name the binaries; empty means on PATH.
	Bwrap, Podman string
	// PodmanHelper is the cellroot-podman binary (see
	// backends.HelperPath); LogFormat is the format it logs in.
	PodmanHelper, LogFormat string
	// ReadyTimeout bounds a spawn's wait for the cell's socket; StopGrace is
	// the time between SIGTERM and SIGKILL.
	ReadyTimeout, StopGrace time.Duration
	// CellOutput, when set, receives the cells' stdout and stderr, prefixed
	// with each cell's name.
	CellOutput io.Writer
	// Stderr receives the Podman helper's log.
	Stderr io.Writer
}

// Serve runs the session until the owner's umbilical closes or ctx ends,
// then stops every cell and removes the session's files. Only what the
// owner's hello reply needs (the session dir and its socket) is made before
// the hello is answered; dead sessions are collected, and the allowlist and
// the backends loaded, right after it, and spawns wait for them.
func Serve(ctx context.Context, log *zap.Logger, o Options) error {
	// Take the owner's connection first: if anything below fails, closing it
	// tells the owner at once.
	owner, err := o.Owner.conn(ctx)
	if err != nil {
		return err
	}
	base, err := rundir.Base()
	if err != nil {
		owner.Close()
		return err
	}
	collect := func() {
		if ids, err := supervisor.Collect(base, log); err != nil {
			log.Warn("collecting dead sessions", zap.Error(err), zap.Strings("collected", ids))
		}
	}
	// A root killed a moment ago can still hold its lock while its last
	// threads exit (its main thread already a zombie), so that the first
	// pass (in Wire, below) takes it for live: look again a few times while
	// this session serves, rather than leave what it left to the next root.
	recollect, stopRecollect := context.WithCancel(ctx)
	recollected := make(chan struct{})
	go func() {
		defer close(recollected)
		for _, wait := range []time.Duration{200 * time.Millisecond, time.Second, 3 * time.Second} {
			select {
			case <-recollect.Done():
				return
			case <-time.After(wait):
			}
			collect()
		}
	}()
	defer func() { stopRecollect(); <-recollected }()

	cfg := supervisor.Config{Base: base, Log: log, ReadyTimeout: o.ReadyTimeout, StopGrace: o.StopGrace}
	sinks := []audit.Sink{audit.NewZap(log.Named("audit"))}
	// Without a journal the audit goes to the log only; said once the
	// owner's hello is answered (in Wire), like the rest of the wiring.
	j, noJournal := audit.NewJournal(func(err error) { log.Warn("journal", zap.Error(err)) })
	if noJournal == nil {
		sinks = append(sinks, j)
	}
	cfg.Audit = audit.Multi(sinks...)
	cfg.CellOutput = o.CellOutput
	// set is written by cfg.Wire, which the session runs once and waits
	// for before Serve returns: it is safe to read once Serve has returned.
	var set *backends.Set
	collected := make(chan struct{})
	cfg.Wire = func(ctx context.Context) supervisor.Wiring {
		// What dead sessions left is theirs, never this session's (whose
		// root lock is held from its creation), so the owner's hello need
		// not wait for it; spawns do, as they did before.
		collect()
		if noJournal != nil {
			log.Info("audit goes to the log only", zap.Error(noJournal))
		}
		var w supervisor.Wiring
		w.Allowlist, w.AllowlistErr = loadAllowlist(o.Allowlist, log)
		// The check of an app cell's build, pins and signatures before
		// each launch; trust.toml is read at each launch (docs/trust.md).
		w.Vet = app.NewVet(w.Allowlist, "")
		// The podman helper (and Podman) runs at the first podman cell only.
		set = backends.Open(ctx, backends.Options{Base: base, Bwrap: o.Bwrap, Podman: o.Podman,
			WantPodman: mayUsePodman(w.Allowlist), Helper: o.PodmanHelper, HelperStderr: o.Stderr,
			HelperLogFormat: o.LogFormat, Log: log})
		// What dead sessions left in the backends (containers, slices) is
		// collected while this session serves and spawns: the spawns need
		// not wait for Podman or the bus.
		go func() {
			defer close(collected)
			if err := set.CollectDead(ctx, base); err != nil {
				log.Warn("collecting dead sessions in the backends", zap.Error(err))
			}
		}()
		w.Launchers, w.Capabilities = set.Launchers, set.Capabilities
		for b, c := range set.Capabilities {
			log.Info("backend", zap.String("backend", string(b)), zap.Bool("available", c.Available),
				zap.Bool("enforces_limits", c.EnforcesLimits), zap.String("note", c.Reason))
		}
		auto, why := policy.AutoChoice(set.Capabilities)
		log.Info("auto backend", zap.String("backend", string(auto)), zap.String("note", why))
		return w
	}

	s, err := supervisor.New(cfg)
	if err != nil {
		owner.Close()
		// No session, so no Wire: collect here, as every root start does.
		collect()
		return err
	}
	err = s.Serve(ctx, owner)
	// The supervisor ended the session's containers and slice
	// (EndSession); what outlives a session, such as a Podman service of
	// the root's own, goes now.
	<-collected
	end, cancel := context.WithTimeout(context.Background(), 2*o.StopGrace+5*time.Second)
	defer cancel()
	// Once more at the end: a root killed just before this one started
	// may have left a Podman helper that still held its lock then.
	if err := set.CollectDead(end, base); err != nil {
		log.Warn("collecting dead sessions in the backends", zap.Error(err))
	}
	if err := set.Close(end); err != nil {
		log.Warn("closing the backends", zap.Error(err))
	}
	return err
}

// loadAllowlist loads the allowlist at flagValue (or its default). When it
// is missing or unusable, the error is why every spawn is denied.
func loadAllowlist(flagValue string, log *zap.Logger) (*allowlist.File, error) {
	path, err := rundir.AllowlistPath(flagValue)
	var al *allowlist.File
	if err == nil {
		al, err = allowlist.Load(path)
	}
	switch {
	case errors.Is(err, fs.ErrNotExist):
		log.Warn("no allowlist", zap.String("path", path))
		return nil, fmt.Errorf("no allowlist at %s: every spawn is denied", path)
	case err != nil:
		log.Error("allowlist unusable", zap.Error(err))
		return al, fmt.Errorf("allowlist unusable, every spawn is denied: %w", err)
	}
	return al, nil
}

// mayUsePodman reports whether a cell of al could run on podman: only then
// is a Podman service worth finding or starting. A missing or broken
// allowlist runs nothing.
func mayUsePodman(al *allowlist.File) bool {
	if al == nil {
		return false
	}
	for _, c := range al.Cells {
		if c.Backend == cellspec.Podman || c.Backend == cellspec.Auto {
			return true
		}
	}
	return false
}
