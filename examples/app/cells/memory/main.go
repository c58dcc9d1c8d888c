// Command memory is the example app's dependency: the app starts it before
// eye, which finds it by its socket (Connect, no spawn) and asks it to recall.
package main

import (
	"context"
	"log/slog"
	"os"

	"github.com/cellproject/cell/cell"
	"github.com/cellproject/cell/examples/demo"
)

func main() {
	os.Exit(demo.CellMain("memory", func(_ *cell.Session, log *slog.Logger) cell.Handler {
		return cell.HandlerFunc(func(ctx context.Context, method string, body []byte) ([]byte, error) {
			if method != "recall" {
				return nil, cell.UnknownMethod(method)
			}
			log.Info("asked to recall")
			return []byte("seen before"), nil
		})
	}))
}
