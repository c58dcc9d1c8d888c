package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"time"

	"github.com/cellproject/cell/internal/rootlog"

	"github.com/coreos/go-systemd/v22/activation"
	"go.uber.org/zap"

	"github.com/cellproject/cell/allowlist"
	"github.com/cellproject/cell/internal/audit"
	"github.com/cellproject/cell/internal/backends"
	"github.com/cellproject/cell/internal/cellspec"
	"github.com/cellproject/cell/internal/rundir"
	"github.com/cellproject/cell/policy"
	"github.com/cellproject/cell/supervisor"
)

func runServe(ctx context.Context, args []string, stderr io.Writer) int {
	fl := newFlags("serve", stderr)
	fd := fl.Int("umbilical-fd", -1, "inherited file descriptor of the owner's connected umbilical socket (what the SDK passes)")
	listen := fl.String("listen", "", "accept the owner's umbilical as the first connection on this socket path instead")
	activated := fl.Bool("systemd-activation", false, "take the owner's umbilical from systemd socket activation (one connection, Accept=yes; see deploy/systemd)")
	alPath := fl.String("allowlist", "", "allowlist file (default $CELL_ALLOWLIST, else $XDG_CONFIG_HOME/cell/allowlist.toml)")
	bwrapBin := fl.String("bwrap", "", "bubblewrap binary (default bwrap on PATH)")
	podmanBin := fl.String("podman", "", "podman binary, for a Podman service of the root's own (default podman on PATH)")
	podmanHelper := fl.String("podman-helper", "", "the Podman helper binary, run at the first podman cell (default $CELL_PODMAN_HELPER, else cellroot-podman beside cellroot)")
	readyTimeout := fl.Duration("ready-timeout", 10*time.Second, "how long a spawn waits for the cell's socket")
	stopGrace := fl.Duration("stop-grace", 3*time.Second, "time between SIGTERM and SIGKILL when stopping a cell")
	logFormat := fl.String("log-format", "console", "log format on stderr: console or json")
	cellOutput := fl.Bool("cell-output", true, "copy the cells' stdout and stderr to stderr, prefixed with the cell's name")
	setUsage(fl, `Usage: cellroot serve (--umbilical-fd N | --listen PATH | --systemd-activation) [flags]

Runs one session root. It ends, after stopping every cell and removing the
session dir, when the owner's umbilical connection closes or on SIGTERM/SIGINT.
At start it collects what dead sessions of this user left behind.

Flags:
`)
	if code, ok := parseFlags(fl, args); !ok {
		return code
	}
	sources := 0
	for _, set := range []bool{*fd >= 0, *listen != "", *activated} {
		if set {
			sources++
		}
	}
	if fl.NArg() != 0 || sources != 1 {
		fmt.Fprintln(stderr, "cellroot serve: exactly one of --umbilical-fd, --listen or --systemd-activation is required")
		fl.Usage()
		return 2
	}
	log, err := rootlog.New("cellroot", *logFormat, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "cellroot serve: %v\n", err)
		return 2
	}
	defer log.Sync()
	if err := serve(ctx, log, serveOptions{fd: *fd, listen: *listen, activated: *activated, allowlist: *alPath, bwrap: *bwrapBin, podman: *podmanBin,
		podmanHelper: *podmanHelper, logFormat: *logFormat,
		readyTimeout: *readyTimeout, stopGrace: *stopGrace, cellOutput: *cellOutput, stderr: stderr}); err != nil {
		log.Error("serve failed", zap.Error(err))
		return 1
	}
	return 0
}

type serveOptions struct {
	fd                      int
	listen                  string
	activated               bool
	allowlist, bwrap        string
	podman, podmanHelper    string
	logFormat               string
	readyTimeout, stopGrace time.Duration
	cellOutput              bool
	stderr                  io.Writer
}

func serve(ctx context.Context, log *zap.Logger, o serveOptions) error {
	// Take the owner's connection first: if anything below fails, closing it
	// tells the owner at once.
	owner, err := ownerConn(ctx, o)
	if err != nil {
		return err
	}
	base, err := rundir.Base()
	if err != nil {
		owner.Close()
		return err
	}
	if ids, err := supervisor.Collect(base, log); err != nil {
		log.Warn("collecting dead sessions", zap.Error(err), zap.Strings("collected", ids))
	}

	cfg := supervisor.Config{Base: base, Log: log, ReadyTimeout: o.readyTimeout, StopGrace: o.stopGrace}
	path, err := rundir.AllowlistPath(o.allowlist)
	if err == nil {
		cfg.Allowlist, err = allowlist.Load(path)
	}
	switch {
	case errors.Is(err, fs.ErrNotExist):
		cfg.AllowlistErr = fmt.Errorf("no allowlist at %s: every spawn is denied", path)
		log.Warn("no allowlist", zap.String("path", path))
	case err != nil:
		cfg.AllowlistErr = fmt.Errorf("allowlist unusable, every spawn is denied: %w", err)
		log.Error("allowlist unusable", zap.Error(err))
	}
	cfg.Vet = vetHook(cfg.Allowlist)

	// The podman helper (and Podman) runs at the first podman cell only.
	set := backends.Open(ctx, backends.Options{Base: base, Bwrap: o.bwrap, Podman: o.podman,
		WantPodman: mayUsePodman(cfg.Allowlist), Helper: o.podmanHelper, HelperStderr: o.stderr,
		HelperLogFormat: o.logFormat, Log: log})
	// The supervisor ends each session's containers and slice (EndSession);
	// what outlives a session, such as a Podman service of the root's own,
	// goes once Serve returns.
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*o.stopGrace+5*time.Second)
		defer cancel()
		// Once more at the end: a root killed just before this one started
		// may have left a Podman helper that still held its lock then.
		if err := set.CollectDead(ctx, base); err != nil {
			log.Warn("collecting dead sessions in the backends", zap.Error(err))
		}
		if err := set.Close(ctx); err != nil {
			log.Warn("closing the backends", zap.Error(err))
		}
	}()
	if err := set.CollectDead(ctx, base); err != nil {
		log.Warn("collecting dead sessions in the backends", zap.Error(err))
	}
	cfg.Backends, cfg.Capabilities = set.Backends, set.Capabilities
	for b, c := range set.Capabilities {
		log.Info("backend", zap.String("backend", string(b)), zap.Bool("available", c.Available),
			zap.Bool("enforces_limits", c.EnforcesLimits), zap.String("note", c.Reason))
	}
	auto, why := policy.AutoChoice(set.Capabilities)
	log.Info("auto backend", zap.String("backend", string(auto)), zap.String("note", why))

	sinks := []audit.Sink{audit.NewZap(log.Named("audit"))}
	if j, err := audit.NewJournal(func(err error) { log.Warn("journal", zap.Error(err)) }); err == nil {
		sinks = append(sinks, j)
	} else {
		log.Info("audit goes to the log only", zap.Error(err))
	}
	cfg.Audit = audit.Multi(sinks...)
	if o.cellOutput {
		cfg.CellOutput = o.stderr
	}

	s, err := supervisor.New(cfg)
	if err != nil {
		owner.Close()
		return err
	}
	return s.Serve(ctx, owner)
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

// ownerConn returns the owner's umbilical: the inherited descriptor, the
// connection systemd accepted for this instance, or the first connection
// accepted on the listen path.
func ownerConn(ctx context.Context, o serveOptions) (net.Conn, error) {
	switch {
	case o.activated:
		files := activation.Files(true)
		if len(files) != 1 {
			for _, f := range files {
				f.Close()
			}
			return nil, fmt.Errorf("socket activation passed %d descriptors; the socket unit must use Accept=yes and pass exactly the accepted connection", len(files))
		}
		return fileConn(files[0], "activation")
	case o.fd >= 0:
		f := os.NewFile(uintptr(o.fd), "umbilical")
		if f == nil {
			return nil, fmt.Errorf("umbilical fd %d is not open", o.fd)
		}
		return fileConn(f, fmt.Sprintf("fd %d", o.fd))
	}
	ln, err := net.Listen("unix", o.listen)
	if err != nil {
		return nil, fmt.Errorf("listen for the owner: %w", err)
	}
	defer ln.Close()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	conn, err := ln.Accept()
	if err != nil {
		return nil, fmt.Errorf("accept the owner on %s: %w", o.listen, err)
	}
	return conn, nil
}

// fileConn turns an inherited descriptor into the owner's connection; it
// must be a connected unix socket.
func fileConn(f *os.File, what string) (net.Conn, error) {
	defer f.Close()
	conn, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("umbilical %s: %w", what, err)
	}
	if _, ok := conn.(*net.UnixConn); !ok {
		conn.Close()
		return nil, fmt.Errorf("umbilical %s is not a unix socket", what)
	}
	return conn, nil
}
