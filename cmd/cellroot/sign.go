package main

import (
	"context"
	"fmt"
	"io"

	"github.com/cellproject/cell/internal/app"
	"github.com/cellproject/cell/internal/trust"
)

func runSign(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fl := newFlags("sign", stderr)
	keyFile := fl.String("key", "", "private key file made by cellroot keygen (required)")
	setUsage(fl, `Usage: cellroot sign --key FILE PATH...

Signs cells with an ed25519 key. PATH is an app folder (every cell in it),
a cell folder (APPDIR/cells/NAME: writes NAME's Cell.sig over the sha256 of
its source tree) or a binary (writes FILE.sig over the binary's sha256). A
cell whose allowlist entry says require_signature = true starts only when
its signature verifies against a key of trust.toml.

Flags:
`)
	if code, ok := parseFlags(fl, args); !ok {
		return code
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
		signed, err := app.Sign(key, p)
		for _, sg := range signed {
			if sg.What == "binary" {
				fmt.Fprintf(stdout, "signed binary (sha256 %s) into %s\n", sg.Sum, sg.File)
			} else {
				fmt.Fprintf(stdout, "signed cell %s (source sha256 %s) into %s\n", sg.What, sg.Sum, sg.File)
			}
		}
		if err != nil {
			return fail(err)
		}
	}
	return 0
}
