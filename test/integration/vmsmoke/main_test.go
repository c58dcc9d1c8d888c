//go:build vmlab

package vmsmoke

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cellproject/cell/internal/testutil"
)

// payloadEnv names the environment variable that turns this test binary into
// a payload instead of a test run: the binary is static (CGO_ENABLED=0), so
// it is copied into a container root and started there as its own workload.
const payloadEnv = "CELL_VMSMOKE_PAYLOAD"

func TestMain(m *testing.M) {
	if role := os.Getenv(payloadEnv); role != "" {
		os.Exit(runPayload(role))
	}
	os.Exit(m.Run())
}

// uniqueName returns prefix followed by a random hex suffix, for names that
// must not collide with a previous run (units, containers, journal fields).
func uniqueName(t *testing.T, prefix string) string {
	t.Helper()
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatalf("random name: %v", err)
	}
	return prefix + hex.EncodeToString(b[:])
}

// testContext returns a context that ends at the test's deadline (less a
// margin for cleanup) or after limit, whichever comes first. Emulation is
// slow, so limits are generous and only guard against hangs.
func testContext(t *testing.T, limit time.Duration) context.Context {
	t.Helper()
	deadline := time.Now().Add(testutil.Scaled(t, limit))
	if d, ok := t.Deadline(); ok && d.Add(-30*time.Second).Before(deadline) {
		deadline = d.Add(-30 * time.Second)
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	t.Cleanup(cancel)
	return ctx
}

// requireEnv returns the value of an environment variable the lab's runner
// must set, failing the test with a clear message when it is missing.
func requireEnv(t *testing.T, name string) string {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		t.Fatalf("%s is not set: the lab runner must set it for the test user (see test/vmlab)", name)
	}
	return v
}

// readTrimmed reads a small file such as a cgroup interface file.
func readTrimmed(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	return strings.TrimSpace(string(b)), nil
}
