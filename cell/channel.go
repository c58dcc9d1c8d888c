package cell

import (
	"bufio"
	"context"
	"io"
	"net"
	"sync"
	"time"
)

// copyLimit is the largest body send copies into its frame buffer; larger
// bodies are written from the caller's slice, and send waits for that write.
const copyLimit = 32 << 10

// readBuffer is the socket read buffer: many small frames per read syscall.
const readBuffer = 64 << 10

// channel is one connection's framing, shared by the client and the server
// side: the buffered reader with its header buffer and bound, and a writer
// that combines every frame pending on the connection into one write.
//
// Writes: the first sender to find no write in progress becomes the flusher
// and writes the whole queue with one writev (net.Buffers), again and again
// until it is empty; senders that arrive meanwhile only queue. Nobody hands
// frames to a writer goroutine.
type channel struct {
	nc      net.Conn
	r       io.Reader // bufio over nc, or a junction's inbound ring
	hdr     [headerLen]byte
	maxIn   int // bodies we accept
	maxOut  int // bodies the peer accepts, from its preface
	out     func(net.Buffers) error
	abort   func() // makes a stuck write fail (the connection is lost then)
	closeFn func() error

	wmu      sync.Mutex // guards the fields below
	wcond    sync.Cond  // signalled when written advances or werr is set
	queue    net.Buffers
	spare    net.Buffers // the previous queue's backing array, reused
	queued   uint64      // frames queued so far
	written  uint64      // frames whose write has finished
	flushing bool
	werr     error
}

func newChannel(nc net.Conn, maxIn, maxOut int) *channel {
	ch := &channel{nc: nc, r: bufio.NewReaderSize(nc, readBuffer), maxIn: maxIn, maxOut: maxOut, closeFn: nc.Close}
	ch.wcond.L = &ch.wmu
	ch.out = func(b net.Buffers) error {
		_, err := b.WriteTo(nc)
		return err
	}
	ch.abort = func() { nc.SetWriteDeadline(time.Unix(1, 0)) }
	return ch
}

// recv reads the next frame; only one goroutine may call it.
func (ch *channel) recv() (frame, error) { return readFrame(ch.r, &ch.hdr, ch.maxIn) }

// send queues one frame and returns once it is written, or (for a body of at
// most copyLimit, which it copies) once it is queued behind a write in
// progress. A failed write is returned to the sender that wrote, and fails
// every later send; the caller closes the connection then. ctx ending while
// this sender waits on a stuck write aborts the write.
func (ch *channel) send(ctx context.Context, h header, name string, body []byte) error {
	h.nameLen = uint16(len(name))
	h.size = uint32(len(name) + len(body))
	small := len(body) <= copyLimit
	n := headerLen + len(name)
	if small {
		n += len(body)
	}
	buf := make([]byte, n)
	h.put(buf)
	copy(buf[headerLen:], name)
	if small {
		copy(buf[headerLen+len(name):], body)
	}

	ch.wmu.Lock()
	if ch.werr != nil {
		err := ch.werr
		ch.wmu.Unlock()
		return err
	}
	ch.queue = append(ch.queue, buf)
	if !small {
		ch.queue = append(ch.queue, body)
	}
	ch.queued++
	mine := ch.queued
	if ch.flushing {
		if small {
			ch.wmu.Unlock()
			return nil
		}
		// The body is the caller's: it may not return before it is written.
		stop := afterFunc(ctx, ch.abort)
		for ch.written < mine && ch.werr == nil {
			ch.wcond.Wait()
		}
		err := ch.werr
		ch.wmu.Unlock()
		stop()
		return err
	}
	ch.flushing = true
	stop := afterFunc(ctx, ch.abort)
	for len(ch.queue) > 0 && ch.werr == nil {
		bufs, upto := ch.queue, ch.queued
		ch.queue = ch.spare[:0]
		ch.wmu.Unlock()
		err := ch.out(bufs)
		ch.wmu.Lock()
		clear(bufs[:cap(bufs)])
		ch.spare = bufs[:0]
		ch.written = upto
		if err != nil {
			ch.werr = err
		}
	}
	ch.flushing = false
	err := ch.werr
	ch.wcond.Broadcast()
	ch.wmu.Unlock()
	stop()
	return err
}

// afterFunc is context.AfterFunc that costs nothing for a ctx that never ends.
func afterFunc(ctx context.Context, f func()) (stop func() bool) {
	if ctx.Done() == nil {
		return func() bool { return true }
	}
	return context.AfterFunc(ctx, f)
}

func (ch *channel) close() error { return ch.closeFn() }
