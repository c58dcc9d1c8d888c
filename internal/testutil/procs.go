package testutil

import (
	"context"
	"testing"
	"time"

	"github.com/cellproject/cell/internal/linuxproc"
)

// Gone waits up to within until every process of pids, as it is when Gone
// is called, is dead: no longer in /proc, replaced by another (pid reuse,
// told by its start time), or a zombie. It fails the test otherwise.
func Gone(t testing.TB, within time.Duration, pids ...int) {
	t.Helper()
	firsts := map[int]uint64{}
	for _, p := range pids {
		if st, err := linuxproc.ReadStat(p); err == nil {
			firsts[p] = st.StartTime
		}
	}
	deadline := time.Now().Add(within)
	for p, start := range firsts {
		for {
			st, err := linuxproc.ReadStat(p)
			if err != nil || st.StartTime != start || st.State == 'Z' {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("pid %d still alive (state %c) after %v", p, st.State, within)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// Alive reports whether pid names a process that is not a zombie.
func Alive(pid int) bool {
	st, err := linuxproc.ReadStat(pid)
	return err == nil && st.State != 'Z'
}

// AwaitDone waits up to within for a launched cell to be done (reaped,
// removed), and fails the test otherwise.
func AwaitDone(t testing.TB, in interface {
	Done() <-chan struct{}
	ID() string
}, within time.Duration) {
	t.Helper()
	select {
	case <-in.Done():
	case <-time.After(within):
		t.Fatalf("cell %s not done after %v", in.ID(), within)
	}
}

// KillAtEnd stops a launched cell by force (a Stop with an ended context)
// when the test ends, whatever it did with it before.
func KillAtEnd(t testing.TB, in interface{ Stop(context.Context) error }) {
	t.Cleanup(func() {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_ = in.Stop(ctx)
	})
}
