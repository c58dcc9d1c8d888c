package supervisor

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
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
	key   string // the cell's instance key; empty for the owner and observers
	name  string // the cell's name, which policy knows it by
	token string // the cell instance's token; rights end when it leaves the table
	depth int
	// budget is the principal's rate and audit budget: shared by every
	// connection of one cell token, per connection otherwise.
	budget *budget
}

func (p peer) describe() string {
	if p.role == wire.RoleCell {
		return p.key
	}
	return string(p.role)
}

// serveConn runs one umbilical connection to its end. ownerConn marks the
// owner's own connection, whose end is the session's end. A connection of
// the session socket arrives registered (acceptLoop); the owner's is
// registered here.
func (s *Session) serveConn(c *umbConn, ownerConn bool) {
	defer c.Close()
	defer s.untrack(c)
	log := s.cfg.Log.With(zap.Bool("owner_conn", ownerConn))
	if ownerConn {
		pid, err := checkPeer(c.Conn, os.Getuid())
		if err != nil {
			log.Warn("refused umbilical connection", zap.Error(err))
			return
		}
		c.pid = pid
		s.mu.Lock()
		ok := s.admitConnLocked(c)
		s.mu.Unlock()
		if !ok {
			return
		}
	}

	c.SetReadDeadline(time.Now().Add(helloTimeout))
	who, ok := s.hello(c, ownerConn, log)
	if ownerConn {
		close(s.ownerAnswered)
	}
	if !ok {
		return
	}
	c.SetReadDeadline(time.Time{})
	log = log.With(zap.String("peer", who.describe()))

	for {
		if who.role == wire.RoleObserver {
			c.SetReadDeadline(time.Now().Add(observerIdle))
		}
		payload, err := wire.ReadFrame(c, wire.MaxFrame)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				log.Info("umbilical connection closed", zap.Error(err))
			}
			return
		}
		now := time.Now()
		s.mu.Lock()
		c.lastActive = now
		s.mu.Unlock()
		req, decodeErr := wire.DecodeRequest(payload)
		if !c.begin() {
			c.send(errorReply(req.ID, wire.CodeShuttingDown, "", "the session is ending"))
			return
		}
		var rep wire.Reply
		keepOpen := true
		switch {
		case !who.budget.allow(now):
			rep = errorReply(req.ID, wire.CodeRateLimited, "", fmt.Sprintf("over %d requests in a burst or %d a second; slow down", rateBurst, ratePerSecond))
		case decodeErr != nil:
			rep = errorReply(0, wire.CodeBadFrame, "", decodeErr.Error())
		case req.Op == wire.OpListener: // its reply carries a descriptor
			if !s.handOver(c, who, req) {
				return
			}
			continue
		default:
			rep, keepOpen = s.dispatch(who, req)
		}
		if !c.finish(rep) || !keepOpen {
			return
		}
	}
}

// hello reads and answers the first request, which must be a hello. Frames
// that are not a request get bad_frame and the connection stays open, as
// after hello, until the hello deadline.
func (s *Session) hello(c *umbConn, ownerConn bool, log *zap.Logger) (peer, bool) {
	var req wire.Request
	for {
		payload, err := wire.ReadFrame(c, wire.MaxFrame)
		if err != nil {
			log.Info("umbilical connection closed before hello", zap.Error(err))
			return peer{}, false
		}
		if req, err = wire.DecodeRequest(payload); err == nil {
			break
		}
		if !c.send(errorReply(0, wire.CodeBadFrame, "", err.Error())) {
			return peer{}, false
		}
	}
	refuse := func(code wire.Code, msg string) (peer, bool) {
		c.send(errorReply(req.ID, code, "", msg))
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
		who = peer{role: wire.RoleCell, key: key, token: req.Token}
		if known {
			e := s.cells[key]
			who.name, who.depth = e.name, e.depth
			if who.budget = s.budgets[req.Token]; who.budget == nil {
				who.budget = newBudget(time.Now())
				s.budgets[req.Token] = who.budget
			}
		}
		s.mu.Unlock()
		if !known || req.Token == "" {
			return refuse(wire.CodeUnknownToken, "no cell of this session has that token")
		}
		rep.Self = key
	case wire.RoleObserver:
		who = peer{role: wire.RoleObserver}
	default:
		return refuse(wire.CodeUnknownToken, fmt.Sprintf("unknown role %q", req.Role))
	}
	if ownerConn && who.role != wire.RoleOwner {
		return refuse(wire.CodeNotPermitted, "the owner's connection must say hello as owner")
	}
	s.mu.Lock()
	if who.budget == nil {
		c.own = newBudget(time.Now())
		who.budget = c.own
	}
	err := s.promoteLocked(c, who)
	s.mu.Unlock()
	if err != nil {
		return refuse(wire.CodeTooManyConnections, err.Error())
	}
	return who, c.send(rep)
}

// dispatch answers one request after hello; keepOpen false closes the connection.
func (s *Session) dispatch(who peer, req wire.Request) (rep wire.Reply, keepOpen bool) {
	if who.role == wire.RoleCell {
		s.mu.Lock()
		_, alive := s.tokens[who.token]
		s.mu.Unlock()
		if !alive {
			return errorReply(req.ID, wire.CodeUnknownToken, "", fmt.Sprintf("cell %s has ended; its token is void", who.key)), false
		}
	}
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
		return s.listPage(req), true
	default:
		return errorReply(req.ID, wire.CodeUnknownOp, "", fmt.Sprintf("unknown operation %q", req.Op)), true
	}
}

func errorReply(id uint64, code wire.Code, reason, msg string) wire.Reply {
	return wire.Reply{ID: id, Error: &wire.Error{Code: code, Reason: reason, Message: msg}}
}

// untrack forgets c; an owner or observer connection's last aggregate of
// denials is recorded now, since nothing else will.
func (s *Session) untrack(c *umbConn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	if c.own != nil {
		s.flushBudget(c.own, true)
	}
}

// listPageBudget is how many bytes of cell entries one list reply carries
// at most, leaving room for the envelope under wire.MaxFrame.
const listPageBudget = wire.MaxFrame - 4<<10

// listPage answers a list request with the cells whose keys sort after its
// cursor, as many as fit one frame; Next is set when more follow.
func (s *Session) listPage(req wire.Request) wire.Reply {
	infos := s.list()
	sort.Slice(infos, func(i, j int) bool { return infos[i].Key < infos[j].Key })
	rep := wire.Reply{ID: req.ID, OK: true}
	size := 0
	for _, info := range infos {
		if info.Key <= req.Cursor {
			continue
		}
		b, err := json.Marshal(info)
		if err != nil {
			continue
		}
		if size+len(b)+1 > listPageBudget && len(rep.Cells) > 0 {
			rep.Next = rep.Cells[len(rep.Cells)-1].Key
			break
		}
		size += len(b) + 1
		rep.Cells = append(rep.Cells, info)
	}
	return rep
}
