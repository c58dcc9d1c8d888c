package wire

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"time"
)

// ErrNoListener is wrapped when a listener reply arrives without the file
// descriptor it promised, or with more than one.
var ErrNoListener = errors.New("wire: listener reply carries no socket")

// WriteMessageFile writes v as one frame, like WriteMessage, with f's file
// descriptor attached to the frame's first byte (SCM_RIGHTS). The receiver
// must read that frame with ReadFrameFile or the descriptor is lost.
func WriteMessageFile(conn *net.UnixConn, v any, f *os.File) error {
	var buf bytesWriter
	if err := WriteMessage(&buf, v); err != nil {
		return err
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return fmt.Errorf("wire: send socket: %w", err)
	}
	var oob []byte
	if err := rc.Control(func(fd uintptr) { oob = syscall.UnixRights(int(fd)) }); err != nil {
		return fmt.Errorf("wire: send socket: %w", err)
	}
	// The descriptor rides on the first write; a short write leaves the rest
	// of the frame to plain writes.
	n, _, err := conn.WriteMsgUnix(buf, oob, nil)
	if err != nil {
		return fmt.Errorf("wire: send socket: %w", err)
	}
	if n < len(buf) {
		if _, err := conn.Write(buf[n:]); err != nil {
			return fmt.Errorf("wire: write frame: %w", err)
		}
	}
	return nil
}

type bytesWriter []byte

func (b *bytesWriter) Write(p []byte) (int, error) { *b = append(*b, p...); return len(p), nil }

// ReadFrameFile reads one frame of at most max bytes, like ReadFrame, and
// the file descriptors sent with it (SCM_RIGHTS), which the caller owns.
// Descriptors are received close-on-exec.
func ReadFrameFile(conn *net.UnixConn, max int) ([]byte, []*os.File, error) {
	var hdr [headerLen]byte
	oob := make([]byte, syscall.CmsgSpace(4*4)) // room for a few fds; more are truncated and refused
	var files []*os.File
	fail := func(err error) ([]byte, []*os.File, error) {
		for _, f := range files {
			f.Close()
		}
		return nil, nil, err
	}
	got := 0
	for got < headerLen {
		n, oobn, flags, _, err := conn.ReadMsgUnix(hdr[got:], oob)
		if oobn > 0 {
			fs, perr := parseRights(oob[:oobn])
			files = append(files, fs...)
			if perr != nil {
				return fail(perr)
			}
		}
		if flags&syscall.MSG_CTRUNC != 0 {
			return fail(fmt.Errorf("%w: too many descriptors", ErrMalformed))
		}
		got += n
		if err != nil {
			if errors.Is(err, io.EOF) && got > 0 {
				err = ErrTruncated
			}
			return fail(err)
		}
		if n == 0 {
			return fail(io.EOF)
		}
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if uint64(n) > uint64(max) {
		return fail(&OversizeError{Length: n, Max: max})
	}
	payload := make([]byte, n)
	if _, err := io.ReadFull(conn, payload); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			err = ErrTruncated
		}
		return fail(err)
	}
	return payload, files, nil
}

func parseRights(oob []byte) ([]*os.File, error) {
	msgs, err := syscall.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, fmt.Errorf("%w: control message: %v", ErrMalformed, err)
	}
	var files []*os.File
	for _, m := range msgs {
		fds, err := syscall.ParseUnixRights(&m)
		if err != nil {
			continue // not SCM_RIGHTS (credentials, ...): nothing to own
		}
		for _, fd := range fds {
			files = append(files, os.NewFile(uintptr(fd), "cell-listener"))
		}
	}
	return files, nil
}

// Listener asks the root for this cell's listening socket (OpListener) and
// returns it. It must be called on a connection that said hello as a cell.
// An error reply is a *Error: CodeNotFound when the root holds no listener
// for this caller, CodeUnknownOp from a root older than the op.
func (c *Client) Listener(ctx context.Context) (*net.UnixListener, error) {
	uc, ok := c.conn.(*net.UnixConn)
	if !ok {
		return nil, fmt.Errorf("umbilical %s: not a Unix connection", OpListener)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	req := Request{ID: c.nextID, Op: OpListener}
	c.nextID++
	stop := context.AfterFunc(ctx, func() { c.conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	rep, files, err := c.roundTripFile(uc, req)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			c.conn.Close()
			err = ctxErr
		}
		return nil, fmt.Errorf("umbilical %s: %w", req.Op, err)
	}
	closeAll := func() {
		for _, f := range files {
			f.Close()
		}
	}
	if !rep.OK {
		closeAll()
		if rep.Error == nil {
			return nil, fmt.Errorf("umbilical %s: %w: error reply without an error", req.Op, ErrMalformed)
		}
		return nil, rep.Error
	}
	if len(files) != 1 {
		closeAll()
		return nil, fmt.Errorf("umbilical %s: %w (%d descriptors)", req.Op, ErrNoListener, len(files))
	}
	defer files[0].Close()
	ln, err := net.FileListener(files[0])
	if err != nil {
		return nil, fmt.Errorf("umbilical %s: %w: %v", req.Op, ErrNoListener, err)
	}
	ul, ok := ln.(*net.UnixListener)
	if !ok {
		ln.Close()
		return nil, fmt.Errorf("umbilical %s: %w: not a Unix listener", req.Op, ErrNoListener)
	}
	// The socket's file belongs to the root, which removes it.
	ul.SetUnlinkOnClose(false)
	return ul, nil
}

func (c *Client) roundTripFile(uc *net.UnixConn, req Request) (Reply, []*os.File, error) {
	if err := WriteMessage(uc, req); err != nil {
		return Reply{}, nil, err
	}
	payload, files, err := ReadFrameFile(uc, MaxFrame)
	if err != nil {
		return Reply{}, nil, err
	}
	rep, err := DecodeReply(payload)
	if err == nil && rep.ID != req.ID {
		err = fmt.Errorf("%w: reply %d to request %d", ErrMalformed, rep.ID, req.ID)
	}
	if err != nil {
		for _, f := range files {
			f.Close()
		}
		return Reply{}, nil, err
	}
	return rep, files, nil
}

// Upgrade asks the root to replace the running cell key with a new instance
// on the same listener (OpUpgrade); only the owner may. It returns once the
// new instance has taken the listener and the old one has been told to drain.
func (c *Client) Upgrade(ctx context.Context, key string) (Reply, error) {
	return c.Call(ctx, Request{Op: OpUpgrade, Name: key})
}
