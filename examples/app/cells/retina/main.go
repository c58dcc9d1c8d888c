// Command retina is the middle of the example chain: asked to "sense", it
// grows cone (through the root: retina cannot start processes itself) and
// asks it for a colour.
package main

import (
	"context"
	"fmt"
	"os"

	"go.uber.org/zap"

	"github.com/cellproject/cell/cell"
	"github.com/cellproject/cell/examples/demo"
)

func main() {
	os.Exit(demo.CellMain("retina", func(s *cell.Session, log *zap.Logger) cell.Handler {
		return cell.HandlerFunc(func(ctx context.Context, method string, body []byte) ([]byte, error) {
			if method != "sense" {
				return nil, cell.UnknownMethod(method)
			}
			ctx, cancel := context.WithTimeout(ctx, demo.CallTimeout)
			defer cancel()
			cone, err := s.Grow(ctx, "cone")
			if err != nil {
				return nil, fmt.Errorf("retina: %w", err)
			}
			defer cone.Close()
			colour, err := cone.Call(ctx, "colour", nil)
			if err != nil {
				return nil, fmt.Errorf("retina: %w", err)
			}
			log.Info("sensed", zap.ByteString("colour", colour))
			return []byte("cone says " + string(colour)), nil
		})
	}))
}
