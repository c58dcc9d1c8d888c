// Package linuxproc reads and signals processes the Linux way, in one place:
// the fields of /proc/PID/stat the root and its tests rely on, and signals
// to whole process groups.
package linuxproc

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// Stat is what /proc/PID/stat says of one process.
type Stat struct {
	// Comm is the command name, as the kernel keeps it (at most 15 bytes).
	Comm string
	// State is the one-letter state: R, S, D, Z, T, ...
	State byte
	PPid  int
	PGrp  int
	// StartTime is when the process started, in clock ticks since boot:
	// with the pid it names one process, whatever reuse of the pid follows.
	StartTime uint64
}

// ReadStat reads /proc/PID/stat.
func ReadStat(pid int) (Stat, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return Stat{}, err
	}
	st, err := ParseStat(data)
	if err != nil {
		return Stat{}, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return st, nil
}

// ErrStat is wrapped by every parse failure of ParseStat.
var ErrStat = errors.New("malformed stat line")

// ParseStat parses the contents of a /proc/PID/stat file. The command name
// may hold spaces and parentheses, so it is what lies between the first
// '(' and the last ')'; the numbered fields follow.
func ParseStat(data []byte) (Stat, error) {
	open, closing := bytes.IndexByte(data, '('), bytes.LastIndexByte(data, ')')
	if open < 0 || closing < open {
		return Stat{}, ErrStat
	}
	fields := bytes.Fields(data[closing+1:])
	// fields[0] is field 3 (state); starttime is field 22.
	const startField = 22 - 3
	if len(fields) <= startField || len(fields[0]) != 1 {
		return Stat{}, fmt.Errorf("%w: %d fields", ErrStat, len(fields))
	}
	ppid, err1 := strconv.Atoi(string(fields[1]))
	pgrp, err2 := strconv.Atoi(string(fields[2]))
	start, err3 := strconv.ParseUint(string(fields[startField]), 10, 64)
	if err := errors.Join(err1, err2, err3); err != nil {
		return Stat{}, fmt.Errorf("%w: %v", ErrStat, err)
	}
	return Stat{Comm: string(data[open+1 : closing]), State: fields[0][0], PPid: ppid, PGrp: pgrp, StartTime: start}, nil
}

// KillGroup sends sig to the process group pgid. A group that is already
// empty is no error.
func KillGroup(pgid int, sig syscall.Signal) error {
	if pgid <= 0 {
		return fmt.Errorf("signal group %d: not a process group", pgid)
	}
	if err := unix.Kill(-pgid, sig); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("signal group %d with %v: %w", pgid, sig, err)
	}
	return nil
}
