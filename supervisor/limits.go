package supervisor

import (
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cellproject/cell/internal/audit"
	"github.com/cellproject/cell/wire"
)

// Bounds on what each class of peer may hold (docs/umbilical.md, "Bounds").
// Every process of the user can connect to the session socket, a sandboxed
// cell included, so every class is bounded well below the root's fd limit,
// and the classes that need no secret (a connection before its hello, an
// observer) make room by closing their own oldest instead of refusing: a
// flood then only ever displaces the flood.
const (
	// maxPending bounds connections that have not finished hello; the
	// oldest is closed to admit a new one.
	maxPending = 64
	// maxObservers bounds observer connections; the one idle longest is
	// closed to admit a new one.
	maxObservers = 16
	// observerIdle closes an observer connection silent this long after
	// its last request. Cell and owner connections have no idle bound: a
	// cell's open connection is how it learns that the session ended.
	observerIdle = 30 * time.Second
	// maxConnsPerCell bounds the connections of one cell token (the SDK
	// holds two); maxOwnerConns those made with the owner token.
	maxConnsPerCell = 8
	maxOwnerConns   = 32
	// maxConnsCap is the most connections the session socket holds at all;
	// maxTotalConns lowers it to a quarter of the fd limit, leaving the
	// rest to launches, the owner and the backends.
	maxConnsCap = 1024
)

// maxTotalConns is the total bound for this process's fd limit.
func maxTotalConns() int {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil || rl.Cur/4 >= maxConnsCap {
		return maxConnsCap
	}
	return max(int(rl.Cur/4), 16)
}

// connClass is what a connection counts against.
type connClass int

const (
	classPending connClass = iota
	classOwner
	classCell
	classObserver
)

// umbConn is one umbilical connection and its accounting. Only its serving
// goroutine reads it; writes go through send, which teardown uses too.
type umbConn struct {
	net.Conn
	accepted time.Time
	listener bool // accepted on the session socket (not the owner's own)
	pid      int  // the peer's pid (SO_PEERCRED) when it connected

	wmu  sync.Mutex // guards writes, busy and shut
	busy bool       // a request was read and its reply not yet written
	shut bool       // teardown has begun: close after the reply in flight

	// Guarded by Session.mu.
	class      connClass
	token      string // cell token for classCell
	lastActive time.Time
	own        *budget // the budget of an owner or observer connection
}

// send writes one reply; false means the connection is broken.
func (c *umbConn) send(rep wire.Reply) bool {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.sendLocked(rep)
}

func (c *umbConn) sendLocked(rep wire.Reply) bool {
	return c.sendWithin(rep, helloTimeout)
}

// sendWithin writes rep, giving up after d: a peer that reads nothing
// cannot hold the root longer than that.
func (c *umbConn) sendWithin(rep wire.Reply, d time.Duration) bool {
	c.SetWriteDeadline(time.Now().Add(d))
	err := wire.WriteMessage(c.Conn, fitReply(rep))
	c.SetWriteDeadline(time.Time{})
	return err == nil
}

// fitReply shortens an error message that would make the reply exceed the
// frame bound: the root never makes a frame it cannot send. Paging keeps
// every other reply far below the bound.
func fitReply(rep wire.Reply) wire.Reply {
	if rep.Error != nil && len(rep.Error.Message) > wire.MaxFrame/2 {
		e := *rep.Error
		e.Message = e.Message[:wire.MaxFrame/2] + "... (cut)"
		rep.Error = &e
	}
	return rep
}

// begin marks a request in flight; false means teardown has begun and the
// request is answered shutting_down instead.
func (c *umbConn) begin() bool {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.shut {
		return false
	}
	c.busy = true
	return true
}

// finish writes the reply of the request in flight; false means the
// connection must close (broken, or teardown began meanwhile).
func (c *umbConn) finish(rep wire.Reply) bool {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.busy = false
	return c.sendLocked(rep) && !c.shut
}

// finishFile is finish for a reply that carries a descriptor (SCM_RIGHTS):
// the listener handover. A connection that is not a Unix socket cannot
// carry one and is closed.
func (c *umbConn) finishFile(rep wire.Reply, f *os.File) bool {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.busy = false
	uc, isUnix := c.Conn.(*net.UnixConn)
	if !isUnix {
		return false
	}
	c.SetWriteDeadline(time.Now().Add(helloTimeout))
	err := wire.WriteMessageFile(uc, rep, f)
	c.SetWriteDeadline(time.Time{})
	return err == nil && !c.shut
}

// shutdownNoticeTimeout bounds the write of the unsolicited shutting_down:
// teardown must not wait on peers that do not read.
const shutdownNoticeTimeout = 100 * time.Millisecond

// shutdown tells the peer that the session ends: an idle connection gets
// shutting_down with id 0 and is closed; one with a request in flight gets
// that request's reply (shutting_down for a spawn) and closes after it.
func (c *umbConn) shutdown() {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.shut {
		return
	}
	c.shut = true
	if !c.busy {
		c.sendWithin(errorReply(0, wire.CodeShuttingDown, "", "the session is ending"), shutdownNoticeTimeout)
		c.Close()
	}
}

// admitConnLocked registers a new connection of the session socket as
// pending. It returns false when the total bound is reached, or the pending
// bound is and the newcomer's process holds the most pending connections.
// Otherwise, at the pending bound, it closes the oldest pending connection
// of the process holding the most, so that a flood from a few processes
// displaces only itself and a lone client saying hello is never the one
// closed.
func (s *Session) admitConnLocked(c *umbConn) bool {
	if s.closing || len(s.conns) >= s.maxConns {
		return false
	}
	if s.countLocked(classPending) >= maxPending && !s.evictLocked(classPending, c.pid) {
		// The newcomer's own process holds the most: it is the flood, and
		// its new connection goes at once, before it costs a goroutine.
		return false
	}
	c.lastActive = c.accepted
	s.conns[c] = struct{}{}
	return true
}

// countLocked counts the session socket's connections of class.
func (s *Session) countLocked(class connClass) int {
	n := 0
	for o := range s.conns {
		if o.class == class && o.listener {
			n++
		}
	}
	return n
}

// evictLocked closes one connection of the session socket of class (pending
// or observer): of the process holding the most of them (newcomer, about to
// add one, counts one more), the one idle longest. False when there is none,
// or when that process is the newcomer's own (nonzero newcomer).
func (s *Session) evictLocked(class connClass, newcomer int) bool {
	per := map[int]int{}
	if newcomer != 0 {
		per[newcomer] = 1
	}
	for o := range s.conns {
		if o.class == class && o.listener {
			per[o.pid]++
		}
	}
	// Doubled weights break ties against the newcomer.
	heaviest, most := 0, 0
	for pid, n := range per {
		w := 2 * n
		if pid == newcomer {
			w--
		}
		if w > most {
			heaviest, most = pid, w
		}
	}
	if heaviest == newcomer && newcomer != 0 {
		return false // the newcomer's process is the heaviest: nothing of another's goes
	}
	var victim *umbConn
	for o := range s.conns {
		if o.class == class && o.listener && o.pid == heaviest && (victim == nil || o.lastActive.Before(victim.lastActive)) {
			victim = o
		}
	}
	if victim == nil {
		return false
	}
	victim.Close()
	delete(s.conns, victim)
	return true
}

// promoteLocked moves c from pending to the class its hello earned, within
// that class's bound; an error is the message of a too_many_connections
// refusal.
func (s *Session) promoteLocked(c *umbConn, who peer) error {
	count := 0
	class := classOwner
	switch who.role {
	case wire.RoleCell:
		class = classCell
	case wire.RoleObserver:
		class = classObserver
	}
	for o := range s.conns {
		if o == c || o.class != class || (class == classCell && o.token != who.token) || !o.listener {
			continue
		}
		count++
	}
	switch {
	case !c.listener:
	case class == classObserver && count >= maxObservers:
		if !s.evictLocked(classObserver, c.pid) {
			return fmt.Errorf("this process already holds the most of the %d observer connections", count)
		}
	case class == classCell && count >= maxConnsPerCell:
		return fmt.Errorf("cell %s already holds %d connections to the root", who.key, count)
	case class == classOwner && count >= maxOwnerConns:
		return fmt.Errorf("the owner token already holds %d connections to the root", count)
	}
	c.class, c.token, c.lastActive = class, who.token, time.Now()
	return nil
}

// endRightsLocked closes every connection that speaks for the cell token
// and drops its budget: a connection's rights end with its cell.
func (s *Session) endRightsLocked(token string) {
	for c := range s.conns {
		if c.class == classCell && c.token == token {
			c.Close()
		}
	}
	if b := s.budgets[token]; b != nil {
		s.flushBudget(b, true)
		delete(s.budgets, token)
	}
}

// Request rate, per principal: all connections of one cell token share a
// bucket, so that more connections buy no more requests; the owner and each
// observer connection have their own. Sequential traffic, which waits for
// each reply, stays far below it; only a pipelining flood reaches it.
const (
	rateBurst     = 200
	ratePerSecond = 100
)

// Denials are audited per principal in bursts: the first denial of a burst
// in full, the rest counted into one record when the burst ends (no denial
// for burstGap) or has lasted burstMax, so that a flood cannot push real
// records out of the journal.
const (
	burstGap = time.Second
	burstMax = 10 * time.Second
)

// budget is what one principal may spend: its request rate and its audit.
type budget struct {
	mu         sync.Mutex // guards everything below
	tokens     float64
	last       time.Time
	burstStart time.Time // zero when no burst is open
	lastDenial time.Time
	suppressed int
	lastEv     audit.Event
}

func newBudget(now time.Time) *budget { return &budget{tokens: rateBurst, last: now} }

// allow takes one request from the bucket.
func (b *budget) allow(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.tokens = min(rateBurst, b.tokens+now.Sub(b.last).Seconds()*ratePerSecond)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// noteDenial reports whether ev, a denial at now, is recorded in full; when
// it is not, it is counted into the burst's aggregate. A burst that ended
// before now is returned as agg, to be recorded first.
func (b *budget) noteDenial(now time.Time, ev audit.Event) (full bool, agg *audit.Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.burstStart.IsZero() && now.Sub(b.lastDenial) < burstGap && now.Sub(b.burstStart) < burstMax {
		b.suppressed++
		b.lastDenial, b.lastEv = now, ev
		return false, nil
	}
	agg = b.closeBurstLocked()
	b.burstStart, b.lastDenial = now, now
	return true, agg
}

// due returns the aggregate of a burst that is over at now (or of any open
// burst when force), closing it; nil when there is nothing to record.
func (b *budget) due(now time.Time, force bool) *audit.Event {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.burstStart.IsZero() || (!force && now.Sub(b.lastDenial) < burstGap && now.Sub(b.burstStart) < burstMax) {
		return nil
	}
	return b.closeBurstLocked()
}

func (b *budget) closeBurstLocked() *audit.Event {
	n, ev, start, end := b.suppressed, b.lastEv, b.burstStart, b.lastDenial
	b.burstStart, b.suppressed = time.Time{}, 0
	if n == 0 {
		return nil
	}
	ev.ID = ""
	ev.Reason = fmt.Sprintf("%d more denials in a burst of %s not recorded one by one; the last: %s",
		n, end.Sub(start).Round(time.Millisecond), ev.Reason)
	return &ev
}

// recordDecision audits a decision of who's; denials go through who's
// budget so that a flood of them makes one record per burst.
func (s *Session) recordDecision(who peer, ev audit.Event, now time.Time) {
	if ev.Allow || who.budget == nil {
		s.cfg.Audit.Record(ev)
		return
	}
	full, agg := who.budget.noteDenial(now, ev)
	if agg != nil {
		s.cfg.Audit.Record(*agg)
	}
	if full {
		s.cfg.Audit.Record(ev)
	}
}

// flushBudget records b's burst aggregate when it is due (or at once).
func (s *Session) flushBudget(b *budget, force bool) {
	if agg := b.due(time.Now(), force); agg != nil {
		s.cfg.Audit.Record(*agg)
	}
}

// auditFlusher records the aggregate of every burst that has ended, until
// the session ends, and then of every burst still open.
func (s *Session) auditFlusher() {
	tick := time.NewTicker(burstGap / 4)
	defer tick.Stop()
	for {
		select {
		case <-s.life.Done():
			s.forEachBudget(func(b *budget) { s.flushBudget(b, true) })
			return
		case <-tick.C:
			s.forEachBudget(func(b *budget) { s.flushBudget(b, false) })
		}
	}
}

func (s *Session) forEachBudget(fn func(*budget)) {
	s.mu.Lock()
	bs := make([]*budget, 0, len(s.budgets)+len(s.conns))
	for _, b := range s.budgets {
		bs = append(bs, b)
	}
	for c := range s.conns {
		if c.own != nil {
			bs = append(bs, c.own)
		}
	}
	s.mu.Unlock()
	for _, b := range bs {
		fn(b)
	}
}
