package cell

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/cellproject/cell/wire"
)

// Conn is a client connection to one cell. Calls may be made from many
// goroutines at once; they are pipelined on the one socket and their replies
// matched by id.
type Conn struct {
	name string
	nc   net.Conn

	wmu sync.Mutex // serialises frame writes so frames never interleave

	mu      sync.Mutex // guards nextID, pending and err
	nextID  uint64
	pending map[uint64]chan message
	err     error // why the connection ended; set once, then calls fail with it

	done chan struct{} // closed when the reader goroutine has stopped
}

// newConn wraps an established connection to the cell name and starts the
// goroutine that reads replies; Close stops it.
func newConn(name string, nc net.Conn) *Conn {
	c := &Conn{name: name, nc: nc, nextID: 1, pending: make(map[uint64]chan message), done: make(chan struct{})}
	go c.readLoop()
	return c
}

// Name is the cell (key) this connection reaches.
func (c *Conn) Name() string { return c.name }

// Call sends method and body to the cell and waits for the reply body. A
// handler's error comes back as *RemoteError. When ctx ends first the call is
// abandoned (its late reply is dropped) and the connection stays usable.
func (c *Conn) Call(ctx context.Context, method string, body []byte) ([]byte, error) {
	if method == "" || len(method) > maxMethod {
		return nil, fmt.Errorf("call %s: method must be 1 to %d bytes", c.name, maxMethod)
	}
	if len(body) > MaxBody {
		return nil, fmt.Errorf("call %s %s: %w: %d bytes, the limit is %d", c.name, method, ErrTooLarge, len(body), MaxBody)
	}
	ch := make(chan message, 1)
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return nil, fmt.Errorf("call %s %s: %w", c.name, method, err)
	}
	id := c.nextID
	c.nextID++
	c.pending[id] = ch
	c.mu.Unlock()

	payload, err := encodeMessage(message{ID: id, Method: method, Body: body})
	if err == nil {
		err = c.write(ctx, payload)
	}
	if err != nil {
		c.forget(id)
		return nil, fmt.Errorf("call %s %s: %w", c.name, method, err)
	}

	select {
	case rep := <-ch:
		if rep.Error != nil {
			return nil, &RemoteError{Method: method, Code: rep.Error.Code, Message: rep.Error.Message}
		}
		return rep.Body, nil
	case <-c.done:
		// The reader may have delivered just before stopping.
		select {
		case rep := <-ch:
			if rep.Error != nil {
				return nil, &RemoteError{Method: method, Code: rep.Error.Code, Message: rep.Error.Message}
			}
			return rep.Body, nil
		default:
		}
		return nil, fmt.Errorf("call %s %s: %w", c.name, method, c.closeErr())
	case <-ctx.Done():
		c.forget(id)
		return nil, fmt.Errorf("call %s %s: %w", c.name, method, ctx.Err())
	}
}

// write sends one frame. A write cut short by ctx leaves a partial frame on
// the stream, which cannot be resynchronised, so it closes the connection.
func (c *Conn) write(ctx context.Context, payload []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		c.nc.SetWriteDeadline(time.Unix(1, 0))
		close(fired)
	})
	err := wire.WriteFrame(c.nc, payload)
	if !stop() {
		// The deadline was set (or is being set): wait for that, then clear
		// it so that the next writer is not failed by this call's ctx.
		<-fired
		c.nc.SetWriteDeadline(time.Time{})
	}
	if err != nil {
		c.fail(fmt.Errorf("write: %w", err))
		c.nc.Close()
		if ctxErr := ctx.Err(); ctxErr != nil {
			return ctxErr
		}
		return err
	}
	return nil
}

func (c *Conn) forget(id uint64) {
	c.mu.Lock()
	delete(c.pending, id)
	c.mu.Unlock()
}

// readLoop is the single reader: it hands each reply to the call waiting for
// it and stops at the first read or decode error.
func (c *Conn) readLoop() {
	defer close(c.done)
	for {
		payload, err := wire.ReadFrame(c.nc, wire.MaxFrame)
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = ErrClosed
			}
			c.fail(err)
			return
		}
		rep, err := decodeReply(payload)
		if err != nil {
			c.fail(err)
			c.nc.Close()
			return
		}
		c.mu.Lock()
		ch, ok := c.pending[rep.ID]
		delete(c.pending, rep.ID)
		c.mu.Unlock()
		if ok {
			ch <- rep // buffered: never blocks
		}
		// A reply nobody waits for answers a call whose ctx ended: drop it.
	}
}

// fail records why the connection ended, keeping the first reason.
func (c *Conn) fail(err error) {
	c.mu.Lock()
	if c.err == nil {
		c.err = err
	}
	c.mu.Unlock()
}

func (c *Conn) closeErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		return ErrClosed
	}
	return c.err
}

// Close closes the connection, stops the reader and fails pending calls with
// ErrClosed. It is safe to call more than once.
func (c *Conn) Close() error {
	c.fail(ErrClosed)
	err := c.nc.Close()
	<-c.done
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}
