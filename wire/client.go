package wire

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"syscall"
	"time"
)

// Client speaks the umbilical from the requesting side. Calls are serialised
// on the connection: the root answers a connection's requests one at a time,
// in order (pipelining is allowed by the protocol; this client does not use
// it).
type Client struct {
	conn net.Conn

	mu     sync.Mutex // guards nextID and the connection's read/write turns
	nextID uint64
}

// NewClient wraps an established umbilical connection; it does not say hello.
func NewClient(conn net.Conn) *Client { return &Client{conn: conn, nextID: 1} }

// Dial connects to the umbilical socket at path. A full listen backlog
// (EAGAIN: the root is behind, or a flood is filling the queue) is retried,
// 1 ms doubling to 50 ms, until ctx ends.
func Dial(ctx context.Context, path string) (*Client, error) {
	var d net.Dialer
	wait := time.Millisecond
	for {
		conn, err := d.DialContext(ctx, "unix", path)
		if err == nil {
			return NewClient(conn), nil
		}
		if !errors.Is(err, syscall.EAGAIN) {
			return nil, fmt.Errorf("dial umbilical %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("dial umbilical %s: %w (%w)", path, ctx.Err(), err)
		case <-time.After(wait):
		}
		wait = min(2*wait, 50*time.Millisecond)
	}
}

// Conn is the underlying connection, for callers that watch it for EOF.
func (c *Client) Conn() net.Conn { return c.conn }

// Close closes the connection. On the owner's connection this ends the session.
func (c *Client) Close() error { return c.conn.Close() }

// Hello states the protocol version and who this client is.
func (c *Client) Hello(ctx context.Context, role Role, token string) (Reply, error) {
	return c.Call(ctx, Request{Op: OpHello, Version: Version, Role: role, Token: token})
}

// Spawn asks for the cell name (instance may be empty) and returns once its
// socket accepts connections.
func (c *Client) Spawn(ctx context.Context, name, instance string) (Reply, error) {
	return c.Call(ctx, Request{Op: OpSpawn, Name: name, Instance: instance})
}

// Stop asks the root to stop the cell instance with the given key.
func (c *Client) Stop(ctx context.Context, key string) error {
	_, err := c.Call(ctx, Request{Op: OpStop, Name: key})
	return err
}

// maxListPages bounds how many pages List follows, so that a root answering
// with a cursor that never ends cannot keep the client forever.
const maxListPages = 1 << 12

// List returns the session's cells, sorted by key, following the pages of a
// list too large for one frame.
func (c *Client) List(ctx context.Context) ([]CellInfo, error) {
	var cells []CellInfo
	req := Request{Op: OpList}
	for range maxListPages {
		rep, err := c.Call(ctx, req)
		if err != nil {
			return nil, err
		}
		cells = append(cells, rep.Cells...)
		if rep.Next == "" {
			return cells, nil
		}
		if rep.Next <= req.Cursor {
			return nil, fmt.Errorf("umbilical list: %w: cursor %q does not advance past %q", ErrMalformed, rep.Next, req.Cursor)
		}
		req.Cursor = rep.Next
	}
	return nil, fmt.Errorf("umbilical list: %w: more than %d pages", ErrMalformed, maxListPages)
}

// Call sends req with a fresh ID and waits for its reply. An error reply is
// returned as *Error. When ctx ends first the connection is closed, since a
// late reply would otherwise answer the next call.
func (c *Client) Call(ctx context.Context, req Request) (Reply, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	req.ID = c.nextID
	c.nextID++

	stop := context.AfterFunc(ctx, func() { c.conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	rep, err := c.roundTrip(req)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			c.conn.Close()
			return Reply{}, fmt.Errorf("umbilical %s: %w", req.Op, ctxErr)
		}
		return Reply{}, fmt.Errorf("umbilical %s: %w", req.Op, err)
	}
	if !rep.OK {
		if rep.Error == nil {
			return rep, fmt.Errorf("umbilical %s: %w: error reply without an error", req.Op, ErrMalformed)
		}
		return rep, rep.Error
	}
	return rep, nil
}

func (c *Client) roundTrip(req Request) (Reply, error) {
	if err := WriteMessage(c.conn, req); err != nil {
		return Reply{}, err
	}
	payload, err := ReadFrame(c.conn, MaxFrame)
	if err != nil {
		return Reply{}, err
	}
	rep, err := DecodeReply(payload)
	if err != nil {
		return Reply{}, err
	}
	if rep.ID != req.ID {
		return Reply{}, fmt.Errorf("%w: reply %d to request %d", ErrMalformed, rep.ID, req.ID)
	}
	return rep, nil
}

// IsCode reports whether err is an error reply with the given code.
func IsCode(err error, code Code) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == code
}
