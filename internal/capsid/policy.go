package capsid

import (
	"fmt"
	"slices"

	"golang.org/x/sys/unix"
)

// Action is what the filter does with a call.
type Action int

const (
	// Deny fails the call with ENOSYS without running it; it is also what
	// happens to every call the table does not name.
	Deny Action = iota
	// Allow runs the call.
	Allow
)

func (a Action) String() string {
	if a == Allow {
		return "allow"
	}
	return "deny"
}

// DenyErrno is the errno of a denied call.
const DenyErrno = unix.ENOSYS

// Op compares one syscall argument.
type Op int

const (
	// Equal: the argument is Value.
	Equal Op = iota
	// MaskedEqual: the argument ANDed with Mask is Value.
	MaskedEqual
)

// Arg is one argument condition of a rule.
type Arg struct {
	// Index is the argument's position, 0 to 5.
	Index int
	Op    Op
	// Mask is used by MaskedEqual only.
	Mask, Value uint64
}

// Rule is one row of the policy. A rule without Args decides every call of
// its syscall; a rule with Args allows the calls whose arguments match all
// of them, and a call no rule of its syscall matches is denied. A syscall
// has either one unconditional rule or only conditional allows: libseccomp,
// which turns the OCI profile into BPF inside the container runtime, lets
// an unconditional allow win over a conditional deny of the same syscall
// (seen with runc and libseccomp 2.5 on Podman 4.3), so "allow except"
// must be spelled as allows (see allowUnless).
type Rule struct {
	Syscall string
	Action  Action
	Args    []Arg
	// Why is for the reviewer.
	Why string
}

// Namespace flags a cell may never pass to clone: a new namespace of any
// kind is the way to uid 0 and all capabilities in a nested user namespace,
// and to mount tricks that the sandbox's own namespaces are meant to
// prevent. CLONE_NEWTIME is absent: its bit is part of the exit signal in
// clone's flags (the kernel only accepts it through clone3 and unshare,
// both denied).
const cloneNamespaceFlags = unix.CLONE_NEWNS | unix.CLONE_NEWCGROUP | unix.CLONE_NEWUTS |
	unix.CLONE_NEWIPC | unix.CLONE_NEWUSER | unix.CLONE_NEWPID | unix.CLONE_NEWNET

// The kernel takes ioctl's request as an unsigned int and ignores the upper
// half of the register, so the deny rules compare the low 32 bits only:
// comparing all 64 would let 0xffffffff00005412 through (CVE-2019-10063).
const low32 = 0xffffffff

// Personality values a cell may set: Linux itself and the query value.
// Everything else (ADDR_NO_RANDOMIZE, READ_IMPLIES_EXEC, ...) weakens the
// protections of whatever the cell executes next.
const (
	perLinux = 0x0
	perQuery = 0xffffffff
)

// allowed are the syscalls a cell may make without conditions, grouped as a
// reviewer reads them. Together with the conditional rules of Rules they are
// what static Go, glibc and musl programs, and the shared-memory fast path
// (memfd_create, mmap, futex, eventfd), need; the rest of Podman's default
// allow list minus what Flatpak's filter blocks.
var allowed = [][]string{
	// files and descriptors
	{"read", "write", "open", "openat", "openat2", "close", "close_range", "creat", "lseek",
		"pread64", "pwrite64", "readv", "writev", "preadv", "pwritev", "preadv2", "pwritev2",
		"dup", "dup2", "dup3", "fcntl", "flock", "fsync", "fdatasync", "syncfs", "sync", "sync_file_range",
		"truncate", "ftruncate", "fallocate", "fadvise64", "readahead",
		"stat", "fstat", "lstat", "newfstatat", "statx", "statfs", "fstatfs",
		"access", "faccessat", "faccessat2", "getdents", "getdents64", "getcwd", "chdir", "fchdir",
		"rename", "renameat", "renameat2", "mkdir", "mkdirat", "rmdir", "link", "linkat", "unlink", "unlinkat",
		"symlink", "symlinkat", "readlink", "readlinkat", "mknod", "mknodat",
		"chmod", "fchmod", "fchmodat", "fchmodat2", "chown", "fchown", "lchown", "fchownat", "umask",
		"utime", "utimes", "utimensat", "futimesat",
		"getxattr", "lgetxattr", "fgetxattr", "listxattr", "llistxattr", "flistxattr",
		"setxattr", "lsetxattr", "fsetxattr", "removexattr", "lremovexattr", "fremovexattr",
		"sendfile", "splice", "tee", "vmsplice", "copy_file_range",
		"pipe", "pipe2", "inotify_init", "inotify_init1", "inotify_add_watch", "inotify_rm_watch",
		"memfd_create", "eventfd", "eventfd2", "signalfd", "signalfd4", "timerfd_create", "timerfd_settime", "timerfd_gettime"},
	// polling
	{"poll", "ppoll", "select", "pselect6", "epoll_create", "epoll_create1", "epoll_ctl",
		"epoll_wait", "epoll_pwait", "epoll_pwait2"},
	// memory
	{"brk", "mmap", "munmap", "mremap", "mprotect", "madvise", "msync", "mincore",
		"mlock", "mlock2", "munlock", "mlockall", "munlockall", "membarrier",
		"pkey_mprotect", "pkey_alloc", "pkey_free", "map_shadow_stack", "mseal",
		"get_mempolicy", "set_mempolicy", "mbind"},
	// System V and POSIX IPC stay inside the sandbox's IPC namespace
	{"shmget", "shmat", "shmctl", "shmdt", "semget", "semop", "semctl", "semtimedop",
		"msgget", "msgsnd", "msgrcv", "msgctl",
		"mq_open", "mq_unlink", "mq_timedsend", "mq_timedreceive", "mq_notify", "mq_getsetattr"},
	// sockets (the network namespace decides what they reach)
	{"socket", "socketpair", "connect", "accept", "accept4", "bind", "listen", "shutdown",
		"getsockname", "getpeername", "setsockopt", "getsockopt",
		"sendto", "recvfrom", "sendmsg", "recvmsg", "sendmmsg", "recvmmsg"},
	// processes and threads (clone is conditional, below)
	{"fork", "vfork", "execve", "execveat", "exit", "exit_group", "wait4", "waitid",
		"kill", "tkill", "tgkill", "getpid", "gettid", "getppid", "getpgid", "setpgid", "getpgrp",
		"getsid", "setsid", "set_tid_address", "set_robust_list", "get_robust_list", "rseq",
		"arch_prctl", "prctl", "futex", "futex_waitv", "futex_wake", "futex_wait", "futex_requeue",
		"sched_yield", "sched_getaffinity", "sched_setaffinity", "sched_getparam", "sched_setparam",
		"sched_getscheduler", "sched_setscheduler", "sched_get_priority_max", "sched_get_priority_min",
		"sched_rr_get_interval", "sched_getattr", "sched_setattr", "getpriority", "setpriority",
		"ioprio_get", "ioprio_set", "getcpu", "restart_syscall",
		"pidfd_open", "pidfd_send_signal", "pidfd_getfd", "process_mrelease",
		"seccomp", "landlock_create_ruleset", "landlock_add_rule", "landlock_restrict_self"},
	// signals
	{"rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "rt_sigpending", "rt_sigtimedwait",
		"rt_sigqueueinfo", "rt_tgsigqueueinfo", "rt_sigsuspend", "sigaltstack", "pause"},
	// time
	{"clock_gettime", "clock_getres", "clock_nanosleep", "gettimeofday", "time", "nanosleep",
		"alarm", "getitimer", "setitimer", "timer_create", "timer_settime", "timer_gettime",
		"timer_getoverrun", "timer_delete", "times"},
	// identity and limits (the user namespace maps a single id)
	{"getuid", "geteuid", "getgid", "getegid", "getresuid", "getresgid", "getgroups",
		"setuid", "setgid", "setreuid", "setregid", "setresuid", "setresgid", "setfsuid", "setfsgid", "setgroups",
		"capget", "capset", "getrlimit", "setrlimit", "prlimit64", "getrusage",
		"uname", "sysinfo", "getrandom"},
	// asynchronous I/O of the old kind (io_uring is denied)
	{"io_setup", "io_destroy", "io_getevents", "io_pgetevents", "io_submit", "io_cancel"},
}

// denied are named so that a reviewer sees each decision; they would fail
// with ENOSYS anyway, not being allowed.
var denied = []struct {
	names []string
	why   string
}{
	{[]string{"keyctl", "add_key", "request_key"}, "kernel keyrings are not namespaced: no cell reads or plants keys"},
	{[]string{"bpf"}, "eBPF is kernel attack surface"},
	{[]string{"perf_event_open"}, "performance counters leak host activity and are kernel attack surface"},
	{[]string{"userfaultfd"}, "a classic tool to win kernel races"},
	{[]string{"io_uring_setup", "io_uring_enter", "io_uring_register"}, "io_uring bypasses syscall filtering and is kernel attack surface"},
	{[]string{"kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
		"create_module", "get_kernel_syms", "query_module"}, "kernel images and modules"},
	{[]string{"open_by_handle_at", "name_to_handle_at"}, "file handles open files outside the mount namespace"},
	{[]string{"mount", "umount2", "fsopen", "fsconfig", "fsmount", "fspick", "move_mount", "open_tree",
		"open_tree_attr", "mount_setattr", "pivot_root", "chroot", "statmount", "listmount"}, "the mount family: the sandbox's mounts are fixed"},
	{[]string{"unshare", "setns", "clone3", "listns"}, "no new namespaces and no entering others; clone3's flags cannot be checked, and ENOSYS makes libcs use clone"},
	{[]string{"ptrace", "process_vm_readv", "process_vm_writev", "process_madvise", "kcmp"}, "no tracing or reading other processes"},
	{[]string{"reboot", "swapon", "swapoff", "acct", "settimeofday", "clock_settime", "clock_adjtime", "adjtimex",
		"sethostname", "setdomainname", "iopl", "ioperm", "modify_ldt", "quotactl", "quotactl_fd", "nfsservctl",
		"syslog", "vhangup", "uselib", "ustat", "sysfs", "_sysctl", "lookup_dcookie", "fanotify_init", "fanotify_mark",
		"memfd_secret", "move_pages", "migrate_pages", "set_mempolicy_home_node", "remap_file_pages"}, "host administration and rarely used kernel surface"},
}

// Rules is the policy, in the order both renderings emit it.
func Rules() []Rule {
	var rs []Rule
	for _, group := range allowed {
		for _, n := range group {
			rs = append(rs, Rule{Syscall: n, Action: Allow})
		}
	}
	// Every ioctl request but TIOCSTI, which pushes input into a terminal,
	// and TIOCLINUX, which can paste into a virtual console.
	rs = append(rs, allowUnless("ioctl", 1, low32, unix.TIOCSTI, unix.TIOCLINUX)...)
	rs = append(rs,
		Rule{Syscall: "clone", Action: Allow,
			Args: []Arg{{Index: 0, Op: MaskedEqual, Mask: cloneNamespaceFlags, Value: 0}},
			Why:  "threads and processes, but no new namespaces"},
		Rule{Syscall: "personality", Action: Allow,
			Args: []Arg{{Index: 0, Op: Equal, Value: perLinux}}, Why: "plain Linux"},
		Rule{Syscall: "personality", Action: Allow,
			Args: []Arg{{Index: 0, Op: Equal, Value: perQuery}}, Why: "query the current value"},
	)
	for _, d := range denied {
		for _, n := range d.names {
			rs = append(rs, Rule{Syscall: n, Action: Deny, Why: d.why})
		}
	}
	return rs
}

// check validates the table's shape: every syscall known on this
// architecture, argument indexes in range, masked values inside their
// masks, and per syscall either one unconditional rule or only conditional
// allows.
func check(rs []Rule) error {
	uncond, cond := map[string]bool{}, map[string]bool{}
	for _, r := range rs {
		if _, ok := numbers[r.Syscall]; !ok {
			return fmt.Errorf("capsid: rule for %q: no such syscall on this architecture", r.Syscall)
		}
		for _, a := range r.Args {
			if a.Index < 0 || a.Index > 5 {
				return fmt.Errorf("capsid: rule for %q: argument index %d", r.Syscall, a.Index)
			}
			if a.Op == MaskedEqual && a.Value&^a.Mask != 0 {
				return fmt.Errorf("capsid: rule for %q: value %#x has bits outside mask %#x", r.Syscall, a.Value, a.Mask)
			}
		}
		switch {
		case len(r.Args) > 0 && r.Action != Allow:
			return fmt.Errorf("capsid: conditional deny of %q: spell it as allows of the other values", r.Syscall)
		case len(r.Args) > 0:
			cond[r.Syscall] = true
		case uncond[r.Syscall]:
			return fmt.Errorf("capsid: two unconditional rules for %q", r.Syscall)
		default:
			uncond[r.Syscall] = true
		}
		if cond[r.Syscall] && uncond[r.Syscall] {
			return fmt.Errorf("capsid: %q has both conditional and unconditional rules", r.Syscall)
		}
	}
	return nil
}

// allowUnless returns the rules allowing every call of name whose argument
// idx, under mask, is none of except: one masked comparison per subtree of
// the values' binary trie that holds no excluded value (a few dozen rules
// for two values in 32 bits, all allows).
func allowUnless(name string, idx int, mask uint64, except ...uint64) []Rule {
	var bits []uint // the mask's bits, most significant first
	for b := 63; b >= 0; b-- {
		if mask&(1<<uint(b)) != 0 {
			bits = append(bits, uint(b))
		}
	}
	var rs []Rule
	var walk func(depth int, prefixMask, prefix uint64, left []uint64)
	walk = func(depth int, prefixMask, prefix uint64, left []uint64) {
		if len(left) == 0 {
			rs = append(rs, Rule{Syscall: name, Action: Allow,
				Args: []Arg{{Index: idx, Op: MaskedEqual, Mask: prefixMask, Value: prefix}},
				Why:  fmt.Sprintf("all but %#x", except)})
			return
		}
		if depth == len(bits) {
			return // an excluded value itself
		}
		bit := uint64(1) << bits[depth]
		for _, side := range []uint64{0, bit} {
			var next []uint64
			for _, v := range left {
				if v&bit == side {
					next = append(next, v)
				}
			}
			walk(depth+1, prefixMask|bit, prefix|side, next)
		}
	}
	walk(0, 0, 0, except)
	return rs
}

// syscalls returns the syscall names of rs in first-seen order.
func syscalls(rs []Rule) []string {
	var names []string
	for _, r := range rs {
		if !slices.Contains(names, r.Syscall) {
			names = append(names, r.Syscall)
		}
	}
	return names
}
