package main

import (
	"context"

	"github.com/cellproject/cell/allowlist"
	"github.com/cellproject/cell/internal/app"
	"github.com/cellproject/cell/internal/cellspec"
)

// vetHook is the session root's check of what it is about to launch: an
// app cell's build against its source and Cell.toml, pins and signatures
// (see app.NewVet and docs/trust.md). trust.toml is found as $CELL_TRUST,
// else $XDG_CONFIG_HOME/cell/trust.toml, and read at each launch.
func vetHook(al *allowlist.File) func(ctx context.Context, spec cellspec.Spec) error {
	return app.NewVet(al, "")
}
