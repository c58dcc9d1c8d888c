//go:build integration || vmlab

package integration

import (
	"strings"
	"testing"
	"time"

	"github.com/cellproject/cell/internal/testutil/harness"
)

// A root whose backends cannot open (no bubblewrap at the given path, no
// Podman helper, no systemd user bus) starts, says why each is missing,
// refuses cells that need them with that reason, and serves the rest.
func TestRootServesWithoutBrokenBackends(t *testing.T) {
	isolatedRuntime(t)
	binDir(t)
	t.Setenv("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent/bus")
	s, log := harness.StartSession(t, 20*time.Second, testAllowlist+`
[cell.boxed]
exec = "@BIN@/testcell"
backend = "podman"
`, "--bwrap", "/nonexistent/bwrap", "--podman-helper", "/nonexistent/cellroot-podman")

	// The control: the process backend still runs its cell.
	if got := call(t, s, "trusted", "pid", ""); got == "" {
		t.Fatal("the process cell did not answer")
	}
	for _, name := range []string{"probe", "boxed"} {
		_, err := s.Grow(testCtx(t), name)
		if err == nil {
			t.Fatalf("%s started on a backend that cannot open", name)
		}
		t.Logf("%s: %v", name, err)
	}
	// And the root kept serving after the refusals.
	if got := call(t, s, "trusted", "pid", ""); got == "" {
		t.Fatal("the process cell did not answer after the refusals")
	}
	for _, want := range []string{"/nonexistent/bwrap", "/nonexistent/cellroot-podman", `"backend":"scope","available":false`} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("the root's log does not say %q", want)
		}
	}
}
