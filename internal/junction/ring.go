package junction

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// Errors; match them with errors.Is.
var (
	// ErrClosed means this side closed the junction (or the peer left).
	ErrClosed = errors.New("junction: closed")
	// ErrCorrupt means the peer wrote an index no honest peer could have.
	ErrCorrupt = errors.New("junction: ring corrupted by the peer")
	// ErrInterrupted means a Read gave way to [Junction.InterruptRead].
	ErrInterrupted = errors.New("junction: read interrupted")
)

// The control block of one ring: each word 128 bytes from the next, so that
// producer and consumer never share a cache line, nor the pair of lines a
// CPU's adjacent-line prefetcher fetches together.
const (
	offHead     = 0   // consumer's position (bytes read, ever)
	offTail     = 128 // producer's position (bytes written, ever)
	offSleeping = 256 // non-zero: the consumer sleeps on its data event
	offWaiting  = 384 // non-zero: the producer sleeps on its space event
	ctlLen      = 512
)

// spinFor is how long a side spins on an empty (or full) ring before it
// sleeps: long enough to catch a reply that is on its way, short enough that
// an idle junction costs no CPU.
const spinFor = 50 * time.Microsecond

// A consumer that has emptied the ring and has not written to the peer
// since its last read lets quiet rounds of local checks (about a
// nanosecond each) pass before it loads the producer's index again. Each
// load of tail takes its cache line from the producer, whose next fenced
// store of tail must then fetch it back and wait: a consumer looking at
// every publication of a stream of 64-byte messages held the producer to
// half its rate. quiet doubles while the first look after it finds data
// (a stream: each look then takes a batch) and halves while it finds none
// (sparse messages, each then late by at most quietMin rounds). A consumer
// that wrote since it last read may be awaiting the reply, which comes
// within a round trip: it looks at once, as a round trip would lengthen
// by any quiet longer than the peer's turn, and data found within it would
// make quiet grow.
const (
	quietMin = 32
	quietMax = 1024
)

// event is one direction of wake-ups: an eventfd on Linux, shared with
// the peer.
type event interface {
	wait() error       // block until signalled or interrupted; an error once closed
	signal()           // wake the waiter; never waits itself
	interrupt(on bool) // while on, wait returns at once; the peer cannot undo it
}

// ring is one direction of the junction as one side sees it: either its
// producer or its consumer, never both.
type ring struct {
	ctl  []byte // ctlLen bytes
	data []byte // power-of-two length
	mask uint64
	pos  uint64 // our own index: head for a consumer, tail for a producer
	// peer is the peer's index as we last loaded and checked it (tail for
	// a consumer, head for a producer). Loading the peer's word costs a
	// cache miss whenever the peer moved it, so we load it again only when
	// the stale value leaves us without data (or space): a stale tail
	// under-counts the data, a stale head the space, both safely.
	peer uint64
	// quiet, for a consumer: the rounds it lets pass before loading tail
	// again when it only reads, between quietMin and quietMax.
	quiet int

	dataEv  event // the consumer sleeps here
	spaceEv event // the producer sleeps here

	closed *atomic.Bool
	// interrupt, for a consumer, makes reads fail with ErrInterrupted.
	interrupt atomic.Bool
	// asleep, for a consumer, is set while it waits on dataEv: our own
	// record, which the peer cannot forge as it can the flag in the mapping.
	asleep atomic.Bool

	// Padding: the other direction's ring, written by another goroutine,
	// may be the next object on the heap.
	_ [64]byte
}

func newRing(ctl, data []byte, dataEv, spaceEv event, closed *atomic.Bool) (*ring, error) {
	n := uint64(len(data))
	if len(ctl) < ctlLen || n == 0 || n&(n-1) != 0 {
		return nil, fmt.Errorf("junction: bad ring layout: control %d, data %d", len(ctl), n)
	}
	return &ring{ctl: ctl, data: data, mask: n - 1, quiet: quietMin, dataEv: dataEv, spaceEv: spaceEv, closed: closed}, nil
}

func (r *ring) word(off int) *uint64 { return (*uint64)(unsafe.Pointer(&r.ctl[off])) }
func (r *ring) flag(off int) *uint32 { return (*uint32)(unsafe.Pointer(&r.ctl[off])) }

// read copies up to len(p) bytes out of the ring, waiting for at least one;
// wrote says whether this side wrote to the peer since its last read.
func (r *ring) read(p []byte, wrote bool) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	avail, err := r.waitData(wrote)
	if err != nil {
		return 0, err
	}
	n := int(min(avail, uint64(len(p))))
	r.copyOut(p[:n])
	r.pos += uint64(n)
	atomic.StoreUint64(r.word(offHead), r.pos)
	wake(r.flag(offWaiting), r.spaceEv)
	return n, nil
}

// waitData waits until the ring holds data and says how much; a consumer
// that has not written since it last read waits quietly first.
func (r *ring) waitData(wrote bool) (uint64, error) {
	if avail := r.peer - r.pos; avail > 0 {
		return avail, nil
	}
	first := !wrote
	if first {
		for range r.quiet {
			if r.closed.Load() || r.interrupt.Load() {
				break // the loop below says which
			}
		}
	}
	var deadline time.Time
	for spins := 0; ; spins++ {
		if r.closed.Load() {
			return 0, ErrClosed
		}
		if r.interrupt.Load() {
			return 0, ErrInterrupted
		}
		avail, err := r.available()
		if first {
			first = false
			if avail > 0 {
				r.quiet = min(2*r.quiet, quietMax)
			} else {
				r.quiet = max(r.quiet/2, quietMin)
			}
		}
		if err != nil || avail > 0 {
			return avail, err
		}
		if r.spin(spins, &deadline) {
			continue
		}
		// Announce the sleep, then look again: a producer that published
		// before seeing the flag is caught by the second look, and an
		// interrupt set before it by the look at interrupt (InterruptRead
		// signals the event after setting it, so one set later wakes us).
		atomic.StoreUint32(r.flag(offSleeping), 1)
		avail, err = r.available()
		if err == nil && avail == 0 && !r.interrupt.Load() {
			r.asleep.Store(true)
			if r.dataEv.wait() != nil {
				err = ErrClosed
			}
			r.asleep.Store(false)
		}
		atomic.StoreUint32(r.flag(offSleeping), 0)
		if err != nil || avail > 0 {
			return avail, err
		}
		spins, deadline = 0, time.Time{}
	}
}

// available is the count of bytes to read, loading the producer's tail
// only when the one seen last is used up.
func (r *ring) available() (uint64, error) {
	if avail := r.peer - r.pos; avail > 0 {
		return avail, nil
	}
	tail := atomic.LoadUint64(r.word(offTail))
	avail := tail - r.pos
	if avail > uint64(len(r.data)) {
		return 0, fmt.Errorf("%w: %d bytes available in a ring of %d", ErrCorrupt, avail, len(r.data))
	}
	r.peer = tail
	return avail, nil
}

// free is the space to write, at least want bytes if the ring has them,
// loading the consumer's head only when the one seen last leaves less. A
// look at head that finds under a refill's worth free reports none: a
// producer that writes again at the first free bytes then trails the
// consumer a frame at a time, and each of its looks takes head's cache
// line from the consumer, which stores it at every read (a stream into a
// full ring so ran at well under the rate the consumer could take). It
// waits instead until the consumer is a stretch ahead, and then writes
// that stretch with no look at all.
func (r *ring) free(want uint64) (uint64, error) {
	size := uint64(len(r.data))
	if free := size - (r.pos - r.peer); free >= want {
		return free, nil
	}
	head := atomic.LoadUint64(r.word(offHead))
	used := r.pos - head
	if used > size {
		return 0, fmt.Errorf("%w: %d bytes in use in a ring of %d", ErrCorrupt, used, size)
	}
	r.peer = head
	if free := size - used; free >= size/refill {
		return free, nil
	}
	return 0, nil
}

// refill is the share of the ring (1/refill) a producer that found it full
// waits to find free before it writes again (see free).
const refill = 16

// spin says whether to keep spinning: for spinFor after the first empty look.
// The clock is read every 256 looks and the processor yielded every 1024:
// a yield enters the scheduler, which may wake another thread to take this
// goroutine, and a reply that arrives meanwhile waits for all of that; a
// peer in this process that needs our processor waits a few microseconds.
func (r *ring) spin(spins int, deadline *time.Time) bool {
	if spins&255 != 255 {
		return true
	}
	now := time.Now()
	if deadline.IsZero() {
		*deadline = now.Add(spinFor)
	}
	if now.After(*deadline) {
		return false
	}
	if spins&1023 == 1023 {
		runtime.Gosched() // the goroutine we wait for may need this P
	}
	return true
}

func (r *ring) copyOut(p []byte) {
	at := r.pos & r.mask
	n := copy(p, r.data[at:])
	copy(p[n:], r.data)
}

// copyIn copies p into the ring at our position and advances past it; the
// caller publishes.
func (r *ring) copyIn(p []byte) {
	at := r.pos & r.mask
	n := copy(r.data[at:], p)
	copy(r.data, p[n:])
	r.pos += uint64(len(p))
}

// write copies all of bufs into the ring, publishing as it goes and waiting
// for space when the ring is full.
func (r *ring) write(bufs [][]byte) error {
	published := r.pos
	for _, b := range bufs {
		for len(b) > 0 {
			if r.closed.Load() {
				return ErrClosed
			}
			free, err := r.free(uint64(len(b)))
			if err != nil {
				return err
			}
			if free == 0 {
				if r.pos != published {
					r.publish()
					published = r.pos
				}
				if err := r.waitSpace(); err != nil {
					return err
				}
				continue
			}
			n := min(free, uint64(len(b)))
			r.copyIn(b[:n])
			b = b[n:]
		}
	}
	if r.pos != published {
		r.publish()
	}
	return nil
}

// tryWrite copies all of bufs into the ring and publishes them when there
// is room for all of them now; it never waits.
func (r *ring) tryWrite(bufs [][]byte) (bool, error) {
	if r.closed.Load() {
		return false, ErrClosed
	}
	n := 0
	for _, b := range bufs {
		n += len(b)
	}
	if free, err := r.free(uint64(n)); err != nil || free < uint64(n) {
		return false, err
	}
	for _, b := range bufs {
		r.copyIn(b)
	}
	r.publish()
	return true, nil
}

func (r *ring) publish() {
	atomic.StoreUint64(r.word(offTail), r.pos)
	wake(r.flag(offSleeping), r.dataEv)
}

// wake signals ev if the peer's flag says it sleeps there, clearing the
// flag first: a producer publishing many times before the consumer gets
// the CPU back then costs one signal (a system call), not one each. Only
// the one who clears it signals; a sleeper that set the flag again after
// that had looked at our index, stored before this load, and saw it.
func wake(flag *uint32, ev event) {
	if v := atomic.LoadUint32(flag); v != 0 && atomic.CompareAndSwapUint32(flag, v, 0) {
		ev.signal()
	}
}

func (r *ring) waitSpace() error {
	var deadline time.Time
	for spins := 0; ; spins++ {
		if r.closed.Load() {
			return ErrClosed
		}
		if free, err := r.free(1); err != nil || free > 0 {
			return err
		}
		if r.spin(spins, &deadline) {
			continue
		}
		atomic.StoreUint32(r.flag(offWaiting), 1)
		free, err := r.free(1)
		if err == nil && free == 0 && r.spaceEv.wait() != nil {
			err = ErrClosed
		}
		atomic.StoreUint32(r.flag(offWaiting), 0)
		if err != nil || free > 0 {
			return err
		}
		spins, deadline = 0, time.Time{}
	}
}

// Layout of the memfd: a page of two control blocks (ring 0 then ring 1),
// then ring 0's data, then ring 1's. Ring 0 carries the dialling side's
// bytes to the accepting side.
const ctlPage = 4096

// Size is the memfd size for rings of ringSize bytes each.
func Size(ringSize int) int { return ctlPage + 2*ringSize }

// Limits on the ring size a peer may offer.
const (
	MinRing     = 4096
	MaxRing     = 64 << 20
	DefaultRing = 1 << 20
)

// Junction is one side of a gap junction: Read takes the peer's bytes,
// Write sends ours. One goroutine may Read while another Writes; Writes
// must be serialised by the caller, as must Reads.
type Junction struct {
	in, out *ring
	closed  atomic.Bool

	// One guard per direction: a Read holds rd and a Write holds wr while
	// they use the mapping, and Close takes both before it unmaps. Apart,
	// and each on its own cache lines, so that the reading and the writing
	// goroutine of a process write no line in common: a single lock's
	// reader count bounced between their cores at every call.
	//
	// wrote is set by a Write and cleared by the next Read: whether we
	// wrote since our last read. A flag of our own on the heap, not our
	// tail read back from the mapping: the peer, spinning on that word,
	// takes its cache line away after each publication, and loading it
	// back cost a cross-core miss on every Read. Each side stores it only
	// to change it, so that a stream of writes, or of reads, costs a load
	// each; a Write that finds it set just as a Read clears it leaves it
	// clear, which only makes that Read's wait start quietly (waitData):
	// it is a hint.
	_     [128]byte
	rd    sync.Mutex
	_     [128]byte
	wr    sync.Mutex
	wrote atomic.Bool
	_     [128]byte

	release func() error // unmaps the memory
	wake    func()       // closes the events: our sleepers wake and see closed
	once    sync.Once
}

// newJunction lays the rings over mem; dialer says which side this is.
// evs are ring 0's data and space events, then ring 1's.
func newJunction(mem []byte, ringSize int, dialer bool, evs [4]event, release func() error, wake func()) (*Junction, error) {
	if ringSize < MinRing || ringSize > MaxRing || ringSize&(ringSize-1) != 0 || len(mem) != Size(ringSize) {
		return nil, fmt.Errorf("junction: bad layout: ring %d, memory %d", ringSize, len(mem))
	}
	j := &Junction{release: release, wake: wake}
	r0, err := newRing(mem[0:ctlLen], mem[ctlPage:ctlPage+ringSize], evs[0], evs[1], &j.closed)
	if err != nil {
		return nil, err
	}
	r1, err := newRing(mem[ctlLen:2*ctlLen], mem[ctlPage+ringSize:], evs[2], evs[3], &j.closed)
	if err != nil {
		return nil, err
	}
	if dialer {
		j.out, j.in = r0, r1
	} else {
		j.in, j.out = r0, r1
	}
	// Whatever the peer left in the indices, we start where it says the
	// stream starts: at zero, and both sides agree on that by protocol.
	return j, nil
}

// Read reads the peer's bytes, waiting for at least one.
func (j *Junction) Read(p []byte) (int, error) {
	j.rd.Lock()
	defer j.rd.Unlock()
	if j.closed.Load() {
		return 0, ErrClosed
	}
	wrote := j.wrote.Load()
	if wrote {
		j.wrote.Store(false)
	}
	return j.in.read(p, wrote)
}

// InterruptRead with on set makes a Read in progress, and every later one,
// fail with ErrInterrupted without consuming anything, until it is called
// with on cleared: what a read deadline in the past is to a socket. Calls
// must be serialised.
func (j *Junction) InterruptRead(on bool) {
	j.in.interrupt.Store(on)
	// Whether the reader sleeps is the flag in shared memory, which the
	// peer may clear; and a signal on the eventfd the peer may take. So
	// the event is interrupted regardless, locally. No guard: this touches
	// the event, not the mapping, and one closed meanwhile ignores it.
	j.in.dataEv.interrupt(on)
}

// ReadAsleep reports whether a Read sleeps on its eventfd: how a test sees
// that an idle reader costs no CPU.
func (j *Junction) ReadAsleep() bool {
	return !j.closed.Load() && j.in.asleep.Load()
}

// WriteBuffers writes all of bufs, in order.
func (j *Junction) WriteBuffers(bufs [][]byte) error {
	j.wr.Lock()
	defer j.wr.Unlock()
	if j.closed.Load() {
		return ErrClosed
	}
	err := j.out.write(bufs)
	j.noteWrite()
	return err
}

func (j *Junction) noteWrite() {
	if !j.wrote.Load() {
		j.wrote.Store(true)
	}
}

// TryWrite writes all of bufs if the ring has room for them now and no
// other Write holds it, and reports whether it did; it never waits, for
// space or for that Write. It is a Write as far as serialising goes.
func (j *Junction) TryWrite(bufs [][]byte) (bool, error) {
	if !j.wr.TryLock() {
		return false, nil
	}
	wrote, err := j.out.tryWrite(bufs)
	if wrote {
		j.noteWrite()
	}
	j.wr.Unlock()
	return wrote, err
}

// Close wakes any Read or Write (they fail with ErrClosed), then unmaps the
// memory. It is safe to call more than once and from any goroutine.
func (j *Junction) Close() error {
	var err error
	j.once.Do(func() {
		j.closed.Store(true)
		j.wake()
		j.rd.Lock()
		j.wr.Lock()
		err = j.release()
		j.wr.Unlock()
		j.rd.Unlock()
	})
	return err
}
