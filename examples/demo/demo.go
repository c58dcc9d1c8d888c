package demo

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/cellproject/cell/cell"
)

// CallTimeout bounds each call a cell makes to another, so that one stuck
// cell down the chain fails the request instead of hanging it.
const CallTimeout = 20 * time.Second

// Logger logs human-readable lines to stderr, which the root collects.
func Logger(name string) *slog.Logger {
	h := slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{
		// The root's log has the time.
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	})
	return slog.New(h).With("logger", name)
}

// CellMain is the whole main of an example cell: it joins the session from
// the environment, builds the handler (which may Grow other cells through
// the session) and serves until idle, until the root goes away, or until
// SIGTERM/SIGINT. It returns the process exit code.
func CellMain(name string, handler func(s *cell.Session, log *slog.Logger) cell.Handler) int {
	idle := flag.Duration("idle", 30*time.Second, "exit after this long without connections (0: never)")
	flag.Parse()
	log := Logger(name)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	s, err := cell.JoinWith(ctx, cell.JoinOptions{Logger: log})
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n(this program is a cell: start it through cellroot, e.g. by running brain)\n", name, err)
		return 1
	}
	defer s.Close()

	err = cell.Serve(ctx, handler(s, log), cell.ServeOptions{Session: s, IdleTimeout: *idle, Logger: log,
		// A peer that asks may move its connection to a gap junction.
		Junction: true})
	switch {
	case errors.Is(err, cell.ErrAlreadyRunning):
		// Another instance serves this name; it is the one peers reach.
		log.Info("another instance is running; exiting")
		return 0
	case err != nil:
		log.Error("serve failed", "err", err)
		return 1
	}
	return 0
}
