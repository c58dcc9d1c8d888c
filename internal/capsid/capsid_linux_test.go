package capsid

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	rspec "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// The test binary re-runs itself as a child that installs a filter and
// tries calls under it: the kernel runs the program, nothing reads it back.
const helperEnv = "CAPSID_TEST_HELPER"

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "vectors":
		os.Exit(runVectors())
	case "filtered", "unfiltered":
		os.Exit(runProbes(os.Getenv(helperEnv) == "filtered"))
	}
	os.Exit(m.Run())
}

// install loads p for every thread of this process.
func install(p *Program) error {
	runtime.LockOSThread()
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("no_new_privs: %w", err)
	}
	raw := p.Bytes()
	prog := unix.SockFprog{Len: uint16(p.Len()), Filter: (*unix.SockFilter)(unsafe.Pointer(&raw[0]))}
	_, _, e := unix.Syscall(unix.SYS_SECCOMP, 1 /* SECCOMP_SET_MODE_FILTER */, 1 /* SECCOMP_FILTER_FLAG_TSYNC */, uintptr(unsafe.Pointer(&prog)))
	runtime.KeepAlive(raw)
	if e != 0 {
		return fmt.Errorf("seccomp: %w", e)
	}
	return nil
}

// A vector is one call: its number and first five arguments. The sixth
// carries magic, so that the test filter decides it without running it.
type vector struct {
	Nr   uint64
	Args [5]uint64
	// Want is the action the OCI profile gives it; Why names the rule.
	Want Action
	Why  string
}

const (
	magic     = 0x5ca1ab1e0dd5eed5
	allowMark = 4000 // errno the test filter returns for an allowed call
)

// testProgram is the policy with one change: calls whose sixth argument is
// magic return allowMark where the real filter would run them; every other
// call is allowed, so the Go runtime of the child keeps working.
func testProgram(t testing.TB) *Program {
	prefix := []bpf.Instruction{
		bpf.LoadAbsolute{Off: offArgs + 8*5, Size: 4},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(magic & 0xffffffff), SkipFalse: 2},
		bpf.LoadAbsolute{Off: offArgs + 8*5 + 4, Size: 4},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(magic >> 32), SkipTrue: 1},
		bpf.RetConstant{Val: retAllow},
	}
	p, err := compile(Rules(), retErrno|allowMark, prefix)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func runVectors() int {
	var vs []vector
	{
		b, _ := os.ReadFile(os.Getenv("CAPSID_VECTORS_FILE"))
		if err := json.Unmarshal(b, &vs); err != nil {
			fmt.Println("bad vectors:", err)
			return 2
		}
	}
	p := testProgram(nil)
	if err := install(p); err != nil {
		fmt.Println(err)
		return 2
	}
	got := make([]int, len(vs))
	for i, v := range vs {
		_, _, e := unix.RawSyscall6(uintptr(v.Nr), uintptr(v.Args[0]), uintptr(v.Args[1]), uintptr(v.Args[2]),
			uintptr(v.Args[3]), uintptr(v.Args[4]), magic)
		got[i] = int(e)
	}
	json.NewEncoder(os.Stdout).Encode(got)
	return 0
}

// ociDecide is what a runtime applying profile p does with a call, read
// from the profile alone: the conditional entries of the syscall in order,
// the first whose comparisons all hold deciding; else its unconditional
// entry; else the default.
func ociDecide(p *rspec.LinuxSeccomp, name string, args [5]uint64) (Action, string) {
	act := func(s rspec.LinuxSyscall) Action {
		if s.Action == rspec.ActAllow {
			return Allow
		}
		return Deny
	}
	var uncond *rspec.LinuxSyscall
	for i, s := range p.Syscalls {
		if !slicesContains(s.Names, name) {
			continue
		}
		if len(s.Args) == 0 {
			uncond = &p.Syscalls[i]
			continue
		}
		all := true
		for _, c := range s.Args {
			v := args[c.Index]
			switch c.Op {
			case rspec.OpEqualTo:
				all = all && v == c.Value
			case rspec.OpMaskedEqual:
				all = all && v&c.Value == c.ValueTwo
			default:
				all = false
			}
		}
		if all {
			return act(s), fmt.Sprintf("%s %v", name, s.Args)
		}
	}
	if uncond != nil {
		return act(*uncond), name + " unconditional"
	}
	return Deny, "default"
}

func slicesContains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// vectorsFor builds calls that hit every entry of p and just miss every
// conditional one, plus every syscall number the profile does not name.
func vectorsFor(p *rspec.LinuxSeccomp, rnd *rand.Rand) []vector {
	names := map[uint64]string{}
	for n, nr := range numbers {
		names[uint64(nr)] = n
	}
	random := func() (a [5]uint64) {
		for i := range a {
			a[i] = rnd.Uint64() >> uint(rnd.Intn(64))
		}
		return a
	}
	var vs []vector
	add := func(name string, args [5]uint64) {
		want, why := ociDecide(p, name, args)
		vs = append(vs, vector{Nr: uint64(numbers[name]), Args: args, Want: want, Why: why})
	}
	named := map[string]bool{}
	for _, s := range p.Syscalls {
		name := s.Names[0]
		named[name] = true
		args := random()
		for _, c := range s.Args {
			switch c.Op {
			case rspec.OpEqualTo:
				args[c.Index] = c.Value
			case rspec.OpMaskedEqual:
				args[c.Index] = c.ValueTwo | (rnd.Uint64() &^ c.Value)
			}
		}
		add(name, args)
		for _, c := range s.Args {
			miss := args
			switch c.Op {
			case rspec.OpEqualTo:
				miss[c.Index] ^= 1 << uint(rnd.Intn(64))
			case rspec.OpMaskedEqual:
				// Flip one bit inside the mask: every bit counts.
				for bit := uint(0); bit < 64; bit++ {
					if c.Value&(1<<bit) != 0 {
						m := miss
						m[c.Index] ^= 1 << bit
						add(name, m)
					}
				}
				continue
			}
			add(name, miss)
		}
	}
	for n := range numbers {
		// The kernel runs uprobe and uretprobe before any filter (they
		// must work under seccomp) and signals a caller that is not its
		// trampoline.
		if !named[n] && n != "uprobe" && n != "uretprobe" {
			add(n, random())
		}
	}
	return vs
}

// TestRenderingsAgree renders the policy both ways and checks, by running
// the BPF program in the kernel, that it decides every call as the OCI
// profile says: each rule, each near miss of a conditional rule, and every
// syscall the policy does not name. The profile goes through JSON first, as
// it does on its way to Podman.
func TestRenderingsAgree(t *testing.T) {
	prof, err := Profile()
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(prof)
	if err != nil {
		t.Fatal(err)
	}
	var back rspec.LinuxSeccomp
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.DefaultAction != rspec.ActErrno || back.DefaultErrnoRet == nil || *back.DefaultErrnoRet != uint(unix.ENOSYS) {
		t.Fatalf("default: %s %v, want ENOSYS", back.DefaultAction, back.DefaultErrnoRet)
	}
	if len(back.Architectures) != 1 || back.Architectures[0] != rspec.ArchX86_64 {
		t.Fatalf("architectures %v, want only the native one", back.Architectures)
	}
	if len(back.Syscalls) != len(Rules()) {
		t.Fatalf("profile has %d entries, the table %d rules", len(back.Syscalls), len(Rules()))
	}
	vs := vectorsFor(&back, rand.New(rand.NewSource(time.Now().UnixNano())))
	// The ABI checks: x32 numbers of allowed calls, and a number past
	// every syscall.
	vs = append(vs,
		vector{Nr: uint64(numbers["getpid"]) | x32SyscallBit, Want: Deny, Why: "x32 getpid"},
		vector{Nr: uint64(numbers["read"]) | x32SyscallBit, Want: Deny, Why: "x32 read"},
		vector{Nr: 1 << 20, Want: Deny, Why: "unknown number"})
	got := runVectorChild(t, vs)
	allowedN, deniedN := 0, 0
	for i, v := range vs {
		want := int(unix.ENOSYS)
		if v.Want == Allow {
			want = allowMark
			allowedN++
		} else {
			deniedN++
		}
		if got[i] != want {
			t.Errorf("call %d (%s) args %#x: the filter returned errno %d, the profile says %s", v.Nr, v.Why, v.Args, got[i], v.Want)
		}
	}
	t.Logf("%d calls agree: %d allowed, %d denied", len(vs), allowedN, deniedN)
}

func runVectorChild(t *testing.T, vs []vector) []int {
	f := t.TempDir() + "/vectors.json"
	b, _ := json.Marshal(vs)
	if err := os.WriteFile(f, b, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=vectors", "CAPSID_VECTORS_FILE="+f)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helper: %v: %s", err, out)
	}
	var got []int
	if err := json.Unmarshal(out, &got); err != nil || len(got) != len(vs) {
		t.Fatalf("helper output %q: %v", out, err)
	}
	return got
}

// probes are calls the filter must refuse, each as the real program sees
// them, and calls it must let through. An empty result means success.
func runProbes(filtered bool) int {
	if filtered {
		p, err := Compile()
		if err != nil {
			fmt.Println("compile:", err)
			return 2
		}
		if err := install(p); err != nil {
			fmt.Println(err)
			return 2
		}
	}
	res := func(e error) string {
		if e == nil {
			return "ok"
		}
		var en syscall.Errno
		if errors.As(e, &en) {
			return unix.ErrnoName(en)
		}
		return e.Error()
	}
	raw := func(nr uintptr, a ...uintptr) string {
		var args [6]uintptr
		copy(args[:], a)
		_, _, e := unix.Syscall6(nr, args[0], args[1], args[2], args[3], args[4], args[5])
		if e != 0 {
			return unix.ErrnoName(e)
		}
		return "ok"
	}
	var c [1]byte
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	say := func(name, r string) { fmt.Fprintf(out, "%s %s\n", name, r) }

	// Must work under the filter: the Go runtime, the fast path's calls, a
	// glibc program through fork and exec.
	done := make(chan struct{})
	go func() { time.Sleep(time.Millisecond); close(done) }()
	<-done
	say("goroutines", "ok")
	fd, err := unix.MemfdCreate("capsid", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	say("memfd_create", res(err))
	if err == nil {
		say("ftruncate", res(unix.Ftruncate(fd, 4096)))
		mem, err := unix.Mmap(fd, 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
		say("mmap", res(err))
		if err == nil {
			say("futex", raw(unix.SYS_FUTEX, uintptr(unsafe.Pointer(&mem[0])), 1 /* FUTEX_WAKE */, 1))
		}
	}
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
	say("eventfd", res(err))
	if err == nil {
		_, err = unix.Write(efd, []byte{1, 0, 0, 0, 0, 0, 0, 0})
		say("eventfd_write", res(err))
	}
	say("exec_true", res(exec.Command("/bin/true").Run()))
	say("personality_query", raw(unix.SYS_PERSONALITY, perQuery))
	say("ioctl_fionread", raw(unix.SYS_IOCTL, 0, unix.TIOCINQ, uintptr(unsafe.Pointer(&c[0]))))

	// Must be refused.
	say("keyctl", raw(unix.SYS_KEYCTL, unix.KEYCTL_GET_KEYRING_ID, uintptr(0xfffffffd) /* @s as int32 */, 0))
	say("unshare_user", raw(unix.SYS_UNSHARE, unix.CLONE_NEWUSER))
	ns := exec.Command("/bin/true")
	ns.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUSER}
	say("clone_newuser", res(ns.Run()))
	say("personality_no_aslr", raw(unix.SYS_PERSONALITY, 0x0040000 /* ADDR_NO_RANDOMIZE */))
	// stdin is a pipe or /dev/null: the kernel's answer is ENOTTY.
	say("ioctl_tiocsti", raw(unix.SYS_IOCTL, 0, unix.TIOCSTI, uintptr(unsafe.Pointer(&c[0]))))
	say("ioctl_tiocsti_high", raw(unix.SYS_IOCTL, 0, 0xffffffff00000000|unix.TIOCSTI, uintptr(unsafe.Pointer(&c[0]))))
	say("io_uring_setup", raw(unix.SYS_IO_URING_SETUP, 1, 0))
	say("clone3", raw(unix.SYS_CLONE3, 0, 0))
	say("mount", raw(unix.SYS_MOUNT, 0, 0, 0, 0, 0))
	say("x32_getpid", raw(unix.SYS_GETPID|x32SyscallBit))
	return 0
}

func probeResults(t *testing.T, mode string) map[string]string {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+mode)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helper %s: %v: %s", mode, err, out)
	}
	m := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		k, v, _ := strings.Cut(l, " ")
		m[k] = v
	}
	return m
}

// TestFilterInKernel installs the real program in a child: the Go runtime,
// a glibc program it execs and the shared-memory fast path keep working,
// and each forbidden call fails with ENOSYS, while without the filter (the
// control) the same call reaches the kernel.
func TestFilterInKernel(t *testing.T) {
	with, without := probeResults(t, "filtered"), probeResults(t, "unfiltered")
	for _, k := range []string{"goroutines", "memfd_create", "ftruncate", "mmap", "futex", "eventfd", "eventfd_write",
		"exec_true", "personality_query", "ioctl_fionread"} {
		if with[k] != without[k] || (with[k] != "ok" && k != "ioctl_fionread") {
			t.Errorf("%s: %q under the filter, %q without", k, with[k], without[k])
		}
	}
	for _, k := range []string{"keyctl", "unshare_user", "clone_newuser", "personality_no_aslr", "ioctl_tiocsti",
		"ioctl_tiocsti_high", "io_uring_setup", "clone3", "mount"} {
		if without[k] == "" || without[k] == "ENOSYS" {
			t.Errorf("control %s: %q: the call must reach the kernel without the filter", k, without[k])
		}
		if with[k] != "ENOSYS" {
			t.Errorf("%s under the filter: %q, want ENOSYS", k, with[k])
		}
	}
	if with["x32_getpid"] != "ENOSYS" {
		t.Errorf("x32 getpid under the filter: %q", with["x32_getpid"])
	}
	t.Logf("with filter: %v", with)
	t.Logf("without: %v", without)
}

func TestTableNamesTheForbidden(t *testing.T) {
	forbidden := []string{"keyctl", "add_key", "request_key", "bpf", "perf_event_open", "userfaultfd",
		"io_uring_setup", "io_uring_enter", "io_uring_register", "kexec_load", "kexec_file_load",
		"init_module", "finit_module", "delete_module", "open_by_handle_at", "mount", "umount2", "fsopen",
		"fsmount", "move_mount", "open_tree", "fspick", "fsconfig", "mount_setattr", "unshare", "setns",
		"clone3", "ptrace"}
	for _, r := range Rules() {
		for _, f := range forbidden {
			if r.Syscall == f && r.Action == Allow {
				t.Errorf("%s is allowed", f)
			}
		}
		if r.Syscall == "clone" && (len(r.Args) == 0 || r.Args[0].Mask&unix.CLONE_NEWUSER == 0) {
			t.Errorf("clone allowed without the namespace check: %+v", r)
		}
	}
	if err := check(Rules()); err != nil {
		t.Fatal(err)
	}
}

// allowUnless covers every value but the excluded ones, checked on values
// near and far from them, with and without upper bits the mask ignores.
func TestAllowUnless(t *testing.T) {
	rs := allowUnless("ioctl", 1, low32, unix.TIOCSTI, unix.TIOCLINUX)
	allowed := func(v uint64) bool {
		for _, r := range rs {
			if v&r.Args[0].Mask == r.Args[0].Value {
				return true
			}
		}
		return false
	}
	for _, v := range []uint64{unix.TIOCSTI, unix.TIOCLINUX, 0xffffffff00000000 | unix.TIOCSTI, 1<<40 | unix.TIOCLINUX} {
		if allowed(v) {
			t.Errorf("%#x allowed", v)
		}
	}
	rnd := rand.New(rand.NewSource(1))
	for i := 0; i < 100000; i++ {
		v := rnd.Uint64() >> uint(rnd.Intn(64))
		if i%2 == 0 {
			v = unix.TIOCSTI ^ 1<<uint(rnd.Intn(32))
		}
		if low := v & low32; low != unix.TIOCSTI && low != unix.TIOCLINUX && !allowed(v) {
			t.Fatalf("%#x denied", v)
		}
	}
	t.Logf("%d rules", len(rs))
}

func TestCheckRejectsBadTables(t *testing.T) {
	for _, rs := range [][]Rule{
		{{Syscall: "nosuchcall", Action: Allow}},
		{{Syscall: "read", Action: Allow}, {Syscall: "read", Action: Deny}},
		{{Syscall: "ioctl", Action: Deny, Args: []Arg{{Index: 1, Value: 1}}}, {Syscall: "ioctl", Action: Allow}},
		{{Syscall: "ioctl", Action: Allow}, {Syscall: "ioctl", Action: Allow, Args: []Arg{{Index: 1, Value: 2}}}},
		{{Syscall: "ioctl", Action: Deny, Args: []Arg{{Index: 1, Value: 1}}}},
		{{Syscall: "ioctl", Action: Allow, Args: []Arg{{Index: 6, Value: 1}}}},
		{{Syscall: "ioctl", Action: Allow, Args: []Arg{{Index: 1, Op: MaskedEqual, Mask: 1, Value: 2}}}},
	} {
		if err := check(rs); err == nil {
			t.Errorf("check accepted %+v", rs)
		}
	}
}
