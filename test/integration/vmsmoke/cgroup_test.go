//go:build vmlab

package vmsmoke

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

const cgroupRoot = "/sys/fs/cgroup"

// userManagerCgroup is the cgroup directory of the user's systemd manager,
// the subtree systemd delegates to the user.
func userManagerCgroup(uid int) string {
	return filepath.Join(cgroupRoot, "user.slice",
		fmt.Sprintf("user-%d.slice", uid), fmt.Sprintf("user@%d.service", uid))
}

func TestCgroupV2Delegated(t *testing.T) {
	var st unix.Statfs_t
	if err := unix.Statfs(cgroupRoot, &st); err != nil {
		t.Fatalf("statfs %s: %v", cgroupRoot, err)
	}
	if st.Type != unix.CGROUP2_SUPER_MAGIC {
		t.Fatalf("%s has filesystem magic %#x, want cgroup2 (%#x): the lab must boot with the unified hierarchy",
			cgroupRoot, st.Type, unix.CGROUP2_SUPER_MAGIC)
	}

	uid := os.Getuid()
	if uid == 0 {
		t.Fatalf("running as root: the lab must run the tests as its unprivileged user")
	}
	dir := userManagerCgroup(uid)
	ctrls, err := readTrimmed(filepath.Join(dir, "cgroup.controllers"))
	if err != nil {
		t.Fatalf("user manager cgroup (is user@%d.service running, is the user lingering?): %v", uid, err)
	}
	have := map[string]bool{}
	for _, c := range strings.Fields(ctrls) {
		have[c] = true
	}
	for _, want := range []string{"cpu", "memory", "pids"} {
		if !have[want] {
			t.Errorf("controller %q not delegated to user %d: %s/cgroup.controllers = %q", want, uid, dir, ctrls)
		}
	}

	// Delegation means the user owns the subtree: the user manager's
	// cgroup.procs must belong to the user.
	var fst unix.Stat_t
	procs := filepath.Join(dir, "cgroup.procs")
	if err := unix.Stat(procs, &fst); err != nil {
		t.Fatalf("stat %s: %v", procs, err)
	}
	if int(fst.Uid) != uid {
		t.Errorf("%s is owned by uid %d, want %d (not delegated)", procs, fst.Uid, uid)
	}
	t.Logf("cgroup2 at %s; %s delegates %q (owner uid %s)", cgroupRoot, dir, ctrls, strconv.Itoa(int(fst.Uid)))
}

// procCgroup returns the cgroup v2 path of a process, relative to the
// cgroup root, from /proc/PID/cgroup.
func procCgroup(pid int) (string, error) {
	path := fmt.Sprintf("/proc/%d/cgroup", pid)
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "0::"); ok {
			return rest, nil
		}
	}
	return "", fmt.Errorf("%s has no cgroup v2 line: %q", path, b)
}

// effectiveMemoryMax walks from the cgroup rel (relative to the cgroup root)
// up to the root and returns the smallest memory.max on the way, with the
// directory that set it. A process's limit is the tightest of its ancestors'
// (runtimes often put the process in a child of the limited cgroup).
func effectiveMemoryMax(rel string) (limit int64, from string, err error) {
	limit = -1
	for dir := filepath.Join(cgroupRoot, rel); strings.HasPrefix(dir, cgroupRoot+"/"); dir = filepath.Dir(dir) {
		v, err := readTrimmed(filepath.Join(dir, "memory.max"))
		if err != nil {
			if os.IsNotExist(err) {
				continue
			}
			return 0, "", err
		}
		if v == "max" {
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, "", fmt.Errorf("parse %s/memory.max %q: %w", dir, v, err)
		}
		if limit < 0 || n < limit {
			limit, from = n, dir
		}
	}
	return limit, from, nil
}
