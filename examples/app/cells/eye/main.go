// Command eye is the first cell of the example chain: asked to "see", it
// grows retina (the root spawns it on eye's request) and asks it to sense,
// asks memory, which the app started before it, to recall, and tries to grow
// nose, which the allowlist does not let eye spawn, and reports that denial.
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
	os.Exit(demo.CellMain("eye", func(s *cell.Session, log *slog.Logger) cell.Handler {
		return cell.HandlerFunc(func(ctx context.Context, method string, body []byte) ([]byte, error) {
			if method != "see" {
				return nil, cell.UnknownMethod(method)
			}
			ctx, cancel := context.WithTimeout(ctx, demo.CallTimeout)
			defer cancel()
			retina, err := s.Grow(ctx, "retina")
			if err != nil {
				return nil, fmt.Errorf("eye: %w", err)
			}
			defer retina.Close()
			sensed, err := retina.Call(ctx, "sense", body)
			if err != nil {
				return nil, fmt.Errorf("eye: %w", err)
			}
			return []byte(fmt.Sprintf("retina: %s; memory: %s; nose: %s", sensed, recall(ctx, s), tryNose(ctx, s, log))), nil
		})
	}))
}

// recall asks memory, found by its socket: eye depends on it, so the app
// started it first, and eye needs no spawn edge to it.
func recall(ctx context.Context, s *cell.Session) string {
	memory, err := s.Connect(ctx, "memory")
	if err != nil {
		return fmt.Sprintf("not running (%v)", err)
	}
	defer memory.Close()
	got, err := memory.Call(ctx, "recall", nil)
	if err != nil {
		return fmt.Sprintf("failed: %v", err)
	}
	return string(got)
}

// tryNose grows nose, which eye's allowlist entry does not name, to show the
// root refusing a spawn edge; it says what happened.
func tryNose(ctx context.Context, s *cell.Session, log *slog.Logger) string {
	nose, err := s.Grow(ctx, "nose")
	switch reason, denied := cell.DenialReason(err); {
	case err == nil:
		nose.Close()
		log.Warn("nose was granted; the allowlist lets eye spawn it")
		return "granted (the allowlist lets eye spawn nose)"
	case denied:
		log.Info("nose denied, as the allowlist says", "reason", reason)
		return fmt.Sprintf("denied (%s)", reason)
	default:
		return fmt.Sprintf("failed: %v", err)
	}
}
