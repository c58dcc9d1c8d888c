package podmanhelper

import (
	"fmt"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// socketpair returns the root's end as a connection and the helper's end as
// a file to pass as its descriptor 3. Both are close-on-exec here; the exec
// of the helper clears the flag on its copy only.
func socketpair() (net.Conn, *os.File, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("socketpair: %w", err)
	}
	ours := os.NewFile(uintptr(fds[0]), "podman-helper")
	theirs := os.NewFile(uintptr(fds[1]), "podman-helper-peer")
	conn, err := net.FileConn(ours)
	ours.Close()
	if err != nil {
		theirs.Close()
		return nil, nil, fmt.Errorf("socketpair: %w", err)
	}
	return conn, theirs, nil
}
