//go:build integration || vmlab

package integration

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cellproject/cell/cell"
	"github.com/cellproject/cell/wire"
)

// synapseAllowlist: the synapse cells on one backend (@BACKEND@); syna may
// spawn synb (the cell-to-cell junction), synplain refuses junctions.
const synapseAllowlist = `
version = 1

[cell.syna]
exec = "@BIN@/testcell"
backend = "@BACKEND@"
spawn = ["synb"]

[cell.synb]
exec = "@BIN@/testcell"
backend = "@BACKEND@"

[cell.synplain]
exec = "@BIN@/testcell"
backend = "@BACKEND@"
args = ["-no-junction"]
`

// synapseBackends runs f against cells on bwrap and on rootless Podman.
func synapseBackends(t *testing.T, f func(t *testing.T, s *cell.Session)) {
	for _, backend := range []string{"bwrap", "podman"} {
		t.Run(backend, func(t *testing.T) {
			if backend == "podman" {
				requirePodman(t)
			}
			s, _ := startSession(t, strings.ReplaceAll(synapseAllowlist, "@BACKEND@", backend))
			f(t, s)
		})
	}
}

// synapseEdges runs f over the socket and over a gap junction to a
// sandboxed cell, checking that the junction was really taken.
func synapseEdges(t *testing.T, s *cell.Session, name string, f func(t *testing.T, c *cell.Conn, junction bool)) {
	for _, junction := range []bool{false, true} {
		label := "socket"
		var opts []cell.DialOption
		if junction {
			label = "junction"
			opts = append(opts, cell.WithJunction())
		}
		t.Run(label, func(t *testing.T) {
			c, err := s.Grow(testCtx(t), name, opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if c.Junction() != junction {
				t.Fatalf("Junction() = %v, want %v: the sandbox refused the shared memory", c.Junction(), junction)
			}
			f(t, c, junction)
		})
	}
}

// TestSynapseSandboxedCalls: ordering, concurrency, 16 MiB bodies both ways
// and a 40 MiB stream, over the socket and over a gap junction, to a cell in
// a bwrap sandbox and in a Podman container.
func TestSynapseSandboxedCalls(t *testing.T) {
	synapseBackends(t, func(t *testing.T, s *cell.Session) {
		synapseEdges(t, s, "syna", func(t *testing.T, c *cell.Conn, junction bool) {
			ctx := testCtx(t)
			for i := range 500 { // in order, one at a time
				want := strconv.Itoa(i)
				got, err := c.Call(ctx, "syn-echo", []byte(want))
				if err != nil || string(got) != want {
					t.Fatalf("call %d = %q, %v", i, got, err)
				}
			}
			var wg sync.WaitGroup
			errs := make(chan error, 32)
			for g := range 32 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range 100 {
						want := fmt.Sprintf("%d.%d.%s", g, i, strings.Repeat("x", (g*i)%3000))
						got, err := c.Call(ctx, "syn-echo", []byte(want))
						if err != nil || string(got) != want {
							errs <- fmt.Errorf("goroutine %d call %d: %q, %v", g, i, got, err)
							return
						}
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}

			big := make([]byte, cell.DefaultMaxBody)
			for i := range big {
				big[i] = byte(i * 13)
			}
			got, err := c.Call(ctx, "syn-echo", big)
			if err != nil || !bytes.Equal(got, big) {
				t.Fatalf("16 MiB echo: %d bytes, %v", len(got), err)
			}
			got, err = c.Call(ctx, "syn-make", []byte(strconv.Itoa(cell.DefaultMaxBody)))
			if err != nil || len(got) != cell.DefaultMaxBody || got[12345] != byte(12345*31%256) {
				t.Fatalf("16 MiB reply: %d bytes, %v", len(got), err)
			}
			stream := bytes.Repeat([]byte("cell"), 10<<20) // 40 MiB: past one frame
			sum := sha256.Sum256(stream)
			got, err = c.CallStream(ctx, "syn-sum", bytes.NewReader(stream))
			if want := fmt.Sprintf("%d %x", len(stream), sum); err != nil || string(got) != want {
				t.Fatalf("40 MiB stream = %q, %v; want %q", got, err, want)
			}
		})
	})
}

// TestSynapseCellToCellJunction: a sandboxed cell grows another over a gap
// junction (memfd and eventfds passed from sandbox to sandbox).
func TestSynapseCellToCellJunction(t *testing.T) {
	synapseBackends(t, func(t *testing.T, s *cell.Session) {
		if got := call(t, s, "syna", "syn-grow", "synb"); got != "junction=true ok" {
			t.Fatalf("syna to synb: %s", got)
		}
	})
}

// TestSynapseJunctionFallback: a cell that refuses junctions keeps the
// socket, and calls work.
func TestSynapseJunctionFallback(t *testing.T) {
	synapseBackends(t, func(t *testing.T, s *cell.Session) {
		ctx := testCtx(t)
		c, err := s.Grow(ctx, "synplain", cell.WithJunction())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if c.Junction() {
			t.Fatal("a junction with a cell that refuses them")
		}
		if got, err := c.Call(ctx, "syn-echo", []byte("still here")); err != nil || string(got) != "still here" {
			t.Fatalf("echo = %q, %v", got, err)
		}
	})
}

// TestSynapsePeerDeath: the cell dies while calls are in flight; they fail
// at once (long before their ctx ends), on the socket and on a junction.
func TestSynapsePeerDeath(t *testing.T) {
	synapseBackends(t, func(t *testing.T, s *cell.Session) {
		synapseEdges(t, s, "syna", func(t *testing.T, c *cell.Conn, junction bool) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			res := make(chan error, 2)
			for range 2 {
				go func() { _, err := c.Call(ctx, "syn-hold", []byte("10m")); res <- err }()
			}
			time.Sleep(200 * time.Millisecond)
			c.Notify(ctx, "crash", nil) // the cell exits at once
			for range 2 {
				if err := <-res; err == nil || errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("call to a dead cell = %v, want a prompt failure", err)
				}
			}
			// The next subtest grows it again: wait for the root to note the crash.
			for {
				cells, err := s.List(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if !slices.ContainsFunc(cells, func(ci wire.CellInfo) bool { return ci.Key == "syna" }) {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	})
}

// TestSynapseDrainAcrossStop: the root stops the cell (SIGTERM) while a
// call is in flight: the cell drains (GOAWAY), the call completes, and the
// next call on the same Conn reaches a new instance. No call fails.
func TestSynapseDrainAcrossStop(t *testing.T) {
	synapseBackends(t, func(t *testing.T, s *cell.Session) {
		synapseEdges(t, s, "syna", func(t *testing.T, c *cell.Conn, junction bool) {
			ctx := testCtx(t)
			before, err := c.Call(ctx, "syn-boot", nil)
			if err != nil {
				t.Fatal(err)
			}
			held := make(chan string, 1)
			heldErr := make(chan error, 1)
			go func() {
				got, err := c.Call(ctx, "syn-hold", []byte("1500ms"))
				heldErr <- err
				held <- string(got)
			}()
			time.Sleep(300 * time.Millisecond)
			if err := s.Stop(ctx, "syna"); err != nil {
				t.Fatalf("stop: %v", err)
			}
			if err := <-heldErr; err != nil {
				t.Fatalf("the call in flight when the cell was stopped failed: %v", err)
			}
			if got := <-held; got != "held "+string(before) {
				t.Fatalf("held call = %q, want the old instance's answer", got)
			}
			after, err := c.Call(ctx, "syn-boot", nil)
			if err != nil {
				t.Fatalf("the first call after the drain failed: %v", err)
			}
			if string(after) == string(before) {
				t.Fatal("the call after the stop reached the old instance")
			}
			if c.Junction() != junction {
				t.Errorf("after the redial Junction() = %v, want %v", c.Junction(), junction)
			}
		})
	})
}

// TestSynapseExampleAppJunction: the example app's retina reaches cone over
// a gap junction, sandboxed on bwrap and on Podman, and says so.
func TestSynapseExampleAppJunction(t *testing.T) {
	for _, backend := range []string{"bwrap", "podman"} {
		t.Run(backend, func(t *testing.T) {
			if backend == "podman" {
				requirePodman(t)
			}
			out, _, base := runExampleApp(t, backend)
			if !strings.Contains(out, "cone says red over a gap junction") {
				t.Errorf("retina to cone did not use a gap junction:\n%s", out)
			}
			requireEmptyRuntime(t, base)
		})
	}
}
