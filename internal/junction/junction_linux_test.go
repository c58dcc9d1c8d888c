package junction

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

func socketpair(t testing.TB) (*net.UnixConn, *net.UnixConn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int) *net.UnixConn {
		f := os.NewFile(uintptr(fd), "sock")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c.(*net.UnixConn)
	}
	return conn(fds[0]), conn(fds[1])
}

// junctionPair sets up a junction of rings of size over a socketpair, the
// way two cells do: one side offers, the other accepts. Both close at the
// test's end.
func junctionPair(t testing.TB, size int) (srv, cli *Junction) {
	t.Helper()
	a, b := socketpair(t)
	o, err := NewOffer(size)
	if err != nil {
		t.Fatalf("memfd junction refused on this host: %v", err)
	}
	if err := o.Send(a); err != nil {
		t.Fatal(err)
	}
	if srv, err = Accept(b); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	if cli, err = o.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return srv, cli
}

func TestOfferAccept(t *testing.T) {
	srv, cli := junctionPair(t, DefaultRing)
	msg := bytes.Repeat([]byte("ping"), 1<<19) // 2 MiB: more than a ring
	go cli.WriteBuffers([][]byte{msg})
	got := make([]byte, 0, len(msg))
	buf := make([]byte, 1<<16)
	for len(got) < len(msg) {
		n, err := srv.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, buf[:n]...)
	}
	if !bytes.Equal(got, msg) {
		t.Fatal("bytes differ")
	}
}

// Accept refuses memory a peer could shrink under it (SIGBUS), memory of
// the wrong size, and offers with the wrong fds.
func TestAcceptRefusesBadOffers(t *testing.T) {
	send := func(t *testing.T, c *net.UnixConn, ringSize uint32, fds ...int) {
		var b [offerLen]byte
		copy(b[:4], offerMagic[:])
		b[4], b[5], b[6], b[7] = byte(ringSize), byte(ringSize>>8), byte(ringSize>>16), byte(ringSize>>24)
		b[8] = offerVersion
		var oob []byte
		if len(fds) > 0 {
			oob = unix.UnixRights(fds...)
		}
		if _, _, err := c.WriteMsgUnix(b[:], oob, nil); err != nil {
			t.Fatal(err)
		}
	}
	memfd := func(t *testing.T, size int, seal bool) int {
		fd, err := unix.MemfdCreate("t", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unix.Close(fd) })
		unix.Ftruncate(fd, int64(size))
		if seal {
			unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, seals)
		}
		return fd
	}
	evs := func(t *testing.T) []int {
		var fds []int
		for range 4 {
			fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { unix.Close(fd) })
			fds = append(fds, fd)
		}
		return fds
	}
	for name, offer := range map[string]func(t *testing.T) (uint32, []int){
		"unsealed": func(t *testing.T) (uint32, []int) {
			return MinRing, append([]int{memfd(t, Size(MinRing), false)}, evs(t)...)
		},
		"wrong size": func(t *testing.T) (uint32, []int) {
			return MinRing, append([]int{memfd(t, Size(MinRing)-1, true)}, evs(t)...)
		},
		"too few fds": func(t *testing.T) (uint32, []int) { return MinRing, []int{memfd(t, Size(MinRing), true)} },
		"no fds":      func(t *testing.T) (uint32, []int) { return MinRing, nil },
		"odd ring size": func(t *testing.T) (uint32, []int) {
			return MinRing + 1, append([]int{memfd(t, Size(MinRing+1), true)}, evs(t)...)
		},
		"not a memfd": func(t *testing.T) (uint32, []int) { return MinRing, append([]int{evs(t)[0]}, evs(t)...) },
		"a pipe for an event": func(t *testing.T) (uint32, []int) {
			var p [2]int
			if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { unix.Close(p[0]); unix.Close(p[1]) })
			return MinRing, append([]int{memfd(t, Size(MinRing), true), p[0]}, evs(t)[1:]...)
		},
		"huge ring size": func(t *testing.T) (uint32, []int) {
			return 1 << 31, append([]int{memfd(t, Size(MinRing), true)}, evs(t)...)
		},
	} {
		t.Run(name, func(t *testing.T) {
			a, b := socketpair(t)
			size, fds := offer(t)
			send(t, a, size, fds...)
			if j, err := Accept(b); err == nil {
				j.Close()
				t.Fatal("accepted")
			}
		})
	}
}

// An idle junction costs no CPU: a reader with nothing to read, and a
// writer with no space, stop spinning and sleep on their eventfds (their
// flags in the mapping say so), and the peer's next move wakes them.
func TestIdleSidesSleep(t *testing.T) {
	srv, cli := junctionPair(t, MinRing)
	asleep := func(flag *uint32) {
		for atomic.LoadUint32(flag) == 0 {
			time.Sleep(time.Millisecond)
		}
	}

	got := make(chan []byte)
	go func() {
		buf := make([]byte, 2*MinRing)
		n, err := srv.Read(buf)
		if err != nil {
			t.Error(err)
		}
		got <- buf[:n]
	}()
	asleep(srv.in.flag(offSleeping))
	if err := cli.WriteBuffers([][]byte{[]byte("wake")}); err != nil {
		t.Fatal(err)
	}
	if b := <-got; string(b) != "wake" {
		t.Fatalf("read %q after the wake-up", b)
	}

	wrote := make(chan error)
	go func() { wrote <- cli.WriteBuffers([][]byte{make([]byte, MinRing+1)}) }()
	asleep(cli.out.flag(offWaiting))
	buf := make([]byte, MinRing+1)
	if _, err := io.ReadFull(srv, buf); err != nil {
		t.Fatal(err)
	}
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
}

// InterruptRead takes a sleeping reader off its eventfd and fails later
// reads without consuming the peer's bytes, until it is cleared.
func TestInterruptRead(t *testing.T) {
	srv, cli := junctionPair(t, MinRing)

	done := make(chan error)
	go func() {
		_, err := srv.Read(make([]byte, 8))
		done <- err
	}()
	for atomic.LoadUint32(srv.in.flag(offSleeping)) == 0 {
		time.Sleep(time.Millisecond)
	}
	srv.InterruptRead(true)
	if err := <-done; !errors.Is(err, ErrInterrupted) {
		t.Fatalf("interrupted sleeping read: %v", err)
	}
	if err := cli.WriteBuffers([][]byte{[]byte("kept")}); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Read(make([]byte, 8)); !errors.Is(err, ErrInterrupted) {
		t.Fatalf("read while interrupted: %v", err)
	}
	srv.InterruptRead(false)
	buf := make([]byte, 8)
	n, err := srv.Read(buf)
	if err != nil || string(buf[:n]) != "kept" {
		t.Fatalf("read %q, %v after the interrupt was cleared", buf[:n], err)
	}
}

// hostileOffer hands srv's side a junction whose dialling side the test
// keeps raw, as a hostile peer would: its mapping and the four eventfds,
// which both sides share.
func hostileOffer(t *testing.T) (srv *Junction, peer *Offer) {
	t.Helper()
	a, b := socketpair(t)
	o, err := NewOffer(MinRing)
	if err != nil {
		t.Fatalf("memfd junction refused on this host: %v", err)
	}
	t.Cleanup(func() { o.Close() })
	if err := o.Send(a); err != nil {
		t.Fatal(err)
	}
	if srv, err = Accept(b); err != nil {
		t.Fatal(err)
	}
	// Not waited for: a Close that hangs fails the test, not its cleanup.
	t.Cleanup(func() { go srv.Close() })
	return srv, o
}

// fillEvent sets an eventfd's counter to its largest value: a write of one
// more then waits (EAGAIN on a non-blocking eventfd) until someone reads.
func fillEvent(t *testing.T, fd int) {
	t.Helper()
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], 1<<64-2)
	if _, err := unix.Write(fd, b[:]); err != nil {
		t.Fatal(err)
	}
	// The attack is armed: one more would wait.
	binary.LittleEndian.PutUint64(b[:], 1)
	if _, err := unix.Write(fd, b[:]); !errors.Is(err, unix.EAGAIN) {
		t.Fatalf("a write to the full eventfd: %v, want EAGAIN", err)
	}
}

// within fails the test when f has not returned after a minute: a hang,
// not a slow machine.
func within(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatalf("%s hangs", what)
	}
}

// A peer shares the eventfds, so it can fill their counters, read the
// wake-ups meant for us, or never read the ones meant for it. None of that
// may hang our side: a signal never waits for the peer, and Close and
// InterruptRead wake our own waiters without the shared eventfds.
func TestHostileEventsCannotHang(t *testing.T) {
	// Ring 0 carries the peer's bytes to srv (data event 0, space event 1),
	// ring 1 srv's bytes to the peer (data event 2, space event 3).
	t.Run("write while the peer's event is full", func(t *testing.T) {
		srv, peer := hostileOffer(t)
		fillEvent(t, peer.evfds[2])
		// The peer says it sleeps: srv's write signals it.
		atomic.StoreUint32((*uint32)(unsafe.Pointer(&peer.mem[ctlLen+offSleeping])), 1)
		within(t, "a write that signals a full eventfd", func() {
			if err := srv.WriteBuffers([][]byte{[]byte("hello")}); err != nil {
				t.Error(err)
			}
		})
		within(t, "Close", func() { srv.Close() })
	})
	t.Run("close with every event full", func(t *testing.T) {
		srv, peer := hostileOffer(t)
		read := make(chan error, 1)
		go func() { _, err := srv.Read(make([]byte, 8)); read <- err }()
		for atomic.LoadUint32(srv.in.flag(offSleeping)) == 0 {
			time.Sleep(time.Millisecond)
		}
		for _, fd := range peer.evfds[1:] {
			fillEvent(t, fd)
		}
		within(t, "Close", func() { srv.Close() })
		within(t, "the sleeping Read", func() {
			if err := <-read; !errors.Is(err, ErrClosed) {
				t.Errorf("the sleeping Read after Close: %v", err)
			}
		})
	})
	t.Run("wake-ups taken by the peer", func(t *testing.T) {
		srv, peer := hostileOffer(t)
		// The thief reads srv's data event as fast as it can.
		thief := make(chan struct{})
		defer close(thief)
		go func() {
			var b [8]byte
			for {
				select {
				case <-thief:
					return
				default:
				}
				unix.Read(peer.evfds[0], b[:])
			}
		}()
		for range 20 {
			read := make(chan error, 1)
			go func() { _, err := srv.Read(make([]byte, 8)); read <- err }()
			for atomic.LoadUint32(srv.in.flag(offSleeping)) == 0 {
				time.Sleep(time.Millisecond)
			}
			srv.InterruptRead(true)
			within(t, "an interrupted Read", func() {
				if err := <-read; !errors.Is(err, ErrInterrupted) {
					t.Errorf("interrupted Read: %v", err)
				}
			})
			srv.InterruptRead(false)
		}
		read := make(chan error, 1)
		go func() { _, err := srv.Read(make([]byte, 8)); read <- err }()
		for atomic.LoadUint32(srv.in.flag(offSleeping)) == 0 {
			time.Sleep(time.Millisecond)
		}
		within(t, "Close", func() { srv.Close() })
		within(t, "the sleeping Read", func() {
			if err := <-read; !errors.Is(err, ErrClosed) {
				t.Errorf("the sleeping Read after Close: %v", err)
			}
		})
	})
}
