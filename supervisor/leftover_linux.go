package supervisor

import (
	"bytes"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// killNaming SIGKILLs every process of this user whose command line or
// environment names the dead session's dir, and returns how many. The
// record misses a cell whose root died between starting its sandbox and
// writing the record, and bubblewrap's own death signal is armed only once
// it has started (a parent dying before that is missed: bubblewrap#633);
// but bubblewrap's arguments name the session dir, and every cell's
// environment does (CELL_RUNTIME_DIR). Session ids are random, so nothing
// else names that dir. Signals go through pidfds, opened before the check,
// so that a reused pid is never hit.
func killNaming(dir string) int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	uid := os.Getuid()
	self := os.Getpid()
	needle := []byte(dir)
	killed := 0
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		fd, err := unix.PidfdOpen(pid, 0)
		if err != nil {
			continue
		}
		var st unix.Stat_t
		proc := "/proc/" + e.Name()
		if unix.Stat(proc, &st) == nil && int(st.Uid) == uid && namesDir(proc, needle) &&
			unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0) == nil {
			killed++
		}
		unix.Close(fd)
	}
	return killed
}

// namesDir reports whether the process's argv or environment holds dir as
// a whole path or a path prefix.
func namesDir(proc string, dir []byte) bool {
	for _, f := range []string{"/cmdline", "/environ"} {
		data, err := os.ReadFile(proc + f)
		if err != nil {
			continue
		}
		for _, field := range bytes.Split(data, []byte{0}) {
			if i := bytes.Index(field, dir); i >= 0 {
				rest := field[i+len(dir):]
				if len(rest) == 0 || rest[0] == '/' {
					return true
				}
			}
		}
	}
	return false
}
