package cell

import (
	"fmt"
	"os"
	"syscall"

	"github.com/cellproject/cell/internal/linuxproc"

	"golang.org/x/sys/unix"
)

// socketpair returns the two ends of a close-on-exec stream socketpair; the
// caller passes one to the child through ExtraFiles, which clears the flag.
func socketpair() (ours, theirs *os.File, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("socketpair: %w", err)
	}
	return os.NewFile(uintptr(fds[0]), "umbilical-owner"), os.NewFile(uintptr(fds[1]), "umbilical-root"), nil
}

// ownGroup puts cellroot in its own process group, so that a terminal's ^C
// reaches the owner, which ends the session in order, rather than the root.
func ownGroup() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

// killGroup kills cellroot's whole process group, taking along any helper it
// left in it.
func killGroup(pgid int) { _ = linuxproc.KillGroup(pgid, unix.SIGKILL) }
