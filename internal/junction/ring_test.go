package junction

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"
)

// chanEvent is an in-process event for testing the ring logic.
type chanEvent chan struct{}

func (e chanEvent) wait() error { <-e; return nil }
func (e chanEvent) signal() {
	select {
	case e <- struct{}{}:
	default:
	}
}
func (e chanEvent) interrupt(on bool) {
	if on {
		e.signal()
	}
}

// pair lays a junction's two sides over one plain byte slice.
func pair(t testing.TB, ringSize int) (dialer, acceptor *Junction, mem []byte) {
	t.Helper()
	var evs [4]event
	for i := range evs {
		evs[i] = make(chanEvent, 1)
	}
	return pairWith(t, ringSize, evs)
}

// pairWith is pair with the given events: ring 0's data and space, then
// ring 1's.
func pairWith(t testing.TB, ringSize int, evs [4]event) (dialer, acceptor *Junction, mem []byte) {
	t.Helper()
	mem = make([]byte, Size(ringSize))
	mk := func(d bool) *Junction {
		j, err := newJunction(mem, ringSize, d, evs, func() error { return nil }, func() {
			for _, e := range evs {
				e.signal()
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		return j
	}
	return mk(true), mk(false), mem
}

func TestRingRoundTripWraps(t *testing.T) {
	d, a, _ := pair(t, MinRing)
	msg := bytes.Repeat([]byte("0123456789abcdef"), 1000) // 16000 bytes: wraps the 4 KiB ring
	done := make(chan error, 1)
	go func() { done <- d.WriteBuffers([][]byte{msg[:7], msg[7:]}) }()
	got := make([]byte, 0, len(msg))
	buf := make([]byte, 999)
	for len(got) < len(msg) {
		n, err := a.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, buf[:n]...)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatal("bytes differ after the round trip")
	}
}

func TestRingCloseWakesSleepers(t *testing.T) {
	d, a, _ := pair(t, MinRing)
	res := make(chan error, 2)
	go func() { _, err := a.Read(make([]byte, 8)); res <- err }()            // sleeps: empty ring
	go func() { res <- d.WriteBuffers([][]byte{make([]byte, 3*MinRing)}) }() // sleeps: full ring
	for range 2 {
		select {
		case err := <-res:
			t.Fatalf("returned early: %v", err)
		default:
		}
	}
	a.Close()
	d.Close()
	for range 2 {
		if err := <-res; !errors.Is(err, ErrClosed) {
			t.Fatalf("after Close: %v, want ErrClosed", err)
		}
	}
}

func TestRingScribbledIndices(t *testing.T) {
	_, a, mem := pair(t, MinRing)
	// The peer claims more bytes than the ring holds.
	binary.LittleEndian.PutUint64(mem[offTail:], MinRing+1)
	if _, err := a.Read(make([]byte, 8)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("tail past the ring: %v, want ErrCorrupt", err)
	}
	d, _, mem := pair(t, MinRing)
	// The peer claims to have read bytes never written (head past tail);
	// the producer looks at head once it needs the space.
	binary.LittleEndian.PutUint64(mem[offHead:], 1<<40)
	if err := d.WriteBuffers([][]byte{make([]byte, MinRing+1)}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("head past tail: %v, want ErrCorrupt", err)
	}
}

// TestTryWrite: a frame goes in whole when it fits and not at all when it
// does not; a scribbled head and a closed junction are errors.
func TestTryWrite(t *testing.T) {
	d, a, mem := pair(t, MinRing)
	big := bytes.Repeat([]byte{7}, MinRing-10)
	if ok, err := d.TryWrite([][]byte{big}); !ok || err != nil {
		t.Fatalf("TryWrite into an empty ring = %v, %v", ok, err)
	}
	if ok, err := d.TryWrite([][]byte{make([]byte, 11)}); ok || err != nil {
		t.Fatalf("TryWrite past the free space = %v, %v; want false, nil", ok, err)
	}
	got := make([]byte, len(big))
	if _, err := io.ReadFull(a, got); err != nil || !bytes.Equal(got, big) {
		t.Fatalf("read back: %v", err)
	}
	if ok, err := d.TryWrite([][]byte{[]byte("af"), nil, []byte("ter")}); !ok || err != nil {
		t.Fatalf("TryWrite once the ring drained = %v, %v", ok, err)
	}
	got = make([]byte, 5)
	if _, err := io.ReadFull(a, got); err != nil || string(got) != "after" {
		t.Fatalf("read back %q, %v; want the buffers in order", got, err)
	}
	// A full ring that drains a little takes nothing until a refill's
	// worth is free, then takes it at once.
	if ok, err := d.TryWrite([][]byte{make([]byte, MinRing-5)}); !ok || err != nil {
		t.Fatalf("TryWrite filling the ring = %v, %v", ok, err)
	}
	if _, err := io.ReadFull(a, make([]byte, 20)); err != nil {
		t.Fatal(err)
	}
	if ok, err := d.TryWrite([][]byte{make([]byte, 10)}); ok || err != nil {
		t.Fatalf("TryWrite with %d bytes free = %v, %v; want false until %d are", 20, ok, err, MinRing/refill)
	}
	if _, err := io.ReadFull(a, make([]byte, MinRing/refill)); err != nil {
		t.Fatal(err)
	}
	if ok, err := d.TryWrite([][]byte{make([]byte, 10)}); !ok || err != nil {
		t.Fatalf("TryWrite once a refill's worth is free = %v, %v", ok, err)
	}
	binary.LittleEndian.PutUint64(mem[offHead:], 1<<40)
	if _, err := d.TryWrite([][]byte{big}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("TryWrite with head past tail: %v, want ErrCorrupt", err)
	}
	d.Close()
	if _, err := d.TryWrite([][]byte{[]byte("x")}); !errors.Is(err, ErrClosed) {
		t.Fatalf("TryWrite after Close: %v, want ErrClosed", err)
	}
}

// TestTryWriteBesideWrite: a TryWrite while a Write waits for space gives
// way at once; it neither waits for that Write nor slips its bytes into
// the middle of the Write's.
func TestTryWriteBesideWrite(t *testing.T) {
	d, a, mem := pair(t, MinRing)
	long := bytes.Repeat([]byte{7}, 2*MinRing)
	wrote := make(chan error, 1)
	go func() { wrote <- d.WriteBuffers([][]byte{long}) }()
	// The Write has filled the ring and waits for space, holding it.
	for atomic.LoadUint64((*uint64)(unsafe.Pointer(&mem[offTail]))) != MinRing {
		runtime.Gosched()
	}
	tried := make(chan error, 1)
	go func() {
		ok, err := d.TryWrite([][]byte{[]byte("x")})
		if ok {
			err = errors.New("TryWrite wrote into a ring another Write holds")
		}
		tried <- err
	}()
	select {
	case err := <-tried:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("TryWrite waited for the Write in progress")
	}
	got := make([]byte, len(long))
	if _, err := io.ReadFull(a, got); err != nil || !bytes.Equal(got, long) {
		t.Fatalf("the Write's bytes came back changed: %v", err)
	}
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
}

// FuzzRingRead: whatever the peer leaves in the shared memory, reading
// either fails with ErrCorrupt or yields bytes from inside the mapping; an
// interrupted read fails with ErrInterrupted and consumes nothing.
func FuzzRingRead(f *testing.F) {
	f.Add(uint64(10), uint64(0), []byte("hello"), false)
	f.Add(uint64(MinRing+1), uint64(0), []byte{}, false)
	f.Add(^uint64(0), uint64(5), []byte{1}, false)
	f.Add(uint64(5), uint64(3), []byte{1, 2}, false)
	f.Add(uint64(10), uint64(0), []byte("hello"), true)
	f.Fuzz(func(t *testing.T, tail, ourPos uint64, data []byte, interrupted bool) {
		mem := make([]byte, Size(MinRing))
		copy(mem[ctlPage:], data)
		var closed atomic.Bool
		ev := make(chanEvent, 1)
		r, err := newRing(mem[:ctlLen], mem[ctlPage:ctlPage+MinRing], ev, ev, &closed)
		if err != nil {
			t.Fatal(err)
		}
		r.pos, r.peer = ourPos, ourPos
		binary.LittleEndian.PutUint64(mem[offTail:], tail)
		if interrupted {
			r.interrupt.Store(true)
			if _, err := r.read(make([]byte, 64), false); !errors.Is(err, ErrInterrupted) || r.pos != ourPos || binary.LittleEndian.Uint64(mem[offHead:]) != 0 {
				t.Fatalf("interrupted read: %v, position %d from %d", err, r.pos, ourPos)
			}
			return
		}
		if tail == ourPos {
			return // empty: a read would sleep, as it must
		}
		buf := make([]byte, 64)
		n, err := r.read(buf, false)
		switch {
		case err != nil:
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("err = %v", err)
			}
			if tail-ourPos <= MinRing {
				t.Fatalf("an honest index %d..%d called corrupt", ourPos, tail)
			}
		case n == 0 || n > len(buf) || uint64(n) > tail-ourPos:
			t.Fatalf("read %d bytes of %d available", n, tail-ourPos)
		}
	})
}

// FuzzRingWrite: whatever head the peer leaves, writing either fails with
// ErrCorrupt or fits the bytes in the space an honest head would leave,
// inside the mapping.
func FuzzRingWrite(f *testing.F) {
	f.Add(uint64(0), uint64(MinRing), uint16(10))
	f.Add(uint64(1<<40), uint64(0), uint16(1))
	f.Add(uint64(5), uint64(3), uint16(2))
	f.Add(^uint64(0), uint64(MinRing-1), uint16(MinRing))
	f.Fuzz(func(t *testing.T, head, ourPos uint64, n uint16) {
		mem := make([]byte, Size(MinRing))
		var closed atomic.Bool
		ev := make(chanEvent, 1)
		r, err := newRing(mem[:ctlLen], mem[ctlPage:ctlPage+MinRing], ev, ev, &closed)
		if err != nil {
			t.Fatal(err)
		}
		// The head we saw last left no space: the write must look at the
		// peer's word.
		r.pos, r.peer = ourPos, ourPos-MinRing
		binary.LittleEndian.PutUint64(mem[offHead:], head)
		used := ourPos - head
		if used <= MinRing && MinRing-used < uint64(n) {
			return // too little space: a write would sleep, as it must
		}
		err = r.write([][]byte{bytes.Repeat([]byte{7}, int(n))})
		switch {
		case err != nil:
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("err = %v", err)
			}
			if used <= MinRing {
				t.Fatalf("an honest head %d (tail %d) called corrupt", head, ourPos)
			}
		case used > MinRing && n > 0:
			t.Fatalf("wrote past a head %d claiming %d bytes in use", head, used)
		case r.pos != ourPos+uint64(n) || binary.LittleEndian.Uint64(mem[offTail:]) != r.pos && n > 0:
			t.Fatalf("tail %d after writing %d from %d", r.pos, n, ourPos)
		}
	})
}
