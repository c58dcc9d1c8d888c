package main

// The capsid's probes (docs/capsid.md): each tries one thing the sandbox's
// layers must stop and reports what the kernel answered, so that the tests
// compare a sandboxed cell with a process-backend control.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// capsidChildEnv makes the binary run a probe's child instead of a cell.
const capsidChildEnv = "TESTCELL_CAPSID_CHILD"

func init() {
	switch os.Getenv(capsidChildEnv) {
	case "i386":
		runtime.LockOSThread()
		r := int64(int32(int80(20 /* i386 getpid */)))
		if r < 0 && r > -4096 {
			fmt.Println("errno " + unix.ErrnoName(syscall.Errno(-r)))
		} else {
			fmt.Println("ok " + strconv.FormatInt(r, 10))
		}
		os.Exit(0)
	case "x32":
		fmt.Println(raw(unix.SYS_GETPID | 0x40000000))
		os.Exit(0)
	case "userns":
		// In a new user and mount namespace: uid 0 there, with every
		// capability over the namespace; show it by mounting a tmpfs.
		err := unix.Mount("capsid", "/tmp", "tmpfs", 0, "size=1m")
		fmt.Printf("uid=%d mount=%s\n", os.Getuid(), errnoText(err))
		os.Exit(0)
	}
}

// child runs this binary as the named probe child and returns its report,
// or how it died: a filter may kill a call of a foreign ABI instead of
// failing it.
func child(name string, attr *syscall.SysProcAttr) string {
	self, err := os.Executable()
	if err != nil {
		return errnoText(err)
	}
	// A filter that kills only the calling thread (libseccomp's
	// KILL_THREAD) leaves a Go program waiting forever for that thread.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	c := exec.CommandContext(ctx, self)
	c.Env = []string{capsidChildEnv + "=" + name}
	c.SysProcAttr = attr
	out, err := c.Output()
	if ctx.Err() != nil {
		return "thread killed"
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return "killed " + ws.Signal().String()
		}
	}
	if err != nil {
		return errnoText(err)
	}
	return strings.TrimSpace(string(out))
}

func errnoText(err error) string {
	if err == nil {
		return "ok"
	}
	var e syscall.Errno
	if errors.As(err, &e) {
		return "errno " + unix.ErrnoName(e)
	}
	return "error " + err.Error()
}

func raw(nr uintptr, a ...uintptr) string {
	var args [6]uintptr
	copy(args[:], a)
	r, _, e := unix.Syscall6(nr, args[0], args[1], args[2], args[3], args[4], args[5])
	if e != 0 {
		return "errno " + unix.ErrnoName(e)
	}
	return "ok " + strconv.FormatUint(uint64(r), 10)
}

func str(s string) uintptr {
	p, _ := unix.BytePtrFromString(s)
	return uintptr(unsafe.Pointer(p))
}

// capsidProbe runs one probe; arg is the probe's name, then, after a space,
// its parameter where it has one.
func capsidProbe(arg string) ([]byte, error) {
	name, param, _ := strings.Cut(arg, " ")
	return []byte(probe(name, param)), nil
}

func probe(name, param string) string {
	devnull, _ := os.Open("/dev/null")
	defer devnull.Close()
	var b [1]byte
	switch name {
	case "seccomp":
		return seccompMode()
	case "keyring":
		// The owner's key, by its description, as a thief would look.
		id, err := unix.KeyctlSearch(unix.KEY_SPEC_SESSION_KEYRING, "user", param, 0)
		if err != nil {
			return errnoText(err)
		}
		buf := make([]byte, 256)
		n, err := unix.KeyctlBuffer(unix.KEYCTL_READ, id, buf, 0)
		if err != nil {
			return errnoText(err)
		}
		return "ok " + string(buf[:n])
	case "userns":
		r := child("userns", &syscall.SysProcAttr{
			Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS,
			UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
			GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
		})
		if strings.HasPrefix(r, "uid=") {
			return "ok " + r
		}
		return r
	case "tmpfill":
		return fillTmp()
	case "tmpsize":
		var st unix.Statfs_t
		if err := unix.Statfs("/tmp", &st); err != nil {
			return errnoText(err)
		}
		return fmt.Sprintf("size %d MiB", uint64(st.Blocks)*uint64(st.Bsize)>>20)
	case "emit":
		// Escape sequences and a carriage return for the owner's terminal:
		// a window title, and a line made to look like the root's.
		fmt.Print("capsid-emit \x1b]0;owned\x07\r[root] forged\n")
		return "ok"
	case "keyctl":
		return raw(unix.SYS_KEYCTL, unix.KEYCTL_GET_KEYRING_ID, uintptr(0xfffffffd) /* @s */, 0)
	case "add_key":
		// Into the thread keyring: the control must not litter the owner's.
		return raw(unix.SYS_ADD_KEY, str("user"), str("capsid-probe"), str("x"), 1, uintptr(0xffffffff) /* @t */)
	case "request_key":
		return raw(unix.SYS_REQUEST_KEY, str("user"), str("capsid-no-such-key"), 0, 0)
	case "bpf":
		return raw(unix.SYS_BPF, 0 /* BPF_MAP_CREATE */, 0, 0)
	case "perf_event_open":
		return raw(unix.SYS_PERF_EVENT_OPEN, 0, 0, ^uintptr(0), ^uintptr(0), 0)
	case "userfaultfd":
		return closeFD(raw(unix.SYS_USERFAULTFD, unix.O_CLOEXEC|1 /* UFFD_USER_MODE_ONLY */))
	case "io_uring_setup":
		var params [120]byte
		return closeFD(raw(unix.SYS_IO_URING_SETUP, 1, uintptr(unsafe.Pointer(&params[0]))))
	case "kexec_load":
		return raw(unix.SYS_KEXEC_LOAD, 0, 0, 0, 0)
	case "kexec_file_load":
		return raw(unix.SYS_KEXEC_FILE_LOAD, ^uintptr(0), ^uintptr(0), 0, 0, 0)
	case "init_module":
		return raw(unix.SYS_INIT_MODULE, 0, 0, str(""))
	case "finit_module":
		return raw(unix.SYS_FINIT_MODULE, devnull.Fd(), str(""), 0)
	case "delete_module":
		return raw(unix.SYS_DELETE_MODULE, str("capsid_no_such_module"), 0)
	case "open_by_handle_at":
		return raw(unix.SYS_OPEN_BY_HANDLE_AT, ^uintptr(0) /* -1 */, 0, 0)
	case "mount":
		return raw(unix.SYS_MOUNT, str("none"), str("/tmp"), str("tmpfs"), 0, 0)
	case "umount2":
		return raw(unix.SYS_UMOUNT2, str("/proc"), 0)
	case "fsopen":
		return closeFD(raw(unix.SYS_FSOPEN, str("tmpfs"), 0))
	case "fsmount":
		return raw(unix.SYS_FSMOUNT, devnull.Fd(), 0, 0)
	case "move_mount":
		return raw(unix.SYS_MOVE_MOUNT, devnull.Fd(), str(""), ^uintptr(0), str("/tmp"), 0)
	case "open_tree":
		return closeFD(raw(unix.SYS_OPEN_TREE, ^uintptr(99) /* AT_FDCWD */, str("/"), 1 /* OPEN_TREE_CLONE */))
	case "unshare":
		return raw(unix.SYS_UNSHARE, unix.CLONE_NEWUSER)
	case "setns":
		return raw(unix.SYS_SETNS, devnull.Fd(), unix.CLONE_NEWUSER)
	case "clone3":
		return raw(unix.SYS_CLONE3, 0, 0)
	case "ptrace":
		return raw(unix.SYS_PTRACE, unix.PTRACE_PEEKDATA, uintptr(os.Getpid()), 0, 0)
	case "personality":
		// Turning ASLR off for whatever the cell runs next; put it back.
		r := raw(unix.SYS_PERSONALITY, 0x0040000 /* ADDR_NO_RANDOMIZE */)
		unix.Syscall(unix.SYS_PERSONALITY, 0, 0, 0)
		return r
	case "ioctl_tiocsti":
		// /dev/null is no terminal: a kernel that ran the call says ENOTTY.
		return raw(unix.SYS_IOCTL, devnull.Fd(), unix.TIOCSTI, uintptr(unsafe.Pointer(&b[0])))
	case "ioctl_tiocsti_high":
		// The same request with the upper half set, which the kernel drops.
		return raw(unix.SYS_IOCTL, devnull.Fd(), 0xffffffff00000000|unix.TIOCSTI, uintptr(unsafe.Pointer(&b[0])))
	case "ioctl_tioclinux":
		return raw(unix.SYS_IOCTL, devnull.Fd(), unix.TIOCLINUX, uintptr(unsafe.Pointer(&b[0])))
	case "i386_getpid":
		return child("i386", nil)
	case "x32_getpid":
		return child("x32", nil)
	}
	return "error unknown probe " + name
}

// closeFD closes the descriptor a successful probe returned.
func closeFD(r string) string {
	if fd, ok := strings.CutPrefix(r, "ok "); ok {
		if n, err := strconv.Atoi(fd); err == nil {
			unix.Close(n)
		}
		return "ok"
	}
	return r
}

// seccompMode is the Seccomp field of /proc/self/status: 0 none, 2 filter.
func seccompMode() string {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return errnoText(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "Seccomp:"); ok {
			return "mode " + strings.TrimSpace(v)
		}
	}
	return "error no Seccomp field"
}

// fillTmp writes up to 96 MiB into /tmp and reports how far it got, then
// removes the file.
func fillTmp() string {
	f, err := os.CreateTemp("/tmp", "capsid-fill-")
	if err != nil {
		return errnoText(err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	chunk := make([]byte, 1<<20)
	for i := 0; i < 96; i++ {
		if _, err := f.Write(chunk); err != nil {
			return fmt.Sprintf("%s after %d MiB", errnoText(err), i)
		}
	}
	return "ok wrote 96 MiB"
}
