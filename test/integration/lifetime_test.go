//go:build integration || vmlab

package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cellproject/cell/cell"

	"github.com/cellproject/cell/internal/testutil"
)

// The owner helper: the test binary re-executed as an app that starts a
// session, grows a chain of sandboxed cells, reports its session and waits
// to be killed or told to exit (stdin closing).
func TestMain(m *testing.M) {
	switch os.Getenv("CELL_IT_ROLE") {
	case "owner":
		os.Exit(ownerMain())
	case "grower":
		os.Exit(growerMain())
	}
	os.Exit(m.Run())
}

type ownerReport struct {
	Session string `json:"session"`
	Dir     string `json:"dir"`
	Pid     int    `json:"pid"`
}

func ownerMain() int {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := cell.Start(ctx, cell.OwnerOptions{
		Cellroot:  os.Getenv("CELL_IT_CELLROOT"),
		Allowlist: os.Getenv("CELL_IT_ALLOWLIST"),
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "owner:", err)
		return 1
	}
	defer s.Close()
	conn, err := s.Grow(ctx, "probe")
	if err != nil {
		fmt.Fprintln(os.Stderr, "owner:", err)
		return 1
	}
	// probe -> child -> grandchild: three levels of sandboxed cells.
	if out, err := conn.Call(ctx, "grow", []byte("child")); err != nil || !strings.HasPrefix(string(out), "ok") {
		fmt.Fprintln(os.Stderr, "owner: probe grow child:", string(out), err)
		return 1
	}
	json.NewEncoder(os.Stdout).Encode(ownerReport{Session: s.ID(), Dir: s.Dir(), Pid: os.Getpid()})
	buf := make([]byte, 1)
	os.Stdin.Read(buf) // returns when the test closes stdin
	return 0
}

// runningOwner is a live owner helper and what it reported.
type runningOwner struct {
	cmd    *exec.Cmd
	stdin  interface{ Close() error }
	report ownerReport
	base   string
}

func startOwner(t *testing.T) *runningOwner {
	t.Helper()
	o := startOwnerWith(t, testAllowlist)
	// The chain must be up before anything is killed, or the test proves little.
	if n := len(sessionLeftovers(t, o.report.Session)); n < 3 {
		t.Fatalf("expected the session's three cells running, found %d processes", n)
	}
	return o
}

// startOwnerWith runs the owner helper (TestMain's "owner" role) under the
// allowlist text: it grows probe, which grows child, and reports.
func startOwnerWith(t *testing.T, allowlistText string) *runningOwner {
	t.Helper()
	base := isolatedRuntime(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), "CELL_IT_ROLE=owner",
		"CELL_IT_CELLROOT="+filepath.Join(binDir(t), "cellroot"),
		"CELL_IT_ALLOWLIST="+writeAllowlist(t, allowlistText))
	cmd.Stderr = testutil.LogWriter(t)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	o := &runningOwner{cmd: cmd, stdin: stdin, base: base}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("owner helper did not report its session: %v", err)
	}
	if err := json.Unmarshal([]byte(line), &o.report); err != nil {
		t.Fatalf("owner report %q: %v", line, err)
	}
	return o
}

// rootPid finds the owner's cellroot child.
func (o *runningOwner) rootPid(t *testing.T) int {
	t.Helper()
	for _, p := range processes(t) {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.pid))
		if err != nil {
			continue
		}
		fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		if len(fields) > 1 && fields[1] == strconv.Itoa(o.report.Pid) && strings.Contains(p.cmdline, "cellroot serve") {
			return p.pid
		}
	}
	t.Fatal("no cellroot child of the owner found")
	return 0
}

func TestOwnerExitsNormally(t *testing.T) {
	o := startOwner(t)
	root := o.rootPid(t)
	o.stdin.Close()
	if err := o.cmd.Wait(); err != nil {
		t.Fatalf("owner: %v", err)
	}
	requireGone(t, o.base, o.report.Session, root)
}

func TestOwnerSIGKILLed(t *testing.T) {
	o := startOwner(t)
	root := o.rootPid(t)
	o.cmd.Process.Signal(syscall.SIGKILL)
	o.cmd.Wait()
	requireGone(t, o.base, o.report.Session, root)
}

func TestRootSIGTERMed(t *testing.T) {
	o := startOwner(t)
	root := o.rootPid(t)
	if err := syscall.Kill(root, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	requireGone(t, o.base, o.report.Session, root)
}

func TestRootSIGKILLed(t *testing.T) {
	o := startOwner(t)
	root := o.rootPid(t)
	if err := syscall.Kill(root, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// The cells go at once: bwrap dies with its parent, the SDK with the
	// umbilical. The session's files stay until a root runs again.
	requireNoProcesses(t, o.report.Session, root)
	if _, err := os.Stat(filepath.Join(o.base, o.report.Session)); err != nil {
		t.Fatalf("expected the dead session's dir to remain until collected: %v", err)
	}
	// The next root of this user collects the dead session.
	s, _ := startSessionIn(t, testAllowlist)
	defer s.Close()
	requireGone(t, o.base, o.report.Session, root)
}

func growerMain() int {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := cell.Join(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "grower:", err)
		return 1
	}
	defer s.Close()
	conn, err := s.Grow(ctx, "counter")
	if err != nil {
		fmt.Fprintln(os.Stderr, "grower:", err)
		return 1
	}
	defer conn.Close()
	pid, err := conn.Call(ctx, "pid", nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "grower:", err)
		return 1
	}
	fmt.Println(string(pid))
	return 0
}
