package hostcap

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

const cgroupRoot = "/sys/fs/cgroup"

// wantControllers are what cell limits need: memory.max, cpu.max, pids.max.
var wantControllers = []string{"cpu", "memory", "pids"}

func rootlessLimits(uid int) (bool, string) {
	var st unix.Statfs_t
	if err := unix.Statfs(cgroupRoot, &st); err != nil {
		return false, fmt.Sprintf("cannot read %s (%v), so cgroup limits cannot be checked", cgroupRoot, err)
	}
	if st.Type != unix.CGROUP2_SUPER_MAGIC {
		return false, "this machine has a cgroup v1 or hybrid hierarchy (memory, cpu and pids on v1), " +
			"where limits of rootless containers are silently ignored; to enforce them, boot with " +
			"systemd.unified_cgroup_hierarchy=1 (cgroup v2) and delegate cpu, memory and pids to " +
			"user@.service (Delegate=cpu memory pids in a drop-in of user@.service)"
	}
	// Rootless Podman (systemd cgroup manager) and user scopes live under
	// the user's service manager; without one, in the caller's cgroup.
	dir := filepath.Join(cgroupRoot, "user.slice", fmt.Sprintf("user-%d.slice", uid), fmt.Sprintf("user@%d.service", uid))
	if _, err := os.Stat(dir); err != nil {
		own, err := ownCgroup()
		if err != nil {
			return false, fmt.Sprintf("cgroup v2, but the user's cgroup is unknown: %v", err)
		}
		dir = filepath.Join(cgroupRoot, own)
	}
	data, err := os.ReadFile(filepath.Join(dir, "cgroup.controllers"))
	if err != nil {
		return false, fmt.Sprintf("cgroup v2, but the user's controllers are unreadable: %v", err)
	}
	have := strings.Fields(string(data))
	var missing []string
	for _, c := range wantControllers {
		if !slices.Contains(have, c) {
			missing = append(missing, c)
		}
	}
	if len(missing) > 0 {
		return false, fmt.Sprintf("cgroup v2, but %s not delegated to user %d in %s (it has: %s); "+
			"delegate them with Delegate=cpu memory pids in a drop-in of user@.service",
			strings.Join(missing, ", "), uid, dir, strings.Join(have, " "))
	}
	return true, fmt.Sprintf("cgroup v2 with cpu, memory and pids delegated to user %d (%s): limits are enforced", uid, dir)
}

// ownCgroup is this process's cgroup v2 path, from /proc/self/cgroup.
func ownCgroup() (string, error) {
	data, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", err
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if p, ok := strings.CutPrefix(sc.Text(), "0::"); ok {
			return p, nil
		}
	}
	return "", fmt.Errorf("no cgroup v2 entry in /proc/self/cgroup")
}
