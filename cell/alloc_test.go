//go:build !race

// The race detector allocates on its own account: allocation counts hold
// only without it.

package cell

import (
	"context"
	"testing"
)

// TestCallAllocations: a call whose ctx never ends costs one allocation,
// its reply (the caller keeps it), against a cell that lends request
// bodies and so allocates nothing per call itself.
func TestCallAllocations(t *testing.T) {
	transports(t, func(t *testing.T, junction bool) {
		path := serveTemp(t, echoHandler(), ServeOptions{MaxConcurrent: 1, RecycleBodies: true, Junction: true})
		c := dialTemp(t, path, dialOpts(junction)...)
		body := make([]byte, 64)
		call := func() {
			if _, err := c.Call(context.Background(), "echo", body); err != nil {
				t.Fatal(err)
			}
		}
		for range 100 { // warm: the link, buffers, the pool of calls
			call()
		}
		if n := testing.AllocsPerRun(500, call); n > 1 {
			t.Errorf("a call costs %.2f allocations, want its reply's one", n)
		}
	})
}
