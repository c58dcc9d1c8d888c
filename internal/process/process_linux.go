package process

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/cellproject/cell/internal/linuxproc"

	"golang.org/x/sys/unix"
)

const supported = true

// sysProcAttr puts the child in a new session, which also makes it the leader
// of a new process group (so the group can be signalled as one), and detaches
// it from any controlling terminal: a cell that could open /dev/tty could push
// input into the user's shell (TIOCSTI) and would get the terminal's SIGHUP.
// Pdeathsig kills the child if the thread that forked it dies; see
// Instance.run for why that thread lives exactly as long as the child.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{
		Setsid:    true,
		Pdeathsig: syscall.SIGKILL,
	}
}

// joinNewSessionKeyring gives the calling thread a new anonymous session
// keyring. unix.KeyctlJoinSessionKeyring cannot: it passes a name, and the
// kernel rejects an empty one; only a NULL name means "anonymous".
func joinNewSessionKeyring() error {
	if _, _, e := unix.Syscall(unix.SYS_KEYCTL, unix.KEYCTL_JOIN_SESSION_KEYRING, 0, 0); e != 0 {
		if e == unix.EDQUOT {
			sysctl, quota := keyQuota()
			return fmt.Errorf("join a new session keyring: %w: this user's kernel key quota is used up (%s keys); "+
				"each sandboxed cell holds a keyring, and those of cells that just exited count until the kernel collects them: "+
				"try again in a moment, or raise the quota (as root: sysctl -w %s=N)", e, quota, sysctl)
		}
		return fmt.Errorf("join a new session keyring: %w", e)
	}
	return nil
}

// keyQuota is the sysctl that holds this user's key quota (root has one
// of its own) and its value as the kernel reports it.
func keyQuota() (sysctl, value string) {
	name := "maxkeys"
	if os.Geteuid() == 0 {
		name = "root_maxkeys"
	}
	b, err := os.ReadFile("/proc/sys/kernel/keys/" + name)
	if err != nil {
		return "kernel.keys." + name, "unknown"
	}
	return "kernel.keys." + name, strings.TrimSpace(string(b))
}

// waitExit blocks until pid has exited, leaving it unreaped (WNOWAIT) so its
// pid, and with it the group id, stays allocated.
func waitExit(pid int) {
	for {
		var info unix.Siginfo
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if err != unix.EINTR {
			// Any other error (ECHILD) means there is nothing left to wait
			// for; the reap that follows reports what happened.
			return
		}
	}
}

// killGroup sends sig to process group pgid. An empty group is no error.
func killGroup(pgid int, sig syscall.Signal) error { return linuxproc.KillGroup(pgid, sig) }

// signalMembers sends sig to every process of group pgid except its leader
// (whose pid is pgid). The members are found among the leader's descendants
// (/proc/PID/task/TID/children), so the cost is the group's size, not the
// machine's process count: stopping N cells used to scan all of /proc N
// times. Where the kernel has no children files, all of /proc is scanned.
// Each member is pinned with a pidfd and its group checked again before the
// signal goes through the pidfd, so a member that exits and whose pid is
// reused meanwhile is never hit.
func signalMembers(pgid int, sig syscall.Signal) error {
	pids, err := descendants(pgid)
	if err != nil {
		if pids, err = allPids(); err != nil {
			return fmt.Errorf("signal group %d members: %w", pgid, err)
		}
	}
	var errs []error
	for _, pid := range pids {
		if pid == pgid {
			continue
		}
		if g, ok := groupOf(pid); !ok || g != pgid {
			continue
		}
		fd, err := unix.PidfdOpen(pid, 0)
		if err != nil {
			continue // gone already
		}
		if g, ok := groupOf(pid); ok && g == pgid {
			err := unix.PidfdSendSignal(fd, sig, nil, 0)
			if err != nil && !errors.Is(err, unix.ESRCH) {
				errs = append(errs, fmt.Errorf("signal pid %d with %v: %w", pid, sig, err))
			}
		}
		unix.Close(fd)
	}
	return errors.Join(errs...)
}

// descendants lists the pids below pid, breadth first. A member that left
// the tree (its parent died and it was reparented) is not found: it still
// gets the group's SIGKILL. The error is only the leader's: a kernel
// without children files.
func descendants(pid int) ([]int, error) {
	var out []int
	queue := []int{pid}
	for i := 0; i < len(queue); i++ {
		tasks, err := os.ReadDir("/proc/" + strconv.Itoa(queue[i]) + "/task")
		if err != nil {
			if i == 0 {
				return nil, err
			}
			continue
		}
		for _, task := range tasks {
			b, err := os.ReadFile("/proc/" + strconv.Itoa(queue[i]) + "/task/" + task.Name() + "/children")
			if err != nil {
				if i == 0 && errors.Is(err, os.ErrNotExist) {
					return nil, err
				}
				continue
			}
			for _, f := range bytes.Fields(b) {
				if c, err := strconv.Atoi(string(f)); err == nil {
					out = append(out, c)
					queue = append(queue, c)
				}
			}
		}
	}
	return out, nil
}

// allPids lists every pid in /proc.
func allPids() ([]int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, e := range entries {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// groupOf reads the process group of pid from /proc/pid/stat.
func groupOf(pid int) (int, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	// The command name in parentheses may hold spaces and parentheses; the
	// fields after the last ')' are: state ppid pgrp ...
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, false
	}
	f := bytes.Fields(b[i+1:])
	if len(f) < 3 {
		return 0, false
	}
	g, err := strconv.Atoi(string(f[2]))
	return g, err == nil
}
