// Command retina is the middle of the example chain: asked to "sense", it
// grows cone (through the root: retina cannot start processes itself) and
// asks it for a colour. The retina-to-cone edge is a gap junction: the
// connection moves to shared-memory rings, and the answer says whether it did.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/cellproject/cell/cell"
	"github.com/cellproject/cell/examples/demo"
)

func main() {
	os.Exit(demo.CellMain("retina", func(s *cell.Session, log *slog.Logger) cell.Handler {
		return cell.HandlerFunc(func(ctx context.Context, method string, body []byte) ([]byte, error) {
			if method != "sense" {
				return nil, cell.UnknownMethod(method)
			}
			ctx, cancel := context.WithTimeout(ctx, demo.CallTimeout)
			defer cancel()
			cone, err := s.Grow(ctx, "cone", cell.WithJunction())
			if err != nil {
				return nil, fmt.Errorf("retina: %w", err)
			}
			defer cone.Close()
			colour, err := cone.Call(ctx, "colour", nil)
			if err != nil {
				return nil, fmt.Errorf("retina: %w", err)
			}
			edge := "socket"
			if cone.Junction() {
				edge = "gap junction"
			}
			log.Info("sensed", "colour", string(colour), "edge", edge)
			return []byte("cone says " + string(colour) + " over a " + edge), nil
		})
	}))
}
