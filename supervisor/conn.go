package supervisor

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"go.uber.org/zap"

	"github.com/cellproject/cell/wire"
)

// helloTimeout bounds how long a connection may stay silent before its hello,
// so that idle connections cannot pile up.
const helloTimeout = 5 * time.Second

// peer is who a connection speaks for, fixed by its hello.
type peer struct {
	role  wire.Role
	key   string // the cell's key; empty for the owner and observers
	token string // the cell instance's token; empty for the owner and observers
	depth int
}

func (p peer) describe() string {
	if p.role == wire.RoleCell {
		return p.key
	}
	return string(p.role)
}

// serveConn runs one umbilical connection to its end. ownerConn marks the
// owner's own connection, whose end is the session's end.
func (s *Session) serveConn(conn net.Conn, ownerConn bool) {
	defer conn.Close()
	log := s.cfg.Log.With(zap.Bool("owner_conn", ownerConn))
	if err := checkPeer(conn, os.Getuid()); err != nil {
		log.Warn("refused umbilical connection", zap.Error(err))
		return
	}
	if !s.track(conn) {
		return
	}
	defer s.untrack(conn)

	conn.SetReadDeadline(time.Now().Add(helloTimeout))
	who, ok := s.hello(conn, ownerConn, log)
	if !ok {
		return
	}
	conn.SetReadDeadline(time.Time{})
	log = log.With(zap.String("peer", who.describe()))

	limit := newRateLimiter(time.Now())
	for {
		payload, err := wire.ReadFrame(conn, wire.MaxFrame)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				log.Info("umbilical connection closed", zap.Error(err))
			}
			return
		}
		if !limit.allow(time.Now()) {
			s.reply(conn, errorReply(0, wire.CodeRateLimited, "", "too many requests; slow down"))
			continue
		}
		req, err := wire.DecodeRequest(payload)
		if err != nil {
			s.reply(conn, errorReply(0, wire.CodeBadFrame, "", err.Error()))
			continue
		}
		if req.Op == wire.OpListener { // its reply carries a descriptor
			if !s.handOver(conn, who, req) {
				return
			}
			continue
		}
		rep, keepOpen := s.dispatch(who, req)
		if !s.reply(conn, rep) || !keepOpen {
			return
		}
	}
}

// hello reads and answers the first request, which must be a hello.
func (s *Session) hello(conn net.Conn, ownerConn bool, log *zap.Logger) (peer, bool) {
	payload, err := wire.ReadFrame(conn, wire.MaxFrame)
	if err != nil {
		log.Info("umbilical connection closed before hello", zap.Error(err))
		return peer{}, false
	}
	req, err := wire.DecodeRequest(payload)
	if err != nil {
		s.reply(conn, errorReply(0, wire.CodeBadFrame, "", err.Error()))
		return peer{}, false
	}
	refuse := func(code wire.Code, msg string) (peer, bool) {
		s.reply(conn, errorReply(req.ID, code, "", msg))
		return peer{}, false
	}
	switch {
	case req.Op != wire.OpHello:
		return refuse(wire.CodeHelloRequired, fmt.Sprintf("the first request must be hello, not %q", req.Op))
	case req.Version != wire.Version:
		return refuse(wire.CodeBadVersion, fmt.Sprintf("protocol version %d is not supported; this root speaks %d", req.Version, wire.Version))
	}
	rep := wire.Reply{ID: req.ID, OK: true, Session: s.id, RuntimeDir: s.dir}
	var who peer
	switch req.Role {
	case wire.RoleOwner:
		switch {
		case ownerConn && req.Token == "":
			rep.Token = s.ownerToken
		case req.Token != s.ownerToken:
			return refuse(wire.CodeUnknownToken, "role owner needs the owner token on this connection")
		}
		who = peer{role: wire.RoleOwner}
	case wire.RoleCell:
		s.mu.Lock()
		key, known := s.tokens[req.Token]
		var depth int
		if known {
			depth = s.cells[key].depth
		}
		s.mu.Unlock()
		if !known || req.Token == "" {
			return refuse(wire.CodeUnknownToken, "no cell of this session has that token")
		}
		who = peer{role: wire.RoleCell, key: key, token: req.Token, depth: depth}
		rep.Self = key
	case wire.RoleObserver:
		who = peer{role: wire.RoleObserver}
	default:
		return refuse(wire.CodeUnknownToken, fmt.Sprintf("unknown role %q", req.Role))
	}
	if ownerConn && who.role != wire.RoleOwner {
		return refuse(wire.CodeNotPermitted, "the owner's connection must say hello as owner")
	}
	return who, s.reply(conn, rep)
}

// dispatch answers one request after hello; keepOpen false closes the connection.
func (s *Session) dispatch(who peer, req wire.Request) (rep wire.Reply, keepOpen bool) {
	switch req.Op {
	case wire.OpHello:
		return errorReply(req.ID, wire.CodeHelloRequired, "", "hello was already said on this connection"), false
	case wire.OpSpawn:
		if who.role == wire.RoleObserver {
			return errorReply(req.ID, wire.CodeNotPermitted, "", "observers may only list"), true
		}
		return s.spawn(who, req), true
	case wire.OpStop:
		if who.role == wire.RoleObserver {
			return errorReply(req.ID, wire.CodeNotPermitted, "", "observers may only list"), true
		}
		return s.stop(who, req), true
	case wire.OpUpgrade, wire.OpAwaitFailure:
		if who.role != wire.RoleOwner {
			return errorReply(req.ID, wire.CodeNotPermitted, "", fmt.Sprintf("only the owner may %s", req.Op)), true
		}
		if req.Op == wire.OpUpgrade {
			return s.upgrade(req), true
		}
		return s.awaitFailure(req), true
	case wire.OpList:
		return wire.Reply{ID: req.ID, OK: true, Cells: s.list()}, true
	default:
		return errorReply(req.ID, wire.CodeUnknownOp, "", fmt.Sprintf("unknown operation %q", req.Op)), true
	}
}

// reply writes rep; false means the connection is broken.
func (s *Session) reply(conn net.Conn, rep wire.Reply) bool {
	conn.SetWriteDeadline(time.Now().Add(helloTimeout))
	err := wire.WriteMessage(conn, rep)
	conn.SetWriteDeadline(time.Time{})
	return err == nil
}

func errorReply(id uint64, code wire.Code, reason, msg string) wire.Reply {
	return wire.Reply{ID: id, Error: &wire.Error{Code: code, Reason: reason, Message: msg}}
}

// track registers conn for teardown; false when the session is closing.
func (s *Session) track(conn net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.conns[conn] = struct{}{}
	return true
}

func (s *Session) untrack(conn net.Conn) {
	s.mu.Lock()
	delete(s.conns, conn)
	s.mu.Unlock()
}

// rateLimiter is a token bucket: a burst of rateBurst requests, refilled at
// ratePerSecond. Only its connection's goroutine uses it.
type rateLimiter struct {
	tokens float64
	last   time.Time
}

const (
	rateBurst     = 100
	ratePerSecond = 20
)

func newRateLimiter(now time.Time) *rateLimiter { return &rateLimiter{tokens: rateBurst, last: now} }

func (r *rateLimiter) allow(now time.Time) bool {
	r.tokens = min(rateBurst, r.tokens+now.Sub(r.last).Seconds()*ratePerSecond)
	r.last = now
	if r.tokens < 1 {
		return false
	}
	r.tokens--
	return true
}
