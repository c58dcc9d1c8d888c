// Command nose is listed in the example allowlist but is not among eye's
// spawn edges, so eye's attempt to grow it is denied. The owner may still
// grow it; asked to "smell", it answers.
package main

import (
	"context"
	"log/slog"
	"os"

	"github.com/cellproject/cell/cell"
	"github.com/cellproject/cell/examples/demo"
)

func main() {
	os.Exit(demo.CellMain("nose", func(_ *cell.Session, log *slog.Logger) cell.Handler {
		return cell.HandlerFunc(func(ctx context.Context, method string, body []byte) ([]byte, error) {
			if method != "smell" {
				return nil, cell.UnknownMethod(method)
			}
			return []byte("roses"), nil
		})
	}))
}
