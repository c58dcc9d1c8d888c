// Command brain is the owner of the example app: it starts a session root,
// grows eye (which grows retina, which grows cone, each through the root),
// asks eye to see, prints the answer and the session's cells, and closes the
// session, which tears every cell down.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"text/tabwriter"
	"time"

	"go.uber.org/zap"

	"github.com/cellproject/cell/cell"
	"github.com/cellproject/cell/examples/internal/demo"
	"github.com/cellproject/cell/wire"
)

func main() {
	cellroot := flag.String("cellroot", os.Getenv(cell.EnvCellroot), "cellroot binary (default $CELLROOT, else cellroot on $PATH)")
	allowlist := flag.String("allowlist", os.Getenv("CELL_ALLOWLIST"), "allowlist.toml for the session root (default $CELL_ALLOWLIST, else the user's)")
	hold := flag.Duration("hold", 0, "keep the session open this long before closing it (to watch `cellroot ps`)")
	timeout := flag.Duration("timeout", time.Minute, "give up growing and asking after this long")
	verbose := flag.Bool("v", false, "log what the SDK does")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	log := zap.NewNop()
	if *verbose {
		log = demo.Logger("brain")
	}
	if err := run(ctx, os.Stdout, cell.OwnerOptions{Cellroot: *cellroot, Allowlist: *allowlist, Logger: log}, *timeout, *hold); err != nil {
		fmt.Fprintln(os.Stderr, "brain:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, out io.Writer, opts cell.OwnerOptions, timeout, hold time.Duration) (err error) {
	s, err := cell.Start(ctx, opts)
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
