package podman

import (
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"

	"github.com/cellproject/cell/internal/linuxproc"
	"github.com/cellproject/cell/internal/rundir"

	"golang.org/x/sys/unix"
)

// A root killed while its Podman service creates or starts a container
// leaves conmon and the `runc init` it reaps (waiting on its exec fifo for
// a start that never comes) behind, for a container `podman ps -a` may not
// show. They are found by conmon's command line, which names the container
// (ContainerName carries the session id), and killed through pidfds, so that
// a pid reused between the scan and the signal is never hit.

// containerNamePattern matches ContainerName's names and captures the session.
var containerNamePattern = regexp.MustCompile(`^cell-([0-9a-f]{16})-`)

// sessionOfName returns the session a container name of ours belongs to.
func sessionOfName(name string) (string, bool) {
	m := containerNamePattern.FindStringSubmatch(strings.TrimPrefix(name, "/"))
	if m == nil {
		return "", false
	}
	return m[1], true
}

// procEntry is what the scan needs of one process.
type procEntry struct {
	pid, ppid int
	comm      string
	args      []string
}

func scanProcs() ([]procEntry, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("podman: scan processes: %w", err)
	}
	uid := os.Getuid()
	var out []procEntry
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		var st unix.Stat_t
		if unix.Stat("/proc/"+e.Name(), &st) != nil || int(st.Uid) != uid {
			continue
		}
		stat, err := linuxproc.ReadStat(pid)
		if err != nil {
			continue
		}
		cmd, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		out = append(out, procEntry{pid: pid, ppid: stat.PPid, comm: stat.Comm,
			args: strings.Split(strings.TrimRight(string(cmd), "\x00"), "\x00")})
	}
	return out, nil
}

// conmonSession returns the session of a conmon serving one of our
// containers of runtime dir base: its -n/--name argument names the session,
// and its log path lies in the backend's private dir under base, so that
// the roots of another runtime dir of the same user are left alone.
func conmonSession(p procEntry, base string) (string, bool) {
	if p.comm != "conmon" {
		return "", false
	}
	ours := false
	for _, a := range p.args {
		ours = ours || strings.Contains(a, base+"/"+rundir.PodmanPrivatePrefix)
	}
	if !ours {
		return "", false
	}
	for i, a := range p.args {
		if (a == "-n" || a == "--name") && i+1 < len(p.args) {
			return sessionOfName(p.args[i+1])
		}
		if v, ok := strings.CutPrefix(a, "--name="); ok {
			return sessionOfName(v)
		}
	}
	return "", false
}

// killLeftoverConmons kills every conmon of a dead session's container under
// base, the processes it reaps first (runc init, the container's init), and
// returns how many processes it killed.
func killLeftoverConmons(base string, live func(string) bool) (int, error) {
	procs, err := scanProcs()
	if err != nil {
		return 0, err
	}
	children := map[int][]procEntry{}
	for _, p := range procs {
		children[p.ppid] = append(children[p.ppid], p)
	}
	killed := 0
	for _, p := range procs {
		session, ok := conmonSession(p, base)
		if !ok || live(session) {
			continue
		}
		for _, c := range children[p.pid] {
			if killPidfd(c.pid, c.ppid) {
				killed++
			}
		}
		if killPidfd(p.pid, p.ppid) {
			killed++
		}
	}
	return killed, nil
}

// killPidfd SIGKILLs pid through a pidfd, after checking that the process
// the pidfd holds still has the parent it was scanned with.
func killPidfd(pid, ppid int) bool {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	if stat, err := linuxproc.ReadStat(pid); err != nil || stat.PPid != ppid {
		return false
	}
	return unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0) == nil
}
