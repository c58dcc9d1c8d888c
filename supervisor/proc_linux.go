package supervisor

import (
	"bytes"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// processStartTime reads the start time of pid (field 22 of /proc/PID/stat,
// in clock ticks since boot), which with the pid identifies one process.
func processStartTime(pid int) (uint64, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name may hold spaces and parentheses; fields start after
	// the last ')'.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	fields := bytes.Fields(data[i+1:])
	const startField = 22 - 3 // fields 1 and 2 precede ')', field 3 is fields[0]
	if len(fields) <= startField {
		return 0, fmt.Errorf("parse /proc/%d/stat: %d fields", pid, len(fields))
	}
	return strconv.ParseUint(string(fields[startField]), 10, 64)
}

// killGroup SIGKILLs the process group led by pid.
func killGroup(pid int) error {
	return unix.Kill(-pid, unix.SIGKILL)
}
