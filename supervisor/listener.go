package supervisor

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"

	"github.com/cellproject/cell/wire"
)

// cellListener is the listening socket the root binds for one cell key. The
// root never accepts on it: it keeps the descriptor so that the socket lives
// across instances (connections queue in its backlog meanwhile) and hands a
// copy to each instance on the umbilical.
type cellListener struct {
	path string
	file *os.File
}

// bindListener binds and listens on path, which must not exist: the root
// creates every file of the session dir, and no cell can create one there.
func bindListener(path string) (*cellListener, error) {
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("bind cell socket: %w", err)
	}
	// The file is removed by close, not by the listener: the socket must
	// outlive this *net.UnixListener, which is only the way to make it.
	ln.SetUnlinkOnClose(false)
	defer ln.Close()
	// The session dir is 0700 already; this keeps the socket private even
	// if it were not.
	if err := os.Chmod(path, 0o600); err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("bind cell socket: %w", err)
	}
	f, err := ln.File()
	if err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("bind cell socket: %w", err)
	}
	return &cellListener{path: path, file: f}, nil
}

// close removes the socket's file, so that no new connection can reach it,
// and drops the root's descriptor; instances that still hold one keep
// accepting what already queued.
func (l *cellListener) close() error {
	err := os.Remove(l.path)
	l.file.Close()
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove cell socket: %w", err)
	}
	return nil
}

// errNoListener is the handover refusal for a connection whose token names
// no instance that is waiting for a listener.
var errNoListener = errors.New("no listener is held for this connection")

// handOver answers a cell's listener request with its cell's listening
// socket attached (SCM_RIGHTS), and marks the asking instance as serving.
// false means the connection is broken.
func (s *Session) handOver(c *umbConn, who peer, req wire.Request) bool {
	s.mu.Lock()
	var in *instance
	var file *os.File
	if e := s.cells[who.key]; who.role == wire.RoleCell && e != nil && e.ln != nil {
		for _, c := range []*instance{e.cur, e.next} {
			if c != nil && c.token == who.token {
				in, file = c, e.ln.file
			}
		}
	}
	s.mu.Unlock()
	if in == nil {
		return c.finish(errorReply(req.ID, wire.CodeNotFound, "", fmt.Sprintf("%s: %v", who.describe(), errNoListener)))
	}
	if !c.finishFile(wire.Reply{ID: req.ID, OK: true, Key: who.key}, file) {
		return false
	}
	in.markTook()
	return true
}
