package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/cellproject/cell/internal/cellspec"
	"github.com/cellproject/cell/internal/rundir"
	"github.com/cellproject/cell/internal/trust"
)

func runKeygen(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fl := newFlags("keygen", stderr)
	out := fl.String("out", "", "private key file (default $XDG_CONFIG_HOME/cell/keys/NAME.key)")
	addTrust := fl.Bool("trust", false, "also add the public key to trust.toml as [key.NAME]")
	name, code, ok := parseApp(fl, args, `Usage: cellroot keygen [flags] NAME

Makes an ed25519 key pair for signing cells (cellroot sign). The private key
is written readable by you only and never overwritten; the public key is
printed as a [key.NAME] table for trust.toml (or added with --trust).
`)
	if !ok {
		return code
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "cellroot keygen: %v\n", err)
		return 1
	}
	if err := cellspec.CheckName(name); err != nil {
		return fail(fmt.Errorf("key name: %w", err))
	}
	if *out == "" {
		p, err := rundir.KeyPath(name)
		if err != nil {
			return fail(err)
		}
		*out = p
	}
	if err := os.MkdirAll(filepath.Dir(*out), 0o700); err != nil {
		return fail(err)
	}
	priv, pub, err := trust.GenerateKey()
	if err != nil {
		return fail(err)
	}
	if err := trust.WritePrivateKey(*out, priv); err != nil {
		return fail(err)
	}
	fmt.Fprintf(stdout, "private key: %s\npublic key:  %s\n", *out, pub)
	if !*addTrust {
		fmt.Fprintf(stdout, "\nTo trust it, add to trust.toml:\n\n%s", trust.KeyTable(name, pub))
		return 0
	}
	path, err := rundir.TrustPath()
	if err != nil {
		return fail(err)
	}
	if err := trust.AddKey(path, name, pub); err != nil {
		return fail(err)
	}
	fmt.Fprintf(stdout, "trusted as [key.%s] in %s\n", name, path)
	return 0
}
