// Command cellroot is the per-user session root of Cell: it launches the cells
// of one app on request, as the allowlist permits, and tears them all down
// when the app goes.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/cellproject/cell/internal/scope"
)

const usage = `cellroot: the per-user session root of Cell.

An app (the owner) starts "cellroot serve" through the Cell SDK; the root lives
exactly as long as the owner's umbilical connection. Cells ask it to spawn other
cells by name; it checks every request against the allowlist, launches the cell
sandboxed, audits the decision and, when the owner goes, stops every cell and
removes the session's files.

Usage:
  cellroot serve   (--umbilical-fd N | --listen PATH) [flags]   run a session root
  cellroot run     [flags] APPDIR                              build an app's cells and run them until a signal
  cellroot build   [flags] APPDIR                              build an app's cells into the cache
  cellroot upgrade [--build APPDIR] CELL                       replace a running cell without downtime (owner only)
  cellroot allow   [--yes] [--revoke] [--pin] [--require-signature] APPDIR
                                                               review what an app's cells ask for and grant it
  cellroot keygen  [--trust] NAME                              make an ed25519 key for signing cells
  cellroot sign    --key FILE PATH...                          sign cells' source trees or binaries
  cellroot ps      [--json]                                    show the user's sessions and their cells
  cellroot doctor                                              say what this machine can enforce
  cellroot help    [COMMAND]                                   show help

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

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve":
		return runServe(ctx, rest, stderr)
	case "run":
		return runRun(ctx, rest, stdout, stderr)
	case "build":
		return runBuild(ctx, rest, stdout, stderr)
	case "upgrade":
		return runUpgrade(ctx, rest, stdout, stderr)
	case "allow":
		return runAllow(ctx, rest, os.Stdin, stdout, stderr)
	case "keygen":
		return runKeygen(ctx, rest, stdout, stderr)
	case "sign":
		return runSign(ctx, rest, stdout, stderr)
	case "ps":
		return runPs(ctx, rest, stdout, stderr)
	case "doctor":
		return runDoctor(ctx, rest, stdout, stderr)
	case "help", "-h", "--help":
		if len(rest) == 1 && rest[0] != "help" {
			return run(ctx, []string{rest[0], "--help"}, stdout, stderr)
		}
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "cellroot: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
}
