package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/cellproject/cell/cell"
	"github.com/cellproject/cell/internal/app"
)

func runUpgrade(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fl := newFlags("upgrade", stderr)
	var af appFlags
	af.register(fl)
	build := fl.String("build", "", "build the cells of this APPDIR first (a fresh build of CELL)")
	setUsage(fl, `Usage: cellroot upgrade [--build APPDIR] [flags] CELL

Replaces the running cell CELL of a session with a new instance without
refusing a connection: the root starts the new instance from the binary the
cell's allowlist entry names (with --build, after building the app's cells,
so a changed source gives a fresh build), hands it the cell's listening
socket, and once it serves tells the old instance to drain (SIGTERM) and
stops it after the grace period. Any failure leaves the old one serving.

Upgrading is the owner's right: run it with the owner's environment
(CELL_SESSION, CELL_RUNTIME_DIR, CELL_UMBILICAL, CELL_TOKEN, as an owner app
hands its trusted children through Session.Env). "cellroot run --watch"
upgrades an app's cells itself.

Flags:
`)
	if code, ok := parseFlags(fl, args); !ok {
		return code
	}
	if fl.NArg() != 1 {
		fmt.Fprintln(stderr, "cellroot upgrade: exactly one CELL is required")
		fl.Usage()
		return 2
	}
	key := fl.Arg(0)
	if os.Getenv(cell.EnvName) != "" {
		fmt.Fprintf(stderr, "cellroot upgrade: %s is set: this is a cell's environment, and only the owner may upgrade\n", cell.EnvName)
		return 1
	}
	if *build != "" {
		o, err := af.options(stdout, stderr)
		if err != nil {
			fmt.Fprintf(stderr, "cellroot upgrade: %v\n", err)
			return 1
		}
		if _, _, err := app.Build(ctx, *build, o); err != nil {
			fmt.Fprintf(stderr, "cellroot upgrade: build failed, %s keeps running as it is: %v\n", key, err)
			return 1
		}
	}
	s, err := cell.Join(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "cellroot upgrade: %v\n", err)
		return 1
	}
	defer s.Close()
	if err := s.Upgrade(ctx, key); err != nil {
		fmt.Fprintf(stderr, "cellroot upgrade: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "upgraded %s: the new instance serves, the old one has drained\n", key)
	return 0
}
