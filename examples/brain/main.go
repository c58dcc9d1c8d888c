// Command brain is the owner of the example app: it starts a session root
// (with -app, through app.Run, which first builds the cells of the app
// folder and starts its autostart cells), grows eye (which grows retina,
// which grows cone, each through the root), asks eye to see, prints the
// answer and the session's cells, and closes the session, which tears every
// cell down.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/cellproject/cell/cell"
	"github.com/cellproject/cell/examples/demo"
	"github.com/cellproject/cell/internal/app"
	"github.com/cellproject/cell/wire"
)

func main() {
	cellroot := flag.String("cellroot", os.Getenv(cell.EnvCellroot), "cellroot binary (default $CELLROOT, else cellroot on $PATH)")
	allowlist := flag.String("allowlist", os.Getenv("CELL_ALLOWLIST"), "allowlist.toml for the session root (default $CELL_ALLOWLIST, else the user's)")
	hold := flag.Duration("hold", 0, "keep the session open this long before closing it (to watch `cellroot ps`)")
	timeout := flag.Duration("timeout", time.Minute, "give up growing and asking after this long")
	verbose := flag.Bool("v", false, "log what the SDK does")
	appDir := flag.String("app", "", "run the app folder DIR (cells/NAME/Cell.toml): build its cells and start the autostart ones first")
	goBin := flag.String("go", os.Getenv("CELL_GO"), "go command for building the app's cells (with -app)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	log := slog.New(slog.DiscardHandler)
	if *verbose {
		log = demo.Logger("brain")
	}
	start := func(ctx context.Context) (*cell.Session, error) {
		return cell.Start(ctx, cell.OwnerOptions{Cellroot: *cellroot, Allowlist: *allowlist, Logger: log})
	}
	if *appDir != "" {
		// The app's own main as its owner: app.Run builds the cells, starts
		// the session and the autostart cells, and hands back the session.
		start = func(ctx context.Context) (*cell.Session, error) {
			r, err := app.Run(ctx, *appDir, app.Options{Cellroot: *cellroot, Allowlist: *allowlist, Go: *goBin,
				Progress: os.Stdout, Logger: log})
			if err != nil {
				return nil, err
			}
			return r.Session, nil
		}
	}
	if err := run(ctx, os.Stdout, start, *timeout, *hold); err != nil {
		fmt.Fprintln(os.Stderr, "brain:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, out io.Writer, start func(context.Context) (*cell.Session, error), timeout, hold time.Duration) (err error) {
	s, err := start(ctx)
	if err != nil {
		return err
	}
	// Closing ends the session: the root stops every cell and exits.
	defer func() {
		if cerr := s.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("close session: %w", cerr)
		}
	}()
	fmt.Fprintf(out, "session %s in %s\n", s.ID(), s.Dir())

	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	eye, err := s.Grow(wctx, "eye")
	if err != nil {
		return err
	}
	defer eye.Close()
	saw, err := eye.Call(wctx, "see", nil)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "eye saw: %s\n", saw)

	cells, err := s.List(wctx)
	if err != nil {
		return err
	}
	printCells(out, cells)

	if hold > 0 {
		fmt.Fprintf(out, "holding the session for %s (try: cellroot ps)\n", hold)
		select {
		case <-time.After(hold):
		case <-ctx.Done():
		}
	}
	return nil
}

func printCells(out io.Writer, cells []wire.CellInfo) {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tPARENT\tDEPTH\tBACKEND\tSTATE\tID")
	for _, c := range cells {
		parent := c.Parent
		if parent == "" {
			parent = "(owner)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\n", c.Key, parent, c.Depth, c.Backend, c.State, c.ID)
	}
	tw.Flush()
}
