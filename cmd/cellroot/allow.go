package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/cellproject/cell/allowlist"
	"github.com/cellproject/cell/internal/app"
	"github.com/cellproject/cell/internal/cellspec"
	"github.com/cellproject/cell/internal/rundir"
)

func runAllow(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fl := newFlags("allow", stderr)
	alFlag := fl.String("allowlist", "", "allowlist file (default $CELL_ALLOWLIST, else $XDG_CONFIG_HOME/cell/allowlist.toml)")
	cacheDir := fl.String("cache-dir", "", "build cache the grants point into (default $XDG_CACHE_HOME/cell)")
	yes := fl.Bool("yes", false, "grant without asking (for scripts)")
	revoke := fl.Bool("revoke", false, "remove the app's grants instead")
	pin := fl.Bool("pin", false, "pin each cell to the sha256 of its source tree as it is now")
	backend := fl.String("backend", "", "run every cell on this backend (auto, scope, podman, bwrap or process) instead of what its Cell.toml prefers")
	requireSig := fl.Bool("require-signature", false, "start each cell only if its Cell.sig verifies against trust.toml")
	dir, code, ok := parseApp(fl, args, `Usage: cellroot allow [flags] APPDIR

Shows what each cell of the app in APPDIR asks for (network, limits, spawn
edges, ...) and, once you confirm, writes exactly that into your allowlist,
one marked block per cell; your comments and other entries stay as they are.
Without a terminal it refuses unless --yes is given. Run it again after a
Cell.toml changes; --revoke removes the app's blocks.
`)
	if !ok {
		return code
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "cellroot allow: %v\n", err)
		return 1
	}
	path, err := rundir.AllowlistPath(*alFlag)
	if err != nil {
		return fail(err)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return fail(err)
	}
	text, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fail(err)
	}
	if *revoke {
		out, n, err := allowlist.RemoveBlocks(path, text, abs)
		if err != nil {
			return fail(err)
		}
		if n == 0 {
			fmt.Fprintf(stdout, "%s holds no grants for %s\n", path, abs)
			return 0
		}
		if err := allowlist.WriteFile(path, out); err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "revoked %d cell grant(s) of %s in %s\n", n, abs, path)
		return 0
	}

	a, err := app.Discover(abs)
	if err != nil {
		return fail(err)
	}
	fmt.Fprintf(stdout, "The app %s asks for these cells:\n\n", a.Dir)
	for _, n := range a.Order {
		fmt.Fprintln(stdout, app.Describe(a.Cells[n]))
	}
	blocks, err := app.Grants(a, app.GrantsOptions{CacheDir: *cacheDir, Pin: *pin,
		RequireSignature: *requireSig, Backend: cellspec.Backend(*backend)})
	if err != nil {
		return fail(err)
	}
	out, err := allowlist.SetBlocks(path, text, a.Dir, blocks)
	if err != nil {
		return fail(err)
	}
	if !*yes {
		if !isTerminal(os.Stdin) {
			return fail(fmt.Errorf("not granting without a confirmation: standard input is not a terminal; pass --yes to grant from a script"))
		}
		fmt.Fprintf(stdout, "Grant these %d cell(s) in %s? [y/N] ", len(blocks), path)
		line, _ := bufio.NewReader(stdin).ReadString('\n')
		if a := strings.ToLower(strings.TrimSpace(line)); a != "y" && a != "yes" {
			fmt.Fprintln(stdout, "nothing granted")
			return 1
		}
	}
	if err := allowlist.WriteFile(path, out); err != nil {
		return fail(err)
	}
	fmt.Fprintf(stdout, "granted %d cell(s) of %s in %s\n", len(blocks), a.Dir, path)
	return 0
}
