package harness

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cellproject/cell/cell"
	"github.com/cellproject/cell/internal/testutil"
)

// Load is the client of the upgrade-under-load proofs: clients that keep
// calling a cell's "pid" through the SDK, one connection each at a time,
// reconnecting when a connection ends, and count what went wrong.
type Load struct {
	calls, failed, refused atomic.Int64
	start                  time.Time
	callTimeout            time.Duration
	stop                   context.CancelFunc
	wg                     sync.WaitGroup

	mu        sync.Mutex // guards firstErrs
	firstErrs []string
}

// LoadReport is what a Load saw, from StartLoad to Stop.
type LoadReport struct {
	Calls, Failed, Refused int64
	// Rate is calls a second.
	Rate float64
	// FirstErrs are the first few errors, for the test's message.
	FirstErrs []string
}

// StartLoad starts clients calling name in s until ctx ends or Stop. A
// call that takes longer than ten seconds (stretched by testutil.Scaled)
// counts as failed.
func StartLoad(ctx context.Context, t testing.TB, s *cell.Session, name string, clients int) *Load {
	ctx, stop := context.WithCancel(ctx)
	l := &Load{start: time.Now(), callTimeout: testutil.Scaled(t, 10*time.Second), stop: stop}
	for range clients {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			l.client(ctx, s, name)
		}()
	}
	return l
}

// Stop ends the clients, waits for them and reports.
func (l *Load) Stop() LoadReport {
	l.stop()
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return LoadReport{Calls: l.calls.Load(), Failed: l.failed.Load(), Refused: l.refused.Load(),
		Rate: float64(l.calls.Load()) / time.Since(l.start).Seconds(), FirstErrs: l.firstErrs}
}

func (l *Load) note(kind string, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.firstErrs) < 5 {
		l.firstErrs = append(l.firstErrs, kind+": "+err.Error())
	}
}

// client calls "pid" until ctx ends; what ctx's end interrupts does not
// count.
func (l *Load) client(ctx context.Context, s *cell.Session, name string) {
	var conn *cell.Conn
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	for ctx.Err() == nil {
		if conn == nil {
			c, err := s.Connect(ctx, name)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, cell.ErrNotRunning) {
					l.refused.Add(1)
					l.note("refused", err)
				} else {
					l.failed.Add(1)
					l.note("connect", err)
				}
				continue
			}
			conn = c
		}
		callCtx, cancel := context.WithTimeout(ctx, l.callTimeout)
		_, err := conn.Call(callCtx, "pid", nil)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			l.failed.Add(1)
			l.note("call", err)
			conn.Close()
			conn = nil
			continue
		}
		l.calls.Add(1)
	}
}
