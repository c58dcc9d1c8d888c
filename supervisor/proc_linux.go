package supervisor

import (
	"golang.org/x/sys/unix"

	"github.com/cellproject/cell/internal/linuxproc"
)

// processStartTime is pid's start time, which with the pid identifies one
// process across pid reuse.
func processStartTime(pid int) (uint64, error) {
	st, err := linuxproc.ReadStat(pid)
	return st.StartTime, err
}

// killGroup SIGKILLs the process group led by pid.
func killGroup(pid int) error {
	return linuxproc.KillGroup(pid, unix.SIGKILL)
}
