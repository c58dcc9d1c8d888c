package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/cellproject/cell/internal/app"
	"github.com/cellproject/cell/wire"
)

// appFlags are the flags run and build share.
type appFlags struct {
	allowlist, cellroot, goBin, bwrap, cacheDir string
}

func (f *appFlags) register(fl *flag.FlagSet) {
	fl.StringVar(&f.allowlist, "allowlist", "", "allowlist file (default $CELL_ALLOWLIST, else $XDG_CONFIG_HOME/cell/allowlist.toml)")
	fl.StringVar(&f.cellroot, "cellroot", "", "cellroot binary to run the session root with (default this one)")
	fl.StringVar(&f.goBin, "go", os.Getenv("CELL_GO"), "go command for builds (default $CELL_GO, else go on $PATH)")
	fl.StringVar(&f.bwrap, "bwrap", "", "bubblewrap binary for the build sandbox (default bwrap on $PATH)")
	fl.StringVar(&f.cacheDir, "cache-dir", "", "build cache (default $XDG_CACHE_HOME/cell)")
}

func (f *appFlags) options(stdout, stderr io.Writer) (app.Options, error) {
	o := app.Options{Allowlist: f.allowlist, Cellroot: f.cellroot, Go: f.goBin, Bwrap: f.bwrap,
		CacheDir: f.cacheDir, Progress: stdout, Stderr: stderr}
	if o.Cellroot == "" {
		self, err := os.Executable()
		if err != nil {
			return o, fmt.Errorf("find this cellroot: %w", err)
		}
		o.Cellroot = self
	}
	return o, nil
}

// parseApp parses a command's flags and its one APPDIR argument.
func parseApp(fl *flag.FlagSet, args []string, usage string) (string, int, bool) {
	setUsage(fl, usage+"\nFlags:\n")
	if code, ok := parseFlags(fl, args); !ok {
		return "", code, false
	}
	if fl.NArg() != 1 {
		fmt.Fprintf(fl.Output(), "cellroot %s: exactly one APPDIR is required\n", fl.Name())
		fl.Usage()
		return "", 2, false
	}
	return fl.Arg(0), 0, true
}

func runRun(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fl := newFlags("run", stderr)
	var af appFlags
	af.register(fl)
	holdFor := fl.Duration("for", 0, "end the session after this long (default: run until SIGINT or SIGTERM)")
	logFormat := fl.String("log-format", "console", "the session root's log format on stderr: console or json")
	watch := fl.Bool("watch", false, "rebuild a cell whose source changes and upgrade it in place")
	dir, code, ok := parseApp(fl, args, `Usage: cellroot run [flags] APPDIR

Runs the app in APPDIR: finds every cells/NAME/Cell.toml, builds the cells
that need building (offline, sandboxed, cached by source hash), starts a
session root with this process as its owner, and starts the autostart cells
and their dependencies, each once its dependencies are ready. The session
ends, and every cell with it, on SIGINT or SIGTERM, or after --for. It ends
with exit status 1 when a cell with a restart policy crashes past its
limit, naming the cell and its last exit status.

With --watch it rebuilds a cell whose source changes and upgrades the
running cell in place: the new build takes over the cell's socket, the old
instance drains; a failed build leaves the old one serving.

The cells must be granted in the allowlist first: see "cellroot allow".
`)
	if !ok {
		return code
	}
	o, err := af.options(stdout, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "cellroot run: %v\n", err)
		return 1
	}
	o.ServeArgs = []string{"--log-format", *logFormat}
	r, err := app.Run(ctx, dir, o)
	if err != nil {
		fmt.Fprintf(stderr, "cellroot run: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "app %s running: session %s, cells started: %v\n", r.App.Dir, r.ID(), r.Started)
	// Everything below ends with the session: life is cancelled before
	// Close, and the goroutines are waited for.
	life, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	failed := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := r.AwaitFailure(life); wire.IsCode(err, wire.CodeCellFailed) {
			failed <- err
		}
	}()
	if *watch {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := r.Watch(life, o); err != nil {
				fmt.Fprintf(stderr, "cellroot run: %v\n", err)
			}
		}()
	}
	var hold <-chan time.Time
	if *holdFor > 0 {
		t := time.NewTimer(*holdFor)
		defer t.Stop()
		hold = t.C
	} else {
		fmt.Fprintln(stdout, "press Ctrl-C to stop it")
	}
	status := 0
	select {
	case <-ctx.Done():
	case <-hold:
	case err := <-failed:
		fmt.Fprintf(stderr, "cellroot run: the app failed: %v\n", err)
		status = 1
	}
	stop()
	wg.Wait()
	if err := r.Close(); err != nil {
		fmt.Fprintf(stderr, "cellroot run: ending the session: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "session %s ended\n", r.ID())
	return status
}

func runBuild(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fl := newFlags("build", stderr)
	var af appFlags
	af.register(fl)
	dir, code, ok := parseApp(fl, args, `Usage: cellroot build [flags] APPDIR

Builds every cell of the app in APPDIR into the build cache, as cellroot run
does before it starts them, and says where each binary is.
`)
	if !ok {
		return code
	}
	o, err := af.options(stdout, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "cellroot build: %v\n", err)
		return 1
	}
	_, res, err := app.Build(ctx, dir, o)
	if err != nil {
		fmt.Fprintf(stderr, "cellroot build: %v\n", err)
		return 1
	}
	for _, r := range res {
		fmt.Fprintf(stdout, "%s\t%s\tsource sha256 %s\tbinary sha256 %s\n", r.Name, r.Installed, r.SourceSHA256, r.BinarySHA256)
	}
	return 0
}
