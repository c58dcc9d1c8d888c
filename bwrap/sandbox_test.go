package bwrap_test

import (
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cellproject/cell/internal/linuxproc"

	"github.com/cellproject/cell/bwrap"
	"github.com/cellproject/cell/internal/cellspec"
	"github.com/cellproject/cell/internal/process"

	"github.com/cellproject/cell/internal/testutil"
)

// The test binary doubles as the test cell: with CELL_TEST_HELPER set it runs
// that helper instead of the tests. Inside the sandbox it must be static
// (build the tests with CGO_ENABLED=0); otherwise cellBinary builds a static
// copy.
func TestMain(m *testing.M) {
	if mode := os.Getenv("CELL_TEST_HELPER"); mode != "" {
		os.Exit(helper(mode))
	}
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// report is what the test cell finds out about its sandbox.
type report struct {
	Env       []string
	Hostname  string
	Pids      []int
	Self      int
	Root      []string
	CapEff    string
	ReadHome  string
	Dial      string
	WriteSelf string
	Writes    map[string]string
}

func errString(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}

func helper(mode string) int {
	switch mode {
	case "report":
		r := report{Env: os.Environ(), Self: os.Getpid(), Writes: map[string]string{}}
		r.Hostname, _ = os.Hostname()
		ents, _ := os.ReadDir("/proc")
		for _, e := range ents {
			if pid, err := strconv.Atoi(e.Name()); err == nil {
				r.Pids = append(r.Pids, pid)
			}
		}
		ents, _ = os.ReadDir("/")
		for _, e := range ents {
			r.Root = append(r.Root, e.Name())
		}
		if st, err := os.ReadFile("/proc/self/status"); err == nil {
			for _, l := range strings.Split(string(st), "\n") {
				if v, ok := strings.CutPrefix(l, "CapEff:"); ok {
					r.CapEff = strings.TrimSpace(v)
				}
			}
		}
		_, err := os.ReadFile(os.Getenv("TEST_HOME_FILE"))
		r.ReadHome = errString(err)
		c, err := net.DialTimeout("tcp", os.Getenv("TEST_TCP_ADDR"), 2*time.Second)
		if err == nil {
			c.Close()
		}
		r.Dial = errString(err)
		// Opening a running binary for writing fails anyway (ETXTBSY);
		// a chmod to its own mode needs a writable mount.
		self, _ := os.Executable()
		err = errors.New("no stat")
		if st, serr := os.Stat(self); serr == nil {
			err = os.Chmod(self, st.Mode())
		}
		r.WriteSelf = errString(err)
		for _, dir := range []string{"/", "/dev", "/proc", filepath.Dir(self), "/tmp", os.Getenv("CELL_RUNTIME_DIR")} {
			p := filepath.Join(dir, "cell-write-test")
			r.Writes[dir] = errString(os.WriteFile(p, []byte("x"), 0o600))
		}
		if err := json.NewEncoder(os.Stdout).Encode(r); err != nil {
			return 1
		}
		return 0
	case "term":
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM)
		fmt.Println("ready")
		<-sig
		fmt.Println("got SIGTERM")
		return 0
	case "sleep":
		fmt.Println("ready")
		time.Sleep(time.Hour)
	}
	return 2
}

// requireBwrap fails (never skips) the test when bwrap is missing.
func requireBwrap(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("bwrap")
	if err != nil {
		t.Fatalf("bwrap not installed: apt-get install bubblewrap (%v)", err)
	}
	return p
}

var (
	buildOnce sync.Once
	buildDir  string
	cellPath  string
	buildErr  error
)

// cellBinary returns a static build of this test binary: itself if it is
// static, else a CGO_ENABLED=0 rebuild.
func cellBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		self, err := os.Executable()
		if err != nil {
			buildErr = err
			return
		}
		f, err := elf.Open(self)
		if err != nil {
			buildErr = err
			return
		}
		static := true
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				static = false
			}
		}
		f.Close()
		if static {
			cellPath = self
			return
		}
		buildDir, err = os.MkdirTemp("", "bwrap-cell-")
		if err != nil {
			buildErr = err
			return
		}
		cellPath = filepath.Join(buildDir, "cell.test")
		cmd := exec.Command("go", "test", "-c", "-o", cellPath, ".")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("building a static test cell (or build the tests with CGO_ENABLED=0): %v: %s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return cellPath
}

func cellSpec(t *testing.T, mode string, out *testutil.SyncBuffer, extraEnv ...string) cellspec.Spec {
	t.Helper()
	session := t.TempDir()
	// The root's umbilical socket always exists before a cell launches;
	// the sandbox pins it read-only.
	ln, err := net.Listen("unix", filepath.Join(session, "umbilical.sock"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	env := append([]string{
		"CELL_TEST_HELPER=" + mode,
		"CELL_NAME=probe",
		"CELL_SESSION=s1",
		"CELL_RUNTIME_DIR=" + session,
		"CELL_UMBILICAL=" + filepath.Join(session, "umbilical.sock"),
		"CELL_TOKEN=not-a-secret",
	}, extraEnv...)
	return cellspec.Spec{
		Name:       "probe",
		Key:        "probe",
		Session:    "s1",
		SessionDir: session,
		Exec:       cellBinary(t),
		Backend:    cellspec.Bwrap,
		Env:        env,
		Output:     out,
	}
}

func launch(t *testing.T, spec cellspec.Spec) *process.Instance {
	t.Helper()
	in, err := bwrap.NewLauncher(requireBwrap(t)).Launch(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	testutil.KillAtEnd(t, in)
	return in
}

func TestProbe(t *testing.T) {
	requireBwrap(t)
	if err := bwrap.Probe(context.Background(), ""); err != nil {
		t.Fatalf("bwrap does not work here: %v", err)
	}
	err := bwrap.Probe(context.Background(), "/nonexistent/bwrap")
	if !errors.Is(err, bwrap.ErrNotInstalled) || !strings.Contains(err.Error(), "apt-get install bubblewrap") {
		t.Fatalf("probe of a missing bwrap: %v", err)
	}
}

// runReport runs the report cell and decodes what it found.
func runReport(t *testing.T, network bool) (cellspec.Spec, report) {
	t.Helper()
	home, err := os.UserHomeDir()
	if err != nil {
		t.Fatal(err)
	}
	homeFile, err := os.CreateTemp(home, ".cell-bwrap-test-")
	if err != nil {
		t.Fatal(err)
	}
	homeFile.WriteString("secret")
	homeFile.Close()
	t.Cleanup(func() { os.Remove(homeFile.Name()) })
	if _, err := os.ReadFile(homeFile.Name()); err != nil {
		t.Fatalf("control: the test cannot read its own file: %v", err)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()

	var out testutil.SyncBuffer
	spec := cellSpec(t, "report", &out, "TEST_HOME_FILE="+homeFile.Name(), "TEST_TCP_ADDR="+ln.Addr().String())
	spec.Network = network
	in := launch(t, spec)
	testutil.AwaitDone(t, in, 20*time.Second)
	if st := in.ExitStatus(); st != "exited 0" {
		t.Fatalf("cell: %s, output %q", st, out.String())
	}
	var r report
	if err := json.Unmarshal([]byte(out.String()), &r); err != nil {
		t.Fatalf("cell output %q: %v", out.String(), err)
	}
	return spec, r
}

func TestSandbox(t *testing.T) {
	spec, r := runReport(t, false)
	t.Logf("report: %+v", r)

	// bwrap always sets PWD to the sandbox's cwd, last; nothing else.
	if !slices.Equal(r.Env, append(slices.Clip(spec.Env), "PWD=/")) {
		t.Errorf("env = %q, want exactly %q and PWD=/", r.Env, spec.Env)
	}
	if r.Hostname != "cell" {
		t.Errorf("hostname %q", r.Hostname)
	}
	if r.CapEff != "0000000000000000" {
		t.Errorf("effective capabilities %q", r.CapEff)
	}
	if r.ReadHome == "ok" {
		t.Errorf("the cell read a file in $HOME")
	}
	if r.Dial == "ok" {
		t.Errorf("the cell reached a host TCP listener without network")
	}
	if !strings.Contains(r.WriteSelf, "read-only file system") {
		t.Errorf("the cell's binary is not read-only: chmod: %s", r.WriteSelf)
	}
	// A fresh pid namespace: bwrap's init and the cell, nothing of the host.
	if !slices.Contains(r.Pids, r.Self) || len(r.Pids) > 2 || slices.Contains(r.Pids, os.Getpid()) {
		t.Errorf("/proc shows pids %v (cell is %d)", r.Pids, r.Self)
	}
	// The root holds only the mount points and the parents of bound paths.
	allowed := []string{"dev", "proc", "tmp", first(spec.Exec), first(spec.SessionDir)}
	for _, name := range r.Root {
		if !slices.Contains(allowed, name) {
			t.Errorf("unexpected /%s in the sandbox root %v", name, r.Root)
		}
	}
	// The session dir is read-only: the root creates every file in it.
	writable := map[string]bool{"/tmp": true, filepath.Dir(spec.Exec): strings.HasPrefix(spec.Exec, "/tmp/")}
	for dir, res := range r.Writes {
		if writable[dir] && res != "ok" {
			t.Errorf("control: cannot write in %s: %s", dir, res)
		}
		if !writable[dir] && res == "ok" {
			t.Errorf("the cell wrote in %s", dir)
		}
	}
	if len(r.Writes) < 5 {
		t.Errorf("writes tried: %v", r.Writes)
	}
	// /tmp is private.
	if _, err := os.Stat("/tmp/cell-write-test"); err == nil {
		t.Errorf("the cell's /tmp is the host's")
	}
}

func first(p string) string {
	return strings.SplitN(strings.TrimPrefix(p, "/"), "/", 2)[0]
}

func TestSandboxWithNetwork(t *testing.T) {
	_, r := runReport(t, true)
	if r.Dial != "ok" {
		t.Errorf("control: with the network shared the cell cannot reach the host listener: %s", r.Dial)
	}
	if r.ReadHome == "ok" {
		t.Errorf("the cell read a file in $HOME")
	}
}

func TestStopReachesCell(t *testing.T) {
	var out testutil.SyncBuffer
	in := launch(t, cellSpec(t, "term", &out))
	testutil.WaitOutput(t, &out, "ready")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := in.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if st := in.ExitStatus(); st != "exited 0" || !strings.Contains(out.String(), "got SIGTERM") {
		t.Fatalf("status %q, output %q: SIGTERM did not reach the cell", st, out.String())
	}
}

// descendants lists pid's descendants from /proc.
func descendants(pid int) []int {
	parent := map[int]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, err := linuxproc.ReadStat(p); err == nil {
			parent[p] = st.PPid
		}
	}
	var out []int
	for p := range parent {
		for q := parent[p]; q > 1; q = parent[q] {
			if q == pid {
				out = append(out, p)
				break
			}
		}
	}
	return out
}

// TestDieWithParent SIGKILLs bwrap alone, outside the process lifecycle so
// that no group kill helps: the sandbox must go down with it.
func TestDieWithParent(t *testing.T) {
	bw := requireBwrap(t)
	var out testutil.SyncBuffer
	spec := cellSpec(t, "sleep", &out)
	cmd := exec.Command(bw, append(bwrap.Args(spec, bwrap.Options{}), "--", spec.Exec)...)
	cmd.Env = spec.Env
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); _ = cmd.Wait() }()
	testutil.WaitOutput(t, &out, "ready")
	inside := descendants(cmd.Process.Pid)
	if len(inside) < 2 {
		t.Fatalf("sandbox processes %v: want bwrap's init and the cell", inside)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	testutil.Gone(t, 5*time.Second, inside...)
}

// TestKillTakesSandboxDown is the same through the backend: Stop's SIGKILL.
func TestKillTakesSandboxDown(t *testing.T) {
	var out testutil.SyncBuffer
	in := launch(t, cellSpec(t, "sleep", &out))
	testutil.WaitOutput(t, &out, "ready")
	inside := descendants(in.Pid())
	if len(inside) < 2 {
		t.Fatalf("sandbox processes %v", inside)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := in.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if st := in.ExitStatus(); st != "signal killed" {
		t.Errorf("status %q", st)
	}
	testutil.Gone(t, 5*time.Second, inside...)
}

func TestLaunchRejectsBadSpec(t *testing.T) {
	spec := cellSpec(t, "sleep", nil)
	spec.Exec = "relative/cell"
	if _, err := bwrap.NewLauncher("").Launch(context.Background(), spec); !errors.Is(err, bwrap.ErrInvalidSpec) {
		t.Fatalf("launch of a relative exec: %v", err)
	}
}
