package main

import (
	"context"
	"os"
	"path/filepath"

	"github.com/cellproject/cell/cell"
)

// abuse runs the probes of test/integration/abuse_test.go: what a hostile or
// instance cell does through its session.
func abuse(ctx context.Context, sess *cell.Session, method, arg string) ([]byte, error) {
	switch method {
	case "self":
		// An instance cell learns its key from its hello only.
		return []byte(sess.Self()), nil
	case "stop":
		return result(sess.Stop(ctx, arg)), nil
	case "litter":
		// Leaves in the session dir what no later cleanup may trip on: a
		// dir of mode 0500 holding a file and a dir of mode 0.
		dir := filepath.Join(os.Getenv("CELL_RUNTIME_DIR"), arg)
		if err := os.MkdirAll(filepath.Join(dir, "locked"), 0o700); err != nil {
			return result(err), nil
		}
		if err := os.WriteFile(filepath.Join(dir, "f"), []byte("x"), 0o400); err != nil {
			return result(err), nil
		}
		if err := os.Chmod(filepath.Join(dir, "locked"), 0); err != nil {
			return result(err), nil
		}
		return result(os.Chmod(dir, 0o500)), nil
	}
	return nil, cell.UnknownMethod(method)
}
