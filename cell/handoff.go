package cell

import (
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// handoffWatch is a server's one clock for handing the reading on (see
// serverConn.read): once a period it looks at every connection, and starts
// a reader beside a handler that has run in line since its last look.
//
// It keeps time by sleeping in nanosleep, not with a runtime timer: a
// timer set while calls come and go, even one that never fires, costs the
// calls of this process a thread wake-up now and then (the runtime breaks
// its network poller's wait to account for it), and on a small machine
// that shows in every round trip. It stops looking after a few looks find
// nothing handled in line, so that an idle cell costs no CPU, and the
// next handler to start wakes it.
type handoffWatch struct {
	srv    *server
	conns  []*serverConn // the look's own, reused
	parked atomic.Bool
	wake   chan struct{} // one token: the watch is to look again
	stop   chan struct{}
	done   chan struct{}
}

// quietLooks is how many looks that find nothing handled in line park the
// watch.
const quietLooks = 3

func newHandoffWatch(srv *server) *handoffWatch {
	w := &handoffWatch{srv: srv, wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	w.parked.Store(true)
	return w
}

// busy tells the watch that a handler starts in line; the reader has
// already marked it in its connection's turn, so a watch parking meanwhile
// sees it on its last look.
func (w *handoffWatch) busy() {
	if w.parked.Load() && w.parked.CompareAndSwap(true, false) {
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
}

func (w *handoffWatch) run() {
	defer close(w.done)
	period := unix.NsecToTimespec(int64(handoffAfter))
	for {
		// Parked: a handler that started before the flag was set may have
		// seen it clear, so look once more, handing nothing on, first.
		if !w.look(false) || !w.parked.CompareAndSwap(true, false) {
			select {
			case <-w.wake:
			case <-w.stop:
				return
			}
		}
		for quiet := 0; quiet < quietLooks; {
			unix.Nanosleep(&period, nil)
			select {
			case <-w.stop:
				return
			default:
			}
			if w.look(true) {
				quiet = 0
			} else {
				quiet++
			}
		}
		w.parked.Store(true)
	}
}

// look runs checkHandler on every connection and reports whether any of
// them handled something in line since the last look.
func (w *handoffWatch) look(handOff bool) bool {
	w.srv.mu.Lock()
	w.conns = w.conns[:0]
	for sc := range w.srv.conns {
		w.conns = append(w.conns, sc)
	}
	w.srv.mu.Unlock()
	// Unlocked: a hand-off takes the server's lock to track the handler.
	active := false
	for _, sc := range w.conns {
		if sc.checkHandler(handOff) {
			active = true
		}
	}
	clear(w.conns)
	return active
}

func (w *handoffWatch) close() {
	close(w.stop)
	<-w.done
}
