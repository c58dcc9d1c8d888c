package junction

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The offer message: the memfd and four eventfds as SCM_RIGHTS, with these
// bytes (docs/synapse.md, "Gap junctions").
var offerMagic = [4]byte{'J', 'U', 'N', 'C'}

const (
	offerLen     = 12
	offerVersion = 1
	offerFDs     = 5
	seals        = unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_SEAL
)

// efd is an event on an eventfd, read through the runtime's poller so that
// a sleeping side holds no thread. The peer shares the eventfd: it can fill
// its counter, or read the wake-ups meant for us. So a signal never waits,
// and our own waiters are woken without it: by a read deadline (interrupt)
// or by closing the file (Close).
type efd struct {
	f  *os.File
	rc syscall.RawConn
}

// wait returns nil when signalled or interrupted, an error once closed.
func (e efd) wait() error {
	var b [8]byte
	_, err := e.f.Read(b[:])
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return nil
	}
	return err
}

// eventOne is the 8-byte count a signal adds.
var eventOne = [8]byte{1}

// signal adds one to the counter with one write that never waits: a full
// counter (EAGAIN) already wakes its reader, and the poller's write would
// wait for the peer to read, which a hostile peer never does.
func (e efd) signal() {
	e.rc.Write(func(fd uintptr) bool {
		unix.Write(int(fd), eventOne[:])
		return true
	})
}

// interrupt makes wait return at once, while on, through a read deadline:
// a wake-up of our own that the peer cannot take.
func (e efd) interrupt(on bool) {
	var at time.Time
	if on {
		at = time.Unix(1, 0)
	}
	e.f.SetReadDeadline(at)
}

// anonInode is the device and inode of an eventfd: the kernel's one
// anonymous inode, which every eventfd shares. Asked of a new eventfd at
// each junction's start (three system calls), so that a failure then, say
// at a passing file limit, is not remembered.
func anonInode() ([2]uint64, error) {
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
	if err != nil {
		return [2]uint64{}, fmt.Errorf("junction: eventfd: %w", err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return [2]uint64{}, fmt.Errorf("junction: fstat eventfd: %w", err)
	}
	return [2]uint64{st.Dev, st.Ino}, nil
}

// checkEvent refuses an fd that is not an anonymous-inode file (an
// eventfd) where one belongs: a pipe, a socket or a file from the peer.
func checkEvent(fd int, anon [2]uint64) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("junction: fstat event: %w", err)
	}
	if [2]uint64{st.Dev, st.Ino} != anon {
		return fmt.Errorf("junction: an event is not an eventfd (mode %#o)", st.Mode)
	}
	return nil
}

// Offer is a junction the dialling side made and has not yet handed over.
type Offer struct {
	ringSize int
	memfd    int
	evfds    [4]int
	mem      []byte
}

// NewOffer makes the shared memory (a sealed memfd) and the four eventfds of
// a junction with rings of ringSize bytes. It fails where memfd_create,
// sealing, mmap or eventfd is refused (a seccomp policy, an old kernel).
func NewOffer(ringSize int) (o *Offer, err error) {
	if ringSize < MinRing || ringSize > MaxRing || ringSize&(ringSize-1) != 0 {
		return nil, fmt.Errorf("junction: ring size %d", ringSize)
	}
	o = &Offer{ringSize: ringSize, memfd: -1, evfds: [4]int{-1, -1, -1, -1}}
	defer func() {
		if err != nil {
			o.Close()
		}
	}()
	o.memfd, err = unix.MemfdCreate("cell-junction", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, fmt.Errorf("junction: memfd_create: %w", err)
	}
	if err := unix.Ftruncate(o.memfd, int64(Size(ringSize))); err != nil {
		return nil, fmt.Errorf("junction: ftruncate: %w", err)
	}
	if _, err := unix.FcntlInt(uintptr(o.memfd), unix.F_ADD_SEALS, seals); err != nil {
		return nil, fmt.Errorf("junction: seal: %w", err)
	}
	o.mem, err = unix.Mmap(o.memfd, 0, Size(ringSize), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("junction: mmap: %w", err)
	}
	for i := range o.evfds {
		if o.evfds[i], err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
			return nil, fmt.Errorf("junction: eventfd: %w", err)
		}
	}
	return o, nil
}

// Send hands the offer to the peer over uc.
func (o *Offer) Send(uc *net.UnixConn) error {
	var b [offerLen]byte
	copy(b[:4], offerMagic[:])
	binary.LittleEndian.PutUint32(b[4:8], uint32(o.ringSize))
	binary.LittleEndian.PutUint32(b[8:12], offerVersion)
	rights := unix.UnixRights(o.memfd, o.evfds[0], o.evfds[1], o.evfds[2], o.evfds[3])
	if _, _, err := uc.WriteMsgUnix(b[:], rights, nil); err != nil {
		return fmt.Errorf("junction: send offer: %w", err)
	}
	return nil
}

// Open makes the dialling side's Junction of an offer the peer accepted;
// the offer is spent then.
func (o *Offer) Open() (*Junction, error) {
	evfds := o.evfds
	o.evfds = [4]int{-1, -1, -1, -1} // build's from here on
	j, err := build(o.mem, o.ringSize, true, evfds)
	if err != nil {
		return nil, err
	}
	unix.Close(o.memfd) // the mapping holds the memory
	o.memfd, o.mem = -1, nil
	return j, nil
}

// Close discards an offer that was not opened. It is safe to call twice.
func (o *Offer) Close() error {
	if o.mem != nil {
		unix.Munmap(o.mem)
		o.mem = nil
	}
	closeFDs(append([]int{o.memfd}, o.evfds[:]...))
	o.memfd, o.evfds = -1, [4]int{-1, -1, -1, -1}
	return nil
}

func closeFDs(fds []int) {
	for _, fd := range fds {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
}

// build wraps the mapping and the eventfds in a Junction. It owns the
// eventfds from the call on: on failure it has closed them.
func build(mem []byte, ringSize int, dialer bool, evfds [4]int) (j *Junction, err error) {
	var evs [4]event
	var files []*os.File
	defer func() {
		if err != nil {
			for _, f := range files {
				f.Close()
			}
			closeFDs(evfds[len(files):])
		}
	}()
	anon, err := anonInode()
	if err != nil {
		return nil, err
	}
	for i, fd := range evfds {
		if err := checkEvent(fd, anon); err != nil {
			return nil, err
		}
		// Non-blocking, whatever the peer set: only then does the poller
		// wait, and can a deadline or Close wake a sleeper.
		if err := unix.SetNonblock(fd, true); err != nil {
			return nil, fmt.Errorf("junction: eventfd: %w", err)
		}
		f := os.NewFile(uintptr(fd), "junction-event")
		files = append(files, f)
		rc, err := f.SyscallConn()
		if err != nil {
			return nil, fmt.Errorf("junction: eventfd: %w", err)
		}
		evs[i] = efd{f, rc}
	}
	release := func() error { return unix.Munmap(mem) }
	// Closing the files wakes our sleepers on all four events (the inbound
	// ring's data, the outbound ring's space) through the poller.
	wake := func() {
		for _, f := range files {
			f.Close()
		}
	}
	return newJunction(mem, ringSize, dialer, evs, release, wake)
}

// Accept receives an offer on uc, checks it (a memfd of the right size,
// sealed against shrinking and growing, and four fds) and maps it: the
// accepting side's Junction.
func Accept(uc *net.UnixConn) (*Junction, error) {
	var b [offerLen]byte
	oob := make([]byte, unix.CmsgSpace(offerFDs*4)+unix.CmsgSpace(4))
	n, oobn, flags, _, err := uc.ReadMsgUnix(b[:], oob)
	if err != nil {
		return nil, fmt.Errorf("junction: read offer: %w", err)
	}
	fds, ferr := parseRights(oob[:oobn])
	// From here every received fd is ours to close unless handed on.
	ok := false
	defer func() {
		if !ok {
			closeFDs(fds)
		}
	}()
	if ferr != nil {
		return nil, ferr
	}
	if flags&unix.MSG_CTRUNC != 0 || n != offerLen || len(fds) != offerFDs {
		return nil, fmt.Errorf("junction: offer of %d bytes with %d fds", n, len(fds))
	}
	if [4]byte(b[:4]) != offerMagic || binary.LittleEndian.Uint32(b[8:12]) != offerVersion {
		return nil, errors.New("junction: not a junction offer")
	}
	ringSize := int(binary.LittleEndian.Uint32(b[4:8]))
	if ringSize < MinRing || ringSize > MaxRing || ringSize&(ringSize-1) != 0 {
		return nil, fmt.Errorf("junction: offered ring size %d", ringSize)
	}
	memfd := fds[0]
	got, err := unix.FcntlInt(uintptr(memfd), unix.F_GET_SEALS, 0)
	if err != nil || got&seals != seals {
		return nil, fmt.Errorf("junction: the shared memory is not a sealed memfd (seals %#x, %v)", got, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(memfd, &st); err != nil || st.Size != int64(Size(ringSize)) {
		return nil, fmt.Errorf("junction: shared memory of %d bytes for rings of %d", st.Size, ringSize)
	}
	mem, err := unix.Mmap(memfd, 0, Size(ringSize), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("junction: mmap: %w", err)
	}
	evfds := [4]int(fds[1:5])
	fds = fds[:1] // build's from here on
	j, err := build(mem, ringSize, false, evfds)
	if err != nil {
		unix.Munmap(mem)
		return nil, err
	}
	ok = true
	unix.Close(memfd)
	return j, nil
}

// parseRights returns every fd in the control messages, even when it also
// returns an error, so that the caller can close them all.
func parseRights(oob []byte) ([]int, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, fmt.Errorf("junction: control message: %w", err)
	}
	var fds []int
	var bad error
	for _, m := range msgs {
		if m.Header.Level != syscall.SOL_SOCKET || m.Header.Type != syscall.SCM_RIGHTS {
			bad = errors.New("junction: unexpected control message")
			continue
		}
		got, err := unix.ParseUnixRights(&m)
		if err != nil {
			bad = fmt.Errorf("junction: rights: %w", err)
			continue
		}
		fds = append(fds, got...)
	}
	return fds, bad
}
