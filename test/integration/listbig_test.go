//go:build integration || vmlab

package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cellproject/cell/internal/testutil"
	"github.com/cellproject/cell/wire"
)

// Finding 3 of issue 10 against a live root: a session whose list is far
// over one frame (the control: its JSON is larger than wire.MaxFrame) is
// listed whole, in pages, and the owner's connection stays up.
func TestListLargerThanAFrame(t *testing.T) {
	const names, perName = 6, 64
	var al strings.Builder
	al.WriteString("version = 1\n\n[session]\nmax_cells = 400\n")
	for i := range names {
		fmt.Fprintf(&al, "\n[cell.wide%d]\nexec = \"@BIN@/testcell\"\nbackend = \"process\"\nmax_instances = 64\n", i)
	}
	s, _ := startSession(t, al.String())
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Scaled(t, 3*time.Minute))
	defer cancel()

	// Long instance names make long keys (still fitting a socket path).
	inst := func(i int) string { return fmt.Sprintf("%s%03d", strings.Repeat("i", 40), i) }
	jobs := make(chan [2]int)
	var wg sync.WaitGroup
	var failed sync.Map
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := ownerClient(t, s)
			defer c.Close()
			c.Conn().SetDeadline(time.Time{}) // ctx bounds the calls
			for j := range jobs {
				for {
					_, err := c.Spawn(ctx, fmt.Sprintf("wide%d", j[0]), inst(j[1]))
					if wire.IsCode(err, wire.CodeRateLimited) {
						time.Sleep(20 * time.Millisecond)
						continue
					}
					if err != nil {
						failed.Store(j, err)
					}
					break
				}
			}
		}()
	}
	for n := range names {
		for i := range perName {
			jobs <- [2]int{n, i}
		}
	}
	close(jobs)
	wg.Wait()
	failed.Range(func(k, v any) bool { t.Errorf("spawn %v: %v", k, v); return true })

	o := ownerClient(t, s)
	o.Conn().SetDeadline(time.Time{})
	cells, err := o.List(ctx)
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	if len(cells) != names*perName {
		t.Fatalf("list gave %d cells, want %d", len(cells), names*perName)
	}
	whole, _ := json.Marshal(wire.Reply{ID: 1, OK: true, Cells: cells})
	if len(whole) <= wire.MaxFrame {
		t.Fatalf("the control: the whole list is %d bytes, not over the %d-byte frame bound", len(whole), wire.MaxFrame)
	}
	t.Logf("%d cells, %d bytes of list in one piece (frame bound %d): listed in pages", len(cells), len(whole), wire.MaxFrame)
	// The owner's own connection (the session's life) is still up.
	if _, err := s.List(ctx); err != nil {
		t.Fatalf("the owner's connection after the big list: %v", err)
	}
}
