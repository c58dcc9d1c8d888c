//go:build vmlab

package vm

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cellproject/cell/cell"
)

// synapseVMAllowlist: the synapse cells in systemd scopes (and, for the
// cell-to-cell edge, a scope cell growing a Podman one).
const synapseVMAllowlist = `
version = 1

[cell.syna]
exec = "@BIN@/testcell"
backend = "scope"
spawn = ["synb", "synpod"]

[cell.synb]
exec = "@BIN@/testcell"
backend = "scope"

[cell.synpod]
exec = "@BIN@/testcell"
backend = "podman"
`

// TestScopeSynapse: on the scope backend (systemd 257, cgroup v2) the gap
// junction is taken from the owner to a cell and from cell to cell (scope to
// scope, scope to Podman 5), carries 16 MiB bodies and a 40 MiB stream,
// fails calls at once when the cell dies, and drains across a stop.
func TestScopeSynapse(t *testing.T) {
	s, _ := startSession(t, synapseVMAllowlist)
	ctx := testCtx(t, 5*time.Minute)
	for _, junction := range []bool{false, true} {
		var opts []cell.DialOption
		if junction {
			opts = append(opts, cell.WithJunction())
		}
		c, err := s.Grow(ctx, "syna", opts...)
		if err != nil {
			t.Fatal(err)
		}
		if c.Junction() != junction {
			t.Fatalf("Junction() = %v, want %v: the scope's sandbox refused the shared memory", c.Junction(), junction)
		}
		big := bytes.Repeat([]byte("scope!"), cell.DefaultMaxBody/6)
		if got, err := c.Call(ctx, "syn-echo", big); err != nil || !bytes.Equal(got, big) {
			t.Fatalf("junction %v: 16 MiB echo: %d bytes, %v", junction, len(got), err)
		}
		stream := bytes.Repeat([]byte("cell"), 10<<20)
		sum := sha256.Sum256(stream)
		if got, err := c.CallStream(ctx, "syn-sum", bytes.NewReader(stream)); err != nil || string(got) != fmt.Sprintf("%d %x", len(stream), sum) {
			t.Fatalf("junction %v: stream = %q, %v", junction, got, err)
		}

		// Drain across a stop: the call in flight completes, the next one
		// reaches a new instance.
		before, err := c.Call(ctx, "syn-boot", nil)
		if err != nil {
			t.Fatal(err)
		}
		held := make(chan error, 1)
		go func() { _, err := c.Call(ctx, "syn-hold", []byte("2s")); held <- err }()
		time.Sleep(500 * time.Millisecond)
		if err := s.Stop(ctx, "syna"); err != nil {
			t.Fatal(err)
		}
		if err := <-held; err != nil {
			t.Fatalf("junction %v: the call in flight across the stop failed: %v", junction, err)
		}
		after, err := c.Call(ctx, "syn-boot", nil)
		if err != nil || string(after) == string(before) {
			t.Fatalf("junction %v: after the drain: %q (before %q), %v", junction, after, before, err)
		}

		// Peer death: a call in flight fails at once.
		res := make(chan error, 1)
		go func() { _, err := c.Call(ctx, "syn-hold", []byte("10m")); res <- err }()
		time.Sleep(300 * time.Millisecond)
		c.Notify(ctx, "crash", nil)
		if err := <-res; err == nil || errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("junction %v: call to a dead cell = %v", junction, err)
		}
		c.Close()
		waitGone(t, s, "syna")
	}
	for _, peer := range []string{"synb", "synpod"} {
		if got, err := call(t, s, "syna", "syn-grow", peer); err != nil || got != "junction=true ok" {
			t.Fatalf("syna (scope) to %s: %q, %v", peer, got, err)
		}
	}
}

// waitGone waits until the root no longer lists key.
func waitGone(t *testing.T, s *cell.Session, key string) {
	t.Helper()
	ctx := testCtx(t, time.Minute)
	for {
		cells, err := s.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, c := range cells {
			found = found || c.Key == key
		}
		if !found {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("%s still listed: %v", key, strings.TrimSpace(fmt.Sprint(cells)))
		}
		time.Sleep(50 * time.Millisecond)
	}
}
