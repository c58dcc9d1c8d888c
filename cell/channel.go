package cell

import (
	"context"
	"io"
	"net"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cellproject/cell/internal/junction"
)

// copyLimit is the largest body send copies into its frame buffer; larger
// bodies are written from the caller's slice, and send waits for that write.
const copyLimit = 32 << 10

// maxDirect is the largest frame a sender on an idle junction writes into
// the ring itself (see channel.junc).
const maxDirect = 512

// maxSpareEnc bounds the encode buffer a channel keeps between writes, so
// that one burst of queued frames does not pin its memory for good.
const maxSpareEnc = 256 << 10

// channel is one connection's framing, shared by the client and the server
// side: the frame reader with its buffer and bound, and a writer that
// combines every frame pending on the connection into one write.
//
// Writes: the first sender to find no write in progress becomes the flusher
// and writes the queue with one writev (net.Buffers), again and again until
// it is empty; senders that arrive meanwhile only queue. Nobody hands
// frames to a writer goroutine. A large body (over copyLimit) is written
// from its sender's slice, and its sender waits for that write; so that a
// flusher is not held up writing the large bodies of others, which would
// keep it from reading its own reply while they crawl out, it stops before
// another sender's large frame once its own is written, and that sender
// takes over. A reader with more frames buffered may hold its small frames
// back (holdBack) and write them all at once (flush) before it reads again.
type channel struct {
	nc     net.Conn
	r      io.Reader    // nc, or a junction's inbound ring
	rd     *frameReader // whoever reads owns it; one at a time
	maxIn  int          // bodies we accept
	maxOut int          // bodies the peer accepts, from its preface
	// out writes the buffers, consuming them. They are passed as
	// channel.outBufs: a net.Buffers of the flusher's own would escape to
	// the heap through WriteTo, an allocation per write.
	out func(*net.Buffers) error
	// junc is the gap junction the channel runs over, or nil. A sender
	// on a junction that finds the channel idle writes a frame of at most
	// maxDirect bytes into the ring itself, without wmu, when the ring has
	// room and no other write holds it: no queue, no flusher, no lock of
	// ours.
	junc *junction.Junction
	// idle is set while nothing is queued or being written and no write
	// has failed (kept under wmu, read without it; junctions only): every
	// frame queued so far is written, so a frame written straight into the
	// ring overtakes none that its sender sent before.
	idle  atomic.Bool
	abort func() // makes a stuck write fail (the connection is lost then)
	// interrupt with on set makes the read in progress, and later ones,
	// fail with os.ErrDeadlineExceeded (keeping what arrived) until it is
	// called with on cleared: how a link takes the read role back.
	interrupt func(on bool)
	closeFn   func() error

	wmu   sync.Mutex // guards the fields below
	wcond sync.Cond  // signalled when written advances or werr is set
	queue net.Buffers
	spare net.Buffers // the previous queue's backing array, reused
	// enc holds the queued frames' headers, names and small bodies; the
	// queue's entries are slices of it, and run is where the last entry
	// starts in it (-1: the last entry is a large body, or none). A
	// flusher takes enc with the queue and hands it back as spareEnc once
	// written, so that encoding costs no allocation once warm.
	enc      []byte
	spareEnc []byte
	run      int
	// large marks the queued frames with large bodies, in queue order:
	// where each one's entries start in the queue, and its number.
	large    []largeFrame
	queued   uint64 // frames queued so far
	written  uint64 // frames whose write has finished
	flushing bool
	werr     error
	outBufs  net.Buffers // the flusher's, while it writes (see out)
}

// largeFrame is a queued frame with a large body: its header is the queue
// entry at, its body the entry after.
type largeFrame struct {
	at  int
	seq uint64
}

// sendBuffer is the send buffer asked of a connection's socket (the kernel
// caps it at net.core.wmem_max): a Unix stream socket holds only what its
// sender's buffer allows in flight, about 200 KiB by default, so that a
// 1 MiB body would cross it in several turns of both sides.
const sendBuffer = 1 << 20

func newChannel(nc net.Conn, maxIn, maxOut int) *channel {
	if uc, ok := nc.(*net.UnixConn); ok {
		uc.SetWriteBuffer(sendBuffer) // a smaller buffer only costs turns
	}
	ch := &channel{nc: nc, r: nc, rd: newFrameReader(maxIn), maxIn: maxIn, maxOut: maxOut, closeFn: nc.Close, run: -1}
	ch.wcond.L = &ch.wmu
	ch.out = func(b *net.Buffers) error {
		_, err := b.WriteTo(nc)
		return err
	}
	ch.abort = func() { nc.SetWriteDeadline(time.Unix(1, 0)) }
	ch.interrupt = func(on bool) {
		if on {
			nc.SetReadDeadline(time.Unix(1, 0))
		} else {
			nc.SetReadDeadline(time.Time{})
		}
	}
	return ch
}

// recv reads the next frame; only one goroutine at a time may call it. A
// read that ends in a deadline may be retried, by any goroutine: it resumes
// the frame.
func (ch *channel) recv() (frame, error) { return ch.rd.next(ch.r) }

// buffered reports whether the next recv needs no read.
func (ch *channel) buffered() bool { return ch.rd.complete() }

// send queues one frame and returns once it is written, or (for a body of at
// most copyLimit, which it copies) once it is queued behind a write in
// progress. A failed write is returned to the sender that wrote, and fails
// every later send; the caller closes the connection then. ctx ending while
// this sender waits on a stuck write aborts the write.
func (ch *channel) send(ctx context.Context, h header, name string, body []byte) error {
	return ch.put(ctx, h, name, body, writeNow)
}

// How put writes a frame: the modes are send's, with a choice of when.
type putMode uint8

const (
	// writeNow: write it, or queue it behind the write in progress.
	writeNow putMode = iota
	// holdBack: queue a frame with a body of at most copyLimit (a larger
	// one goes as writeNow) and return without writing it when no write
	// is in progress; the next send or flush writes it.
	holdBack
	// gatherFirst is writeNow for a sender that expects others right
	// behind it (calls from many goroutines): one that would write a small
	// frame to a socket first lets the goroutines ready to run queue
	// theirs, so that one write takes them all. Goroutines woken together
	// by their replies run one after another on a processor, and each
	// would otherwise find no write in progress and make its own.
	gatherFirst
)

// sendMode is the mode put applies to a body: one over copyLimit is
// written now even when asked to wait, as it is written from its sender's
// slice, which the sender may not reuse before.
func sendMode(mode putMode, body []byte) putMode {
	if mode == holdBack && len(body) > copyLimit {
		return writeNow
	}
	return mode
}

// backlog is the count of frames queued and not yet written: on a server,
// replies its client has not taken yet.
func (ch *channel) backlog() uint64 {
	ch.wmu.Lock()
	defer ch.wmu.Unlock()
	return ch.queued - ch.written
}

// flush writes what holdBack left queued.
func (ch *channel) flush(ctx context.Context) error {
	ch.wmu.Lock()
	if ch.flushing || len(ch.queue) == 0 {
		err := ch.werr
		ch.wmu.Unlock()
		return err
	}
	return ch.flushLocked(ctx, ch.queued)
}

func (ch *channel) put(ctx context.Context, h header, name string, body []byte, mode putMode) error {
	h.nameLen = uint16(len(name))
	h.size = uint32(len(name) + len(body))
	small := len(body) <= copyLimit
	mode = sendMode(mode, body)
	if n := headerLen + len(name) + len(body); n <= maxDirect && mode != holdBack && ch.junc != nil && ch.idle.Load() {
		// Encoded whole on the stack: the ring takes one copy of it,
		// which costs less than a copy of each part.
		var enc [maxDirect]byte
		h.put(enc[:])
		copy(enc[headerLen+copy(enc[headerLen:], name):], body)
		bufs := [1][]byte{enc[:n]}
		wrote, err := ch.junc.TryWrite(bufs[:])
		if err != nil {
			ch.wmu.Lock()
			ch.failLocked(err)
			ch.wmu.Unlock()
			return err
		}
		if wrote {
			return nil
		}
	}
	n := headerLen + len(name)
	if small {
		n += len(body)
	}

	ch.wmu.Lock()
	if ch.werr != nil {
		err := ch.werr
		ch.wmu.Unlock()
		return err
	}
	// Entries before the run may point into an older array that enc grew
	// out of: it still holds their bytes, and nothing writes to it again.
	at := len(ch.enc)
	ch.enc = slices.Grow(ch.enc, n)[:at+n]
	h.put(ch.enc[at:])
	copy(ch.enc[at+headerLen:], name)
	if small {
		copy(ch.enc[at+headerLen+len(name):], body)
	}
	ch.idle.Store(false)
	if ch.run < 0 || !small {
		// A large frame's header opens an entry of its own, so that a
		// flusher can stop just before it.
		ch.run = at
		ch.queue = append(ch.queue, nil)
	}
	ch.queue[len(ch.queue)-1] = ch.enc[ch.run:]
	ch.queued++
	mine := ch.queued
	if !small {
		ch.large = append(ch.large, largeFrame{at: len(ch.queue) - 1, seq: mine})
		ch.queue = append(ch.queue, body)
		ch.run = -1
	}
	if !ch.flushing && mode != holdBack {
		if mode == gatherFirst && small {
			// The writer's role is taken: senders meanwhile only queue.
			ch.flushing = true
			ch.wmu.Unlock()
			runtime.Gosched()
			ch.wmu.Lock()
		}
		return ch.flushLocked(ctx, mine)
	}
	if small {
		ch.wmu.Unlock()
		return nil
	}
	// The body is the caller's: it may not return before it is written.
	stop := afterFunc(ctx, ch.abort)
	for ch.written < mine && ch.werr == nil {
		if !ch.flushing && len(ch.queue) > 0 {
			// The flusher stopped before this frame, or one ahead of it.
			stop()
			return ch.flushLocked(ctx, mine)
		}
		ch.wcond.Wait()
	}
	err := ch.werr
	ch.wmu.Unlock()
	stop()
	return err
}

// flushLocked makes the caller the flusher until the queue is empty, or
// until only frames after frame mine are left and the next is another
// sender's large one; it unlocks wmu.
func (ch *channel) flushLocked(ctx context.Context, mine uint64) error {
	ch.flushing = true
	stop := afterFunc(ctx, ch.abort)
	for len(ch.queue) > 0 && ch.werr == nil {
		n, upto := len(ch.queue), ch.queued
		for _, lf := range ch.large {
			if lf.seq > mine {
				n, upto = lf.at, lf.seq-1
				break
			}
		}
		if n == 0 {
			break // that frame's sender writes it
		}
		bufs, enc, whole := ch.queue[:n], ch.enc, n == len(ch.queue)
		used := len(ch.queue) // the entries of the array to clear after
		if whole {
			ch.queue, ch.enc, ch.run = ch.spare[:0], ch.spareEnc[:0], -1
			ch.large = ch.large[:0]
		} else {
			// The rest stays queued, and may still point into enc.
			ch.queue = append(ch.spare[:0], ch.queue[n:]...)
			k := 0
			for _, lf := range ch.large {
				if lf.at >= n {
					ch.large[k] = largeFrame{at: lf.at - n, seq: lf.seq}
					k++
				}
			}
			ch.large = ch.large[:k]
		}
		ch.spare = nil
		ch.wmu.Unlock()
		ch.outBufs = bufs
		err := ch.out(&ch.outBufs)
		ch.outBufs = nil
		ch.wmu.Lock()
		clear(bufs[:used])
		ch.spare = bufs[:0]
		if whole {
			ch.spareEnc = nil
			if cap(enc) <= maxSpareEnc {
				ch.spareEnc = enc[:0]
			}
		}
		ch.written = upto
		if err != nil {
			ch.werr = err
		}
	}
	ch.flushing = false
	if ch.junc != nil {
		ch.idle.Store(len(ch.queue) == 0 && ch.werr == nil)
	}
	err := ch.werr
	ch.wcond.Broadcast()
	ch.wmu.Unlock()
	stop()
	return err
}

// failLocked records a failed write (keeping the first): it fails every
// later send.
func (ch *channel) failLocked(err error) {
	if ch.werr == nil {
		ch.werr = err
	}
	ch.idle.Store(false)
	ch.wcond.Broadcast()
}

// afterFunc is context.AfterFunc that costs nothing for a ctx that never ends.
func afterFunc(ctx context.Context, f func()) (stop func() bool) {
	if ctx.Done() == nil {
		return func() bool { return true }
	}
	return context.AfterFunc(ctx, f)
}

func (ch *channel) close() error { return ch.closeFn() }
