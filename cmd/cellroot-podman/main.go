// Command cellroot-podman is the session root's Podman helper: it links the
// Podman v5 bindings, which the root does not, and serves the podman
// backend to the root over the socketpair it inherits as descriptor 3 (see
// internal/podmanhelper for the protocol). The root runs it only when a
// Podman cell is first spawned; it dies with the root. It is not a command
// for people.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/cellproject/cell/internal/rootlog"

	"go.uber.org/zap"

	"github.com/cellproject/cell/internal/cellspec"
	"github.com/cellproject/cell/internal/podmanhelper"
	"github.com/cellproject/cell/podman"
)

func main() { os.Exit(run(os.Args[1:], os.Stderr)) }

func run(args []string, stderr io.Writer) int {
	fl := flag.NewFlagSet("cellroot-podman", flag.ContinueOnError)
	fl.SetOutput(stderr)
	base := fl.String("base", "", "the user's Cell runtime dir (required)")
	podmanBin := fl.String("podman", "", "podman binary, for a service of the helper's own (default podman on PATH)")
	logFormat := fl.String("log-format", "console", "log format on stderr: console or json")
	if err := fl.Parse(args); err != nil {
		return 2
	}
	if *base == "" || fl.NArg() != 0 {
		fmt.Fprintln(stderr, "cellroot-podman: --base is required and nothing else; the session root runs this helper, not people")
		return 2
	}
	log, err := rootlog.New("cellroot-podman", *logFormat, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "cellroot-podman: %v\n", err)
		return 2
	}
	defer log.Sync()
	f := os.NewFile(3, "root")
	conn, err := net.FileConn(f)
	f.Close()
	if err != nil {
		log.Error("descriptor 3 is not the root's socket", zap.Error(err))
		return 2
	}
	// SIGTERM (the root's graceful stop) closes the launcher like a close.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	err = podmanhelper.Serve(ctx, conn, podmanhelper.ServeOptions{
		Base: *base,
		Log:  log,
		Open: func(ctx context.Context) (podmanhelper.Podman, podmanhelper.Info, error) {
			b, err := podman.Open(ctx, podman.Options{Podman: *podmanBin, Base: *base, Log: log.Named("podman")})
			if err != nil {
				return nil, podmanhelper.Info{}, err
			}
			return launcher{b}, podmanhelper.Info{Socket: b.Socket(), Version: b.Version(), Own: b.OwnService()}, nil
		},
	})
	if err != nil {
		log.Info("helper ending", zap.Error(err))
		return 1
	}
	return 0
}

// launcher serves the podman package's launcher, whose Launch returns its
// own instance type.
type launcher struct{ *podman.Launcher }

func (l launcher) Launch(ctx context.Context, spec cellspec.Spec) (podmanhelper.Container, error) {
	in, err := l.Launcher.Launch(ctx, spec)
	if err != nil {
		return nil, err
	}
	return in, nil
}
