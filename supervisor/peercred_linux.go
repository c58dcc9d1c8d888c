package supervisor

import (
	"errors"
	"fmt"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// errForeignPeer is returned for a connection from another user.
var errForeignPeer = errors.New("peer belongs to another user")

// checkPeer refuses connections whose SO_PEERCRED uid is not uid, and
// returns the peer's pid (in the root's pid namespace: the kernel translates
// it, so a sandboxed cell cannot lie about it). The session dir is 0700
// already; this holds even if a descriptor is passed on.
func checkPeer(conn net.Conn, uid int) (pid int, err error) {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return 0, fmt.Errorf("peer credentials: %T is not a socket", conn)
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return 0, fmt.Errorf("peer credentials: %w", err)
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return 0, fmt.Errorf("peer credentials: %w", err)
	}
	if credErr != nil {
		return 0, fmt.Errorf("peer credentials: %w", credErr)
	}
	if int(cred.Uid) != uid {
		return 0, fmt.Errorf("%w: uid %d (pid %d), expected %d", errForeignPeer, cred.Uid, cred.Pid, uid)
	}
	return int(cred.Pid), nil
}
