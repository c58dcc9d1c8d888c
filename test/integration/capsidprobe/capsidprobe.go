package capsidprobe

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Syscalls are the calls of the capsid's item 1, one probe each: every one
// must reach the kernel in the control and fail with the filter's ENOSYS in
// a sandbox.
var Syscalls = []string{
	"keyctl", "add_key", "request_key", "bpf", "perf_event_open", "userfaultfd",
	"io_uring_setup", "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
	"open_by_handle_at", "mount", "umount2", "fsopen", "fsmount", "move_mount", "open_tree",
	"unshare", "setns", "clone3", "ptrace", "personality", "ioctl_tiocsti", "ioctl_tiocsti_high",
	"ioctl_tioclinux", "i386_getpid",
}

// kernelMayLack are the calls a kernel built without modules or kexec has
// no entry for (ENOSYS with or without a filter).
var kernelMayLack = map[string]bool{"kexec_load": true, "kexec_file_load": true, "init_module": true,
	"finit_module": true, "delete_module": true}

// OwnerKey puts a key with a fresh secret into the test's session keyring,
// as the owner's login would; a root the test starts, and its process
// cells, inherit that keyring.
func OwnerKey(t *testing.T) (desc, secret string) {
	t.Helper()
	ring, err := unix.KeyctlGetKeyringID(unix.KEY_SPEC_SESSION_KEYRING, false)
	if err != nil {
		t.Fatalf("find the session keyring: %v", err)
	}
	desc, secret = fmt.Sprintf("cell-capsid-%d", os.Getpid()), fmt.Sprintf("secret-%d", time.Now().UnixNano())
	key, err := unix.AddKey("user", desc, []byte(secret), ring)
	if err != nil {
		t.Fatalf("add the owner's key: %v", err)
	}
	t.Cleanup(func() { unix.KeyctlInt(unix.KEYCTL_UNLINK, key, ring, 0, 0) })
	return desc, secret
}

// Probe runs the testcell's "capsid" method with arg on the named cell.
type Probe func(cell, arg string) string

// Options say what a run may forgive.
type Options struct {
	// KernelMayLack forgives a control ENOSYS for module and kexec calls
	// on a kernel built without them (this host's), logging that the
	// sandbox's answer proves nothing there. The VM lab's Debian kernel
	// has them: it runs strict.
	KernelMayLack bool
	// TmpBoundMiB is the size of a sandboxed cell's /tmp the fill must
	// stop at.
	TmpBoundMiB int
}

// Check runs every probe on control and on each sandbox, with the owner's
// key desc and secret from OwnerKey.
func Check(t *testing.T, probe Probe, control string, sandboxes []string, desc, secret string, o Options) {
	t.Helper()
	if got := probe(control, "seccomp"); got != "mode 0" {
		t.Errorf("control: %s, want no filter", got)
	}
	if got := probe(control, "keyring "+desc); got != "ok "+secret {
		t.Errorf("control: the owner's key read %q, want %q", got, "ok "+secret)
	}
	if got := probe(control, "userns"); got != "ok uid=0 mount=ok" {
		t.Errorf("control: nested user namespace: %q", got)
	}
	// The control writes 96 MiB to the host's /tmp.
	if got := probe(control, "tmpfill"); got != "ok wrote 96 MiB" {
		t.Errorf("control: /tmp fill: %q", got)
	}
	ctl := map[string]string{}
	for _, p := range Syscalls {
		got := probe(control, p)
		ctl[p] = got
		switch {
		case got == "errno ENOSYS" && o.KernelMayLack && kernelMayLack[p]:
			t.Logf("control %s: this kernel has no such call, so the sandbox's answer cannot tell the filter from the kernel here; internal/capsid's tests and the VM lab prove it", p)
		case got == "errno ENOSYS" || strings.HasPrefix(got, "error") || strings.HasPrefix(got, "killed") || got == "thread killed":
			t.Errorf("control %s: %q: the probe must reach the kernel where nothing filters", p, got)
		}
	}
	t.Logf("controls: %v", ctl)

	for _, sb := range sandboxes {
		if got := probe(sb, "seccomp"); got != "mode 2" {
			t.Errorf("%s: %s, want a seccomp filter (mode 2)", sb, got)
		}
		if got := probe(sb, "keyring "+desc); strings.Contains(got, secret) || !strings.HasPrefix(got, "errno") {
			t.Errorf("%s: the owner's key: %q", sb, got)
		}
		if got := probe(sb, "userns"); !strings.HasPrefix(got, "errno") {
			t.Errorf("%s: nested user namespace: %q", sb, got)
		}
		got := probe(sb, "tmpfill")
		var n int
		if _, err := fmt.Sscanf(got, "errno ENOSPC after %d MiB", &n); err != nil || n > o.TmpBoundMiB || n < o.TmpBoundMiB-1 {
			t.Errorf("%s: /tmp fill: %q, want ENOSPC at the %d MiB bound", sb, got, o.TmpBoundMiB)
		}
		for _, p := range Syscalls {
			got := probe(sb, p)
			if p == "i386_getpid" && foreignABIStopped(got) {
				t.Logf("%s: a foreign-ABI call: %s", sb, got)
				continue
			}
			if got != "errno ENOSYS" {
				t.Errorf("%s %s: %q, want ENOSYS from the filter (control: %q)", sb, p, got, ctl[p])
			}
		}
		// Kernels without the x32 ABI (Debian's) give no control; the
		// filter must still refuse it, as it refuses i386.
		if got := probe(sb, "x32_getpid"); got != "errno ENOSYS" && !foreignABIStopped(got) {
			t.Errorf("%s x32 getpid: %q", sb, got)
		}
	}
}

// foreignABIStopped: libseccomp's default for a foreign ABI (Podman's
// runtimes) kills instead of failing the call.
func foreignABIStopped(got string) bool {
	return got == "errno ENOSYS" || got == "killed bad system call" || got == "thread killed"
}

// EmitLine is what the testcell's "emit" probe writes, as the root must
// show it: escapes as text.
const EmitLine = `capsid-emit \x1b]0;owned\x07\r[root] forged`

// RawEmit reports whether the raw bytes of the emit probe reached out.
func RawEmit(out string) bool {
	return strings.Contains(out, "\x1b]0;owned") || strings.Contains(out, "\r[root]")
}
