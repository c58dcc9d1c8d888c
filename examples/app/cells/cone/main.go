// Command cone is the last cell of the example chain: asked for a "colour",
// it answers with one.
package main

import (
	"context"
	"log/slog"
	"os"

	"github.com/cellproject/cell/cell"
	"github.com/cellproject/cell/examples/demo"
)

func main() {
	os.Exit(demo.CellMain("cone", func(_ *cell.Session, log *slog.Logger) cell.Handler {
		return cell.HandlerFunc(func(ctx context.Context, method string, body []byte) ([]byte, error) {
			if method != "colour" {
				return nil, cell.UnknownMethod(method)
			}
			log.Info("asked for a colour")
			return []byte("red"), nil
		})
	}))
}
