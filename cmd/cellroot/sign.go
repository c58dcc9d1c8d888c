package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/cellproject/cell/internal/app"
	"github.com/cellproject/cell/internal/cellbuild"
	"github.com/cellproject/cell/internal/trust"
)

func runSign(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fl := flag.NewFlagSet("sign", flag.ContinueOnError)
	fl.SetOutput(stderr)
	keyFile := fl.String("key", "", "private key file made by cellroot keygen (required)")
	fl.Usage = func() {
		fmt.Fprint(stderr, `Usage: cellroot sign --key FILE PATH...

Signs cells with an ed25519 key. PATH is an app folder (every cell in it),
a cell folder (APPDIR/cells/NAME: writes NAME's Cell.sig over the sha256 of
its source tree) or a binary (writes FILE.sig over the binary's sha256). A
cell whose allowlist entry says require_signature = true starts only when
its signature verifies against a key of trust.toml.

Flags:
`)
		fl.PrintDefaults()
	}
	if err := fl.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *keyFile == "" || fl.NArg() == 0 {
		fl.Usage()
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "cellroot sign: %v\n", err)
		return 1
	}
	key, err := trust.LoadPrivateKey(*keyFile)
	if err != nil {
		return fail(err)
	}
	for _, p := range fl.Args() {
		abs, err := filepath.Abs(p)
		if err != nil {
			return fail(err)
		}
		fi, err := os.Stat(abs)
		if err != nil {
			return fail(err)
		}
		if fi.Mode().IsRegular() {
			sum, err := cellbuild.FileSHA256(abs)
			if err != nil {
				return fail(err)
			}
			if err := os.WriteFile(abs+".sig", trust.Sign(key, trust.KindBinary, sum), 0o644); err != nil {
				return fail(err)
			}
			fmt.Fprintf(stdout, "signed binary %s (sha256 %s) into %s.sig\n", abs, sum, abs)
			continue
		}
		var cells []*app.Cell
		if m, _, err := app.LoadManifest(filepath.Join(abs, app.ManifestName)); err == nil {
			cells = append(cells, &app.Cell{Manifest: *m, Dir: abs})
		} else {
			a, err := app.Discover(abs)
			if err != nil {
				return fail(err)
			}
			for _, n := range a.Order {
				cells = append(cells, a.Cells[n])
			}
		}
		for _, c := range cells {
			src, err := cellbuild.SourceOf(c.Name, c.Dir)
			if err != nil {
				return fail(err)
			}
			sum, err := src.Hash()
			if err != nil {
				return fail(err)
			}
			out := filepath.Join(c.Dir, cellbuild.SignatureName)
			if err := os.WriteFile(out, trust.Sign(key, trust.KindSource, sum), 0o644); err != nil {
				return fail(err)
			}
			fmt.Fprintf(stdout, "signed cell %s (source sha256 %s) into %s\n", c.Name, sum, out)
		}
	}
	return 0
}
