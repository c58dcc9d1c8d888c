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

// checkPeer refuses connections whose SO_PEERCRED uid is not uid. The session
// dir is 0700 already; this holds even if a descriptor is passed on.
func checkPeer(conn net.Conn, uid int) error {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return fmt.Errorf("peer credentials: %T is not a socket", conn)
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return fmt.Errorf("peer credentials: %w", err)
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return fmt.Errorf("peer credentials: %w", err)
	}
	if credErr != nil {
		return fmt.Errorf("peer credentials: %w", credErr)
	}
	if int(cred.Uid) != uid {
		return fmt.Errorf("%w: uid %d (pid %d), expected %d", errForeignPeer, cred.Uid, cred.Pid, uid)
	}
	return nil
}
