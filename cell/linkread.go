package cell

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"
)

// A link has no reader goroutine of its own: a waiting call reads the
// socket or the junction's ring itself (it leads), hands the replies of
// other calls to them, and when its own comes passes the reading to another
// waiting call. A call alone on the link so reads its own reply, as a plain
// ping-pong does, with no goroutine woken in between; on a junction the
// leader spins on the ring the way the ring's reader does, and sleeps on
// its eventfd after that.
//
// When nobody waits, the watcher (a goroutine the idle timer starts) reads
// instead, so that GOAWAY and the peer's end are seen on an idle link too.
// An interrupt (a read deadline in the past on a socket, InterruptRead on a
// junction) takes the role back from a holder that must let go: the watcher
// when a call comes, a leader whose ctx ended. The frame reader keeps a
// frame cut by it, so the next holder resumes it.

// idleWatch is how long a link may go unread while no call waits before the
// watcher reads it: how late GOAWAY or the peer's end is seen when idle.
const idleWatch = 10 * time.Millisecond

// await waits for cl's reply, leading when nobody reads.
func (l *link) await(ctx context.Context, cl *call) (frame, error) {
	l.mu.Lock()
	lead := !l.reading && !cl.answered
	switch {
	case cl.answered: // the reply came before the call began to wait
	case lead:
		l.reading, l.leader = true, cl
	default:
		if l.leader == nil && !l.ended {
			l.yieldLocked() // the watcher: a call takes over
		}
		l.pushWaiterLocked(cl)
	}
	l.mu.Unlock()
	for {
		if lead {
			return l.lead(ctx, cl)
		}
		select {
		case f := <-cl.rep:
			if f.kind == leadToken.kind {
				lead = true
				continue
			}
			return f, nil
		case <-l.done:
			select { // a reply may have been delivered just before the end
			case f := <-cl.rep:
				if f.kind != leadToken.kind {
					return f, nil
				}
			default:
			}
			return frame{}, l.closeErr()
		case <-ctx.Done():
			l.abandon(cl)
			return frame{}, ctx.Err()
		}
	}
}

// lead reads frames until me's reply (me nil: the watcher, until asked to
// yield), delivering the others'.
func (l *link) lead(ctx context.Context, me *call) (frame, error) {
	if ctx.Done() != nil {
		// Only here: the closure costs an allocation per call, and most
		// calls' ctx never ends.
		stop := context.AfterFunc(ctx, func() {
			l.mu.Lock()
			if l.leader == me && !l.ended {
				l.yieldLocked()
			}
			l.mu.Unlock()
		})
		defer stop()
	}
	for {
		f, err := l.ch.recv()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			l.mu.Lock()
			if me == nil || ctx.Err() != nil {
				if me != nil {
					l.pending.take(me.id)
				}
				idle := l.goaway.Load() && l.pending.n == 0
				l.passLocked()
				l.mu.Unlock()
				if idle {
					l.ch.close()
				}
				return frame{}, ctx.Err()
			}
			// A deadline meant for the holder before: read on.
			l.clearYieldLocked()
			l.mu.Unlock()
			continue
		}
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
				err = ErrClosed
			}
			l.end(err)
			return frame{}, l.closeErr()
		}
		switch f.kind {
		case kindReply, kindError:
		case kindGoAway:
			l.mu.Lock()
			l.goaway.Store(true)
			idle := l.pending.n == 0
			l.mu.Unlock()
			if idle {
				l.ch.close() // nothing will come; the next call redials
			}
			continue
		default:
			l.end(fmt.Errorf("%w: frame kind %d from a server", ErrMalformed, f.kind))
			return frame{}, l.closeErr()
		}
		l.mu.Lock()
		cl, ok := l.pending.take(f.id)
		if ok {
			cl.answered = true
			l.dropWaiterLocked(cl)
		}
		mine := ok && cl == me
		if mine {
			l.passLocked()
		}
		idle := l.goaway.Load() && l.pending.n == 0
		l.mu.Unlock()
		// A reply nobody waits for answers a call whose ctx ended: drop it.
		if ok && !mine {
			cl.rep <- f
		} else if !ok {
			Recycle(f.body)
		}
		if idle {
			l.ch.close()
		}
		if mine {
			return f, nil
		}
	}
}

// busyWatch is how long a link with calls in flight may go unread while
// none of them waits: they may still be writing, and their replies, unread,
// could fill the connection until the cell stops reading those writes. It
// bounds how long such a write stalls; most often a call that waits takes
// the reading first, and no watcher starts, nor has to be woken to let go.
const busyWatch = 200 * time.Microsecond

// passLocked gives up the read role: to a waiting call, else to nobody,
// with the idle timer set: within busyWatch while calls are in flight
// (their replies must be read even if they take a while to wait), else
// within idleWatch.
func (l *link) passLocked() {
	l.clearYieldLocked()
	l.leader = nil
	if cl := l.waiters; cl != nil {
		l.dropWaiterLocked(cl)
		l.leader = cl
		cl.rep <- leadToken // empty: a waiting call has no reply yet
		return
	}
	l.reading = false
	if l.pending.n > 0 {
		l.watchSoonLocked()
		return
	}
	if !l.idleSet {
		l.idleSet = true
		l.idle.Reset(idleWatch)
	}
}

// watchSoonLocked sets the idle timer to start the watcher within busyWatch,
// unless a call takes the reading first. A timer set so already is left:
// calls that keep coming must not keep putting it off.
func (l *link) watchSoonLocked() {
	if l.idleSet && l.soon {
		return
	}
	l.idleSet, l.soon = true, true
	l.idle.Reset(busyWatch)
}

// watchIdle is the idle timer's function: the watcher, when nobody reads.
func (l *link) watchIdle() {
	l.mu.Lock()
	l.idleSet, l.soon = false, false
	if l.reading {
		l.mu.Unlock()
		return
	}
	l.reading, l.leader = true, nil
	l.mu.Unlock()
	l.lead(context.Background(), nil)
}

// yieldLocked asks the holder of the read role to let go.
func (l *link) yieldLocked() {
	if !l.yield {
		l.yield = true
		l.ch.interrupt(true)
	}
}

func (l *link) clearYieldLocked() {
	if l.yield {
		l.yield = false
		l.ch.interrupt(false)
	}
}

// abandon forgets a waiting call whose ctx ended, passing on the read role
// if it was just handed it.
func (l *link) abandon(cl *call) {
	l.mu.Lock()
	l.pending.take(cl.id)
	l.dropWaiterLocked(cl)
	if l.leader == cl && !l.ended {
		select {
		case <-cl.rep: // the lead token
		default:
		}
		l.passLocked()
	}
	idle := l.goaway.Load() && l.pending.n == 0
	l.mu.Unlock()
	if idle {
		l.ch.close()
	}
}

// end fails the link for good: the holder of the read role calls it, or
// close when nobody holds it.
func (l *link) end(err error) {
	l.fail(err)
	l.ch.close()
	l.mu.Lock()
	l.reading = true
	ended := l.ended
	l.ended = true
	l.idle.Stop()
	l.mu.Unlock()
	if !ended {
		close(l.done)
	}
}

func (l *link) pushWaiterLocked(cl *call) {
	cl.waiting = true
	cl.prev, cl.next = nil, l.waiters
	if l.waiters != nil {
		l.waiters.prev = cl
	}
	l.waiters = cl
}

func (l *link) dropWaiterLocked(cl *call) {
	if !cl.waiting {
		return
	}
	cl.waiting = false
	if cl.prev != nil {
		cl.prev.next = cl.next
	} else {
		l.waiters = cl.next
	}
	if cl.next != nil {
		cl.next.prev = cl.prev
	}
	cl.prev, cl.next = nil, nil
}
