package supervisor

import (
	"errors"
	"net"
	"os"
	"time"

	"go.uber.org/zap"
)

// accept errors back off like net/http's server: 5 ms doubling to 1 s, so
// that EMFILE (which accept returns at once, forever, until an fd frees)
// cannot spin a core; and they are logged at most once per acceptLogEvery
// with a count, so that they cannot flood the log either.
const (
	acceptBackoffMin = 5 * time.Millisecond
	acceptBackoffMax = time.Second
	acceptLogEvery   = 10 * time.Second
)

func (s *Session) acceptLoop() {
	var backoff time.Duration
	var failures, refused int
	var lastLog, lastRefusedLog time.Time
	for {
		conn, err := s.listener.AcceptUnix()
		if err != nil {
			if s.life.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			failures++
			if now := time.Now(); now.Sub(lastLog) >= acceptLogEvery {
				s.cfg.Log.Warn("umbilical accept failing; backing off", zap.Error(err),
					zap.Int("failures_since_last_log", failures), zap.Duration("backoff", backoff))
				lastLog, failures = now, 0
			}
			// Out of fds is most likely a flood of the classes that need no
			// secret: the oldest connection without hello goes, or else the
			// observer idle longest, so that the next accept can succeed.
			s.mu.Lock()
			if !s.evictLocked(classPending, 0) {
				s.evictLocked(classObserver, 0)
			}
			s.mu.Unlock()
			backoff = min(max(2*backoff, acceptBackoffMin), acceptBackoffMax)
			select {
			case <-time.After(backoff):
			case <-s.life.Done():
				return
			}
			continue
		}
		backoff = 0
		// Who connects is known before a byte is read: the bounds below
		// are fair per process.
		pid, err := checkPeer(conn, os.Getuid())
		if err != nil {
			conn.Close()
			refused++
			if now := time.Now(); now.Sub(lastRefusedLog) >= acceptLogEvery {
				s.cfg.Log.Warn("refused umbilical connections", zap.Error(err), zap.Int("refused_since_last_log", refused))
				lastRefusedLog, refused = now, 0
			}
			continue
		}
		c := &umbConn{Conn: conn, accepted: time.Now(), listener: true, pid: pid}
		s.mu.Lock()
		ok := s.admitConnLocked(c)
		s.mu.Unlock()
		if !ok {
			conn.Close()
			continue
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serveConn(c, false)
		}()
	}
}
