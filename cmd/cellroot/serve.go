package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"go.uber.org/zap"

	"github.com/cellproject/cell/internal/rootlog"
	"github.com/cellproject/cell/internal/sessionroot"
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
	o := sessionroot.Options{
		Owner:     sessionroot.Owner{FD: *fd, Listen: *listen, Activated: *activated},
		Allowlist: *alPath, Bwrap: *bwrapBin, Podman: *podmanBin,
		PodmanHelper: *podmanHelper, LogFormat: *logFormat,
		ReadyTimeout: *readyTimeout, StopGrace: *stopGrace, Stderr: stderr,
	}
	if *cellOutput {
		o.CellOutput = stderr
	}
	if err := sessionroot.Serve(ctx, log, o); err != nil {
		log.Error("serve failed", zap.Error(err))
		return 1
	}
	return 0
}
