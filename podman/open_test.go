package podman

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cellproject/cell/internal/rundir"
)

// A Podman that cannot start must come back as an error, never a panic (the
// open's cleanup once closed the nil backend it was returning), and must
// leave nothing behind.
func TestOpenFailureIsAnError(t *testing.T) {
	hang := filepath.Join(t.TempDir(), "podman-hangs")
	if err := os.WriteFile(hang, []byte("#!/bin/sh\nexec sleep 60\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, podman string }{
		{"exits at once", "/bin/false"},
		{"never answers", hang},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := t.TempDir()
			_, err := Open(context.Background(), Options{
				Podman:       tc.podman,
				Base:         base,
				UserSocket:   filepath.Join(base, "no-such.sock"),
				StartTimeout: 300 * time.Millisecond,
			})
			want := ErrNoService
			if os.Geteuid() == 0 {
				want = ErrRoot
			}
			if !errors.Is(err, want) {
				t.Fatalf("Open: got %v, want %v", err, want)
			}
			if left, _ := filepath.Glob(filepath.Join(base, rundir.PodmanPrivatePrefix+"*")); len(left) != 0 {
				t.Fatalf("a failed open left its private dir: %v", left)
			}
		})
	}
}
