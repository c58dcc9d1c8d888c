// Command cellroot is the per-user session root of Cell: it launches the cells
// of one app on request, as the allowlist permits, and tears them all down
// when the app goes.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/cellproject/cell/internal/scope"
)

const usageText = `cellroot: the per-user session root of Cell.

An app (the owner) starts "cellroot serve" through the Cell SDK; the root lives
exactly as long as the owner's umbilical connection. Cells ask it to spawn other
cells by name; it checks every request against the allowlist, launches the cell
sandboxed, audits the decision and, when the owner goes, stops every cell and
removes the session's files.

Usage:
%s
Files:
  allowlist  --allowlist, else $CELL_ALLOWLIST, else $XDG_CONFIG_HOME/cell/allowlist.toml
             (~/.config/cell/allowlist.toml); missing means every spawn is denied
  trust      $CELL_TRUST, else $XDG_CONFIG_HOME/cell/trust.toml: keys whose signatures count
  builds     $XDG_CACHE_HOME/cell/builds/<hash>/ (~/.cache/cell), keyed by source, Go version, flags
  runtime    $XDG_RUNTIME_DIR/cell/<session>/, or /tmp/cell-<uid>/<session>/ when
             XDG_RUNTIME_DIR is unset

Run "cellroot COMMAND --help" for a command's flags.
`

func main() {
	// The scope backend's gate: not a command for people, so it is not in
	// the usage; it must exec bubblewrap with nothing else in between.
	if len(os.Args) > 2 && os.Args[1] == scope.GateCommand && os.Args[2] == "--" {
		err := scope.RunGate(os.Args[3:])
		fmt.Fprintln(os.Stderr, "cellroot:", err)
		os.Exit(126)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// stdio is what a subcommand reads and writes.
type stdio struct {
	in          io.Reader
	out, errOut io.Writer
}

// command is one subcommand: its synopsis for the usage, and its run,
// which parses its own flags and wires packages.
type command struct {
	name, args, summary string
	run                 func(ctx context.Context, args []string, io stdio) int
}

// commands is the whole CLI, in the order the usage lists it.
var commands = []command{
	{"serve", "(--umbilical-fd N | --listen PATH) [flags]", "run a session root",
		func(ctx context.Context, a []string, io stdio) int { return runServe(ctx, a, io.errOut) }},
	{"run", "[flags] APPDIR", "build an app's cells and run them until a signal",
		func(ctx context.Context, a []string, io stdio) int { return runRun(ctx, a, io.out, io.errOut) }},
	{"build", "[flags] APPDIR", "build an app's cells into the cache",
		func(ctx context.Context, a []string, io stdio) int { return runBuild(ctx, a, io.out, io.errOut) }},
	{"upgrade", "[--build APPDIR] CELL", "replace a running cell without downtime (owner only)",
		func(ctx context.Context, a []string, io stdio) int { return runUpgrade(ctx, a, io.out, io.errOut) }},
	{"allow", "[--yes] [--revoke] [--pin] [--require-signature] APPDIR", "review what an app's cells ask for and grant it",
		func(ctx context.Context, a []string, io stdio) int { return runAllow(ctx, a, io.in, io.out, io.errOut) }},
	{"keygen", "[--trust] NAME", "make an ed25519 key for signing cells",
		func(ctx context.Context, a []string, io stdio) int { return runKeygen(ctx, a, io.out, io.errOut) }},
	{"sign", "--key FILE PATH...", "sign cells' source trees or binaries",
		func(ctx context.Context, a []string, io stdio) int { return runSign(ctx, a, io.out, io.errOut) }},
	{"ps", "[--json]", "show the user's sessions and their cells",
		func(ctx context.Context, a []string, io stdio) int { return runPs(ctx, a, io.out, io.errOut) }},
	{"doctor", "", "say what this machine can enforce",
		func(ctx context.Context, a []string, io stdio) int { return runDoctor(ctx, a, io.out, io.errOut) }},
}

// usage lists the commands of the table under the text around them.
func usage() string {
	var b strings.Builder
	for _, c := range append(commands, command{name: "help", args: "[COMMAND]", summary: "show help"}) {
		line := fmt.Sprintf("  cellroot %-8s %s", c.name, c.args)
		if len(line) >= 62 {
			fmt.Fprintf(&b, "%s\n%-63s%s\n", line, "", c.summary)
		} else {
			fmt.Fprintf(&b, "%-63s%s\n", line, c.summary)
		}
	}
	return fmt.Sprintf(usageText, b.String())
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage())
		return 2
	}
	name, rest := args[0], args[1:]
	switch name {
	case "help", "-h", "--help":
		if len(rest) == 1 && rest[0] != "help" {
			return run(ctx, []string{rest[0], "--help"}, stdout, stderr)
		}
		fmt.Fprint(stdout, usage())
		return 0
	}
	for _, c := range commands {
		if c.name == name {
			return c.run(ctx, rest, stdio{in: os.Stdin, out: stdout, errOut: stderr})
		}
	}
	fmt.Fprintf(stderr, "cellroot: unknown command %q\n\n%s", name, usage())
	return 2
}

// newFlags is a subcommand's flag set; its errors and help go to stderr.
func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fl := flag.NewFlagSet(name, flag.ContinueOnError)
	fl.SetOutput(stderr)
	return fl
}

// setUsage makes --help print text, then the flags.
func setUsage(fl *flag.FlagSet, text string) {
	fl.Usage = func() {
		fmt.Fprint(fl.Output(), text)
		fl.PrintDefaults()
	}
}

// parseFlags parses a subcommand's flags; when it returns false the
// command ends with code: 0 after --help, 2 after a bad flag.
func parseFlags(fl *flag.FlagSet, args []string) (code int, ok bool) {
	if err := fl.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, false
		}
		return 2, false
	}
	return 0, true
}
