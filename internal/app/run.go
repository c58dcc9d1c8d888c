package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"strings"

	"github.com/cellproject/cell/allowlist"
	"github.com/cellproject/cell/cell"
	"github.com/cellproject/cell/internal/cellbuild"
	"github.com/cellproject/cell/internal/rundir"
)

// ErrNotGranted: a cell to start has no allowlist entry for this app's
// source; `cellroot allow APPDIR` writes them.
var ErrNotGranted = errors.New("app: not granted")

// Options configures Run and Build; the zero value uses the defaults of
// each field.
type Options struct {
	// Cellroot is the cellroot binary (see cell.OwnerOptions).
	Cellroot string
	// Allowlist is the allowlist the session root reads; "" is
	// $CELL_ALLOWLIST, else $XDG_CONFIG_HOME/cell/allowlist.toml.
	Allowlist string
	// Go, Bwrap and CacheDir configure the builds (see cellbuild.Builder).
	Go, Bwrap, CacheDir string
	// Progress receives build and start progress, one line per step.
	Progress io.Writer
	// Stderr receives cellroot's log; ServeArgs are more flags for it.
	Stderr    io.Writer
	ServeArgs []string
	Logger    *slog.Logger
}

// Running is an app whose autostart cells run in its session.
type Running struct {
	*cell.Session
	App    *App
	Builds []cellbuild.Result
	// Started lists the cells started, in the order they were.
	Started []string
}

// Build discovers the app at dir and builds every cell, in dependency order.
func Build(ctx context.Context, dir string, opts Options) (*App, []cellbuild.Result, error) {
	a, err := Discover(dir)
	if err != nil {
		return nil, nil, err
	}
	srcs := make([]cellbuild.Source, 0, len(a.Order))
	for _, n := range a.Order {
		s, err := cellbuild.SourceOf(n, a.Cells[n].Dir)
		if err != nil {
			return nil, nil, fmt.Errorf("cell %s (%s): %w", n, a.Cells[n].File, err)
		}
		srcs = append(srcs, s)
	}
	b := &cellbuild.Builder{Go: opts.Go, Bwrap: opts.Bwrap, CacheDir: opts.CacheDir, Progress: opts.Progress}
	res, err := b.Build(ctx, srcs)
	return a, res, err
}

// Run runs the app at dir with this process as its owner: it discovers and
// builds the cells, starts a session root (cell.Start), and spawns the
// autostart cells and their dependencies, each once its dependencies are
// ready. The session lasts until the returned Running is closed or this
// process ends. On any error nothing of the session is left running.
//
// Run starts only cells whose allowlist entry names this app's source (as
// `cellroot allow` writes it), so that an entry of the same name for another
// program is never started in the app's place. What each cell may do is
// still decided by the root, from the allowlist alone.
func Run(ctx context.Context, dir string, opts Options) (*Running, error) {
	a, res, err := Build(ctx, dir, opts)
	if err != nil {
		return nil, err
	}
	order := a.StartOrder()
	if err := checkGranted(a, order, opts); err != nil {
		return nil, err
	}
	s, err := cell.Start(ctx, cell.OwnerOptions{Cellroot: opts.Cellroot, Allowlist: opts.Allowlist,
		Args: opts.ServeArgs, Stderr: opts.Stderr, Logger: opts.Logger})
	if err != nil {
		return nil, err
	}
	r := &Running{Session: s, App: a, Builds: res}
	for i, n := range order {
		after := ""
		if deps := a.Cells[n].DependsOn; len(deps) > 0 {
			after = " (after " + strings.Join(deps, ", ") + ")"
		}
		progress(opts.Progress, "start [%d/%d] %s%s", i+1, len(order), n, after)
		if _, err := s.Spawn(ctx, n); err != nil {
			s.Close()
			return nil, fmt.Errorf("start cell %s: %w", n, err)
		}
		r.Started = append(r.Started, n)
		progress(opts.Progress, "start [%d/%d] %s: ready", i+1, len(order), n)
	}
	return r, nil
}

func checkGranted(a *App, order []string, opts Options) error {
	path, err := rundir.AllowlistPath(opts.Allowlist)
	if err != nil {
		return err
	}
	al, err := allowlist.Load(path)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: no allowlist at %s: run `cellroot allow %s`", ErrNotGranted, path, a.Dir)
	} else if err != nil {
		return err
	}
	var missing []string
	for _, n := range order {
		e, ok := al.Cells[n]
		switch {
		case !ok:
			missing = append(missing, n+" (not listed)")
		case e.Source != a.Cells[n].Dir:
			missing = append(missing, fmt.Sprintf("%s (its entry names %s, not %s)", n, orExec(e), a.Cells[n].Dir))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: %s grants no entry for %s; review and grant them with `cellroot allow %s`",
			ErrNotGranted, path, strings.Join(missing, ", "), a.Dir)
	}
	return nil
}

func orExec(e allowlist.Cell) string {
	if e.Source != "" {
		return "source " + e.Source
	}
	return "exec " + e.Exec
}

func progress(w io.Writer, format string, args ...any) {
	if w != nil {
		fmt.Fprintf(w, format+"\n", args...)
	}
}
