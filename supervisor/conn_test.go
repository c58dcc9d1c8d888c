package supervisor

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cellproject/cell/wire"
)

// TestListPagesFitFrames is finding 3 of issue 10: 400 cells with the
// longest keys make a list far over one frame; every page fits one, the
// pages cover every cell once, and the Go client follows them.
func TestListPagesFitFrames(t *testing.T) {
	s := &Session{cells: map[string]*cellEntry{}}
	long := strings.Repeat("n", 64)
	for i := 0; i < 400; i++ {
		key := fmt.Sprintf("%s@%s%03d", long, strings.Repeat("i", 61), i)
		s.cells[key] = &cellEntry{key: key, name: long, parent: key, depth: 3, backend: "podman",
			state: stateRunning, started: time.Now()}
	}
	var whole bytes.Buffer
	if err := wire.WriteMessage(&whole, wire.Reply{ID: 1, OK: true, Cells: s.list()}); err == nil {
		t.Fatal("the control: 400 long-keyed cells fit one frame; the test shows nothing")
	}
	seen := map[string]int{}
	req := wire.Request{ID: 1, Op: wire.OpList}
	pages := 0
	for {
		rep := s.listPage(req)
		var b bytes.Buffer
		if err := wire.WriteMessage(&b, rep); err != nil {
			t.Fatalf("page %d (%d cells): %v", pages, len(rep.Cells), err)
		}
		pages++
		for _, c := range rep.Cells {
			seen[c.Key]++
		}
		if rep.Next == "" {
			break
		}
		req.Cursor = rep.Next
	}
	if len(seen) != 400 || pages < 2 {
		t.Fatalf("%d pages covered %d cells, want all 400 over several", pages, len(seen))
	}
	for k, n := range seen {
		if n != 1 {
			t.Fatalf("cell %s listed %d times", k, n)
		}
	}
}

// TestFitReplyCutsLongErrors: no error reply exceeds a frame.
func TestFitReplyCutsLongErrors(t *testing.T) {
	rep := errorReply(3, wire.CodeSpawnFailed, "", strings.Repeat("x", 2*wire.MaxFrame))
	var b bytes.Buffer
	if err := wire.WriteMessage(&b, rep); err == nil {
		t.Fatal("the control: the long error fits a frame")
	}
	b.Reset()
	if err := wire.WriteMessage(&b, fitReply(rep)); err != nil {
		t.Fatal(err)
	}
}
