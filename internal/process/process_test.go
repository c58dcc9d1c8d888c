package process_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cellproject/cell/internal/cellspec"
	"github.com/cellproject/cell/internal/process"

	"github.com/cellproject/cell/internal/testutil"
)

// The test binary doubles as the cell: with GO_WANT_HELPER_PROCESS=1 it runs
// the helper named by HELPER_MODE instead of the tests.
func TestMain(m *testing.M) {
	if os.Getenv("GO_WANT_HELPER_PROCESS") == "1" {
		os.Exit(helper(os.Getenv("HELPER_MODE")))
	}
	os.Exit(m.Run())
}

func helper(mode string) int {
	switch mode {
	case "env":
		wd, _ := os.Getwd()
		fmt.Printf("cwd=%s\n", wd)
		n, err := os.Stdin.Read(make([]byte, 1))
		fmt.Printf("stdin=%d,%v\n", n, err)
		for _, kv := range os.Environ() {
			fmt.Printf("env=%s\n", kv)
		}
		return 0
	case "keyring":
		fmt.Println(readTestKey())
		return 0
	case "exit3":
		return 3
	case "sleep":
		fmt.Println("ready")
		time.Sleep(time.Hour)
	case "ignoreterm":
		signal.Ignore(syscall.SIGTERM)
		fmt.Println("ready")
		time.Sleep(time.Hour)
	case "grandchild", "grandchild-exit":
		self, _ := os.Executable()
		c := exec.Command(self)
		c.Env = append(os.Environ(), "HELPER_MODE=sleep")
		if err := c.Start(); err != nil {
			fmt.Println("error", err)
			return 1
		}
		fmt.Printf("grandchild %d\n", c.Process.Pid)
		if mode == "grandchild-exit" {
			// Leave the grandchild behind in our group.
			time.Sleep(200 * time.Millisecond)
			return 0
		}
		fmt.Println("ready")
		time.Sleep(time.Hour)
	case "parent":
		// Launch from a goroutine whose thread dies right after: the
		// child must survive that, and die only with this process.
		self, _ := os.Executable()
		res := make(chan string)
		go func() {
			runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
			in, err := process.NewLauncher().Launch(context.Background(), cellspec.Spec{
				Key:  "child",
				Exec: self,
				Env:  []string{"GO_WANT_HELPER_PROCESS=1", "HELPER_MODE=sleep"},
			})
			if err != nil {
				res <- "error " + err.Error()
				return
			}
			res <- "child " + in.ID()
		}()
		fmt.Println(<-res)
		time.Sleep(time.Hour)
	}
	return 2
}

func helperSpec(t *testing.T, mode string, out io.Writer) cellspec.Spec {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return cellspec.Spec{
		Name:    "helper",
		Key:     "helper",
		Exec:    self,
		Backend: cellspec.Process,
		Env:     []string{"GO_WANT_HELPER_PROCESS=1", "HELPER_MODE=" + mode, "CELL_NAME=helper"},
		Output:  out,
	}
}

// launch starts a helper and stops it by force when the test ends.
func launch(t *testing.T, mode string, out io.Writer) *process.Instance {
	t.Helper()
	in, err := process.NewLauncher().Launch(context.Background(), helperSpec(t, mode, out))
	if err != nil {
		t.Fatal(err)
	}
	testutil.KillAtEnd(t, in)
	return in
}

func TestEnvIsExactlySpecEnv(t *testing.T) {
	var out testutil.SyncBuffer
	spec := helperSpec(t, "env", &out)
	t.Setenv("CELL_LEAK_CHECK", "must-not-be-seen")
	in, err := process.NewLauncher().Launch(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	testutil.AwaitDone(t, in, 10*time.Second)
	if got := in.ExitStatus(); got != "exited 0" {
		t.Fatalf("status %q, output %q", got, out.String())
	}
	var env []string
	sc := bufio.NewScanner(strings.NewReader(out.String()))
	lines := map[string]bool{}
	for sc.Scan() {
		if kv, ok := strings.CutPrefix(sc.Text(), "env="); ok {
			env = append(env, kv)
		}
		lines[sc.Text()] = true
	}
	if strings.Join(env, "\n") != strings.Join(spec.Env, "\n") {
		t.Errorf("env = %q, want exactly %q", env, spec.Env)
	}
	if !lines["cwd=/"] {
		t.Errorf("cwd is not /: %q", out.String())
	}
	if !lines["stdin=0,EOF"] {
		t.Errorf("stdin is not /dev/null: %q", out.String())
	}
}

func TestExitStatus(t *testing.T) {
	in := launch(t, "exit3", nil)
	testutil.AwaitDone(t, in, 10*time.Second)
	if got := in.ExitStatus(); got != "exited 3" {
		t.Fatalf("status %q, want exited 3", got)
	}
	if in.ID() != strconv.Itoa(in.Pid()) {
		t.Fatalf("ID %q, pid %d", in.ID(), in.Pid())
	}
}

func TestLaunchFailures(t *testing.T) {
	b := process.NewLauncher()
	spec := helperSpec(t, "sleep", nil)

	missing := spec
	missing.Exec = "/nonexistent/cell"
	if _, err := b.Launch(context.Background(), missing); err == nil {
		t.Error("launch of a missing binary succeeded")
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := b.Launch(ctx, spec); !errors.Is(err, context.Canceled) {
		t.Errorf("launch with a cancelled ctx: %v, want context.Canceled", err)
	}
}

func TestStopGraceful(t *testing.T) {
	var out testutil.SyncBuffer
	in := launch(t, "sleep", &out)
	testutil.WaitOutput(t, &out, "ready")
	if err := in.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := in.ExitStatus(); got != "signal terminated" {
		t.Fatalf("status %q, want signal terminated", got)
	}
}

func TestStopKillsWhenTermIgnored(t *testing.T) {
	var out testutil.SyncBuffer
	in := launch(t, "ignoreterm", &out)
	testutil.WaitOutput(t, &out, "ready")
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := in.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Errorf("stopped after %v: SIGKILL came before ctx ended", d)
	}
	if got := in.ExitStatus(); got != "signal killed" {
		t.Fatalf("status %q, want signal killed", got)
	}
}

func grandchildPid(t *testing.T, out *testutil.SyncBuffer) int {
	t.Helper()
	testutil.WaitOutput(t, out, "grandchild ")
	s := out.String()
	s = s[strings.Index(s, "grandchild ")+len("grandchild "):]
	pid, err := strconv.Atoi(strings.Fields(s)[0])
	if err != nil {
		t.Fatalf("bad output %q", out.String())
	}
	return pid
}

func TestStopKillsGrandchildren(t *testing.T) {
	var out testutil.SyncBuffer
	in := launch(t, "grandchild", &out)
	gc := grandchildPid(t, &out)
	testutil.WaitOutput(t, &out, "ready")
	if !testutil.Alive(gc) {
		t.Fatalf("grandchild %d not running", gc)
	}
	if err := in.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	testutil.Gone(t, 5*time.Second, gc)
}

func TestLeftoversDieWithLeader(t *testing.T) {
	var out testutil.SyncBuffer
	in := launch(t, "grandchild-exit", &out)
	gc := grandchildPid(t, &out)
	testutil.AwaitDone(t, in, 10*time.Second)
	if got := in.ExitStatus(); got != "exited 0" {
		t.Fatalf("status %q", got)
	}
	testutil.Gone(t, 5*time.Second, gc)
}

func TestStopManyTimesConcurrently(t *testing.T) {
	var out testutil.SyncBuffer
	in := launch(t, "ignoreterm", &out)
	testutil.WaitOutput(t, &out, "ready")
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), time.Duration(i*20)*time.Millisecond)
			defer cancel()
			errs <- in.Stop(ctx)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	select {
	case <-in.Done():
	default:
		t.Fatal("Stop returned before the reap")
	}
	// After the exit, Stop returns at once and signals nothing.
	start := time.Now()
	if err := in.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Stop after exit took %v", d)
	}
	if got := in.ExitStatus(); got != "signal killed" {
		t.Fatalf("status %q", got)
	}
}

// TestChildDiesWithLauncher SIGKILLs a process that launched a cell (as a
// crashed cellroot would be) and looks in /proc for the cell.
func TestChildDiesWithLauncher(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	parent := exec.Command(self)
	parent.Env = []string{"GO_WANT_HELPER_PROCESS=1", "HELPER_MODE=parent"}
	stdout, err := parent.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := parent.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = parent.Process.Kill(); _ = parent.Wait() }()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("parent helper: %v", err)
	}
	pidStr, ok := strings.CutPrefix(strings.TrimSpace(line), "child ")
	if !ok {
		t.Fatalf("parent helper said %q", line)
	}
	child, _ := strconv.Atoi(pidStr)

	// The thread that called Launch has ended by now; the child must not
	// have died with it.
	time.Sleep(300 * time.Millisecond)
	if !testutil.Alive(child) {
		t.Fatalf("child %d died when the caller's thread ended", child)
	}
	if err := parent.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = parent.Wait()
	testutil.Gone(t, 5*time.Second, child)
}
