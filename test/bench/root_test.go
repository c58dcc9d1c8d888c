package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cellproject/cell/bwrap"
	"github.com/cellproject/cell/cell"
	"github.com/cellproject/cell/internal/cellspec"
)

// The root figures of issue 12, each beside its baseline in the same
// iteration, so that the machine's load hits both alike.

// benchRuntime gives the benchmark a runtime dir of its own.
func benchRuntime(b *testing.B) string {
	b.Helper()
	rt, err := os.MkdirTemp("", "cellbench")
	if err != nil {
		b.Fatal(err)
	}
	os.Chmod(rt, 0o700)
	b.Cleanup(func() { os.RemoveAll(rt) })
	b.Setenv("XDG_RUNTIME_DIR", rt)
	return rt
}

// startRoot execs bin as the owner's root and returns once the hello reply
// came back.
func startRoot(b *testing.B, bin, allowlist string) *cell.Session {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := cell.Start(ctx, cell.OwnerOptions{Cellroot: bin, Allowlist: allowlist, Stderr: io.Discard})
	if err != nil {
		b.Fatalf("start %s: %v", bin, err)
	}
	return s
}

// BenchmarkRootColdStart: exec to first hello reply of `cellroot serve`
// (with an allowlist that allows a podman cell, so the podman backend is
// wired but, being lazy, not run) against plainroot, a static Go binary that
// only does the same exchange; and the idle RSS of each.
func BenchmarkRootColdStart(b *testing.B) {
	rt := benchRuntime(b)
	al := filepath.Join(rt, "allowlist.toml")
	if err := os.WriteFile(al, []byte(strings.ReplaceAll(allowlistText, "@BIN@", binDir(b))), 0o600); err != nil {
		b.Fatal(err)
	}
	root := filepath.Join(binDir(b), "cellroot")
	plain := filepath.Join(binDir(b), "plainroot")
	var rootNs, plainNs time.Duration
	var rootRSS, plainRSS int
	measure := func(bin string, d *time.Duration, rss *int) {
		t0 := time.Now()
		s := startRoot(b, bin, al)
		*d += time.Since(t0)
		b.StopTimer()
		if *rss == 0 {
			// Idle: what it holds once its start-up is over.
			time.Sleep(300 * time.Millisecond)
			*rss = childRSS(b, bin)
		}
		s.Close()
		b.StartTimer()
	}
	// One untimed round of each: the page cache holds both binaries.
	measure(root, new(time.Duration), new(int))
	measure(plain, new(time.Duration), new(int))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		measure(root, &rootNs, &rootRSS)
		measure(plain, &plainNs, &plainRSS)
	}
	b.ReportMetric(float64(rootNs.Nanoseconds())/float64(b.N)/1e6, "root-ms")
	b.ReportMetric(float64(plainNs.Nanoseconds())/float64(b.N)/1e6, "plain-ms")
	b.ReportMetric(float64(rootNs)/float64(plainNs), "ratio")
	b.ReportMetric(float64(rootRSS)/1024, "root-rss-MiB")
	b.ReportMetric(float64(plainRSS)/1024, "plain-rss-MiB")
}

// childRSS is VmRSS in KiB of this process's child running bin.
func childRSS(b *testing.B, bin string) int {
	b.Helper()
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err != nil || exe != bin {
			continue
		}
		status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil || !bytes.Contains(status, []byte(fmt.Sprintf("\nPPid:\t%d\n", os.Getpid()))) {
			continue
		}
		for _, line := range strings.Split(string(status), "\n") {
			if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				kb, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
				if err == nil {
					return kb
				}
			}
		}
	}
	b.Fatalf("no child of ours runs %s", bin)
	return 0
}

// teardownCells is how many cells the teardown figure stops.
const teardownCells = 50

// BenchmarkRootTeardown50: the end of a session of 50 bwrap cells (close of
// the umbilical to the root's exit, every cell stopped and its files gone)
// against 50 bare bubblewrap sandboxes of the same binary, whose processes
// under bwrap are each sent SIGTERM, and bwrap waited for.
func BenchmarkRootTeardown50(b *testing.B) {
	rt := benchRuntime(b)
	exe := filepath.Join(binDir(b), "testcell")
	text := fmt.Sprintf("version = 1\n\n[session]\nmax_cells = %d\n", teardownCells+4)
	for i := range teardownCells {
		text += fmt.Sprintf("\n[cell.c%d]\nexec = %q\nbackend = \"bwrap\"\n", i, exe)
	}
	al := filepath.Join(rt, "allowlist.toml")
	if err := os.WriteFile(al, []byte(text), 0o600); err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	os.WriteFile(filepath.Join(dir, "umbilical.sock"), nil, 0o600)
	bareArgs := append(bwrap.Args(cellspec.Spec{Exec: exe, SessionDir: dir}, bwrap.Options{}), "--", exe, "-block")
	var rootNs, bareNs time.Duration
	round := func() {
		b.StopTimer()
		waitForKeys(b, teardownCells+10)
		s := startRoot(b, filepath.Join(binDir(b), "cellroot"), al)
		ctx := context.Background()
		for i := range teardownCells {
			if _, err := s.Spawn(ctx, fmt.Sprintf("c%d", i)); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
		t0 := time.Now()
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
		rootNs += time.Since(t0)

		b.StopTimer()
		cmds := make([]*exec.Cmd, teardownCells)
		for i := range cmds {
			cmds[i] = exec.Command("bwrap", bareArgs...)
			cmds[i].Env = []string{}
			cmds[i].SysProcAttr = &syscall.SysProcAttr{Setsid: true}
			if err := cmds[i].Start(); err != nil {
				b.Fatal(err)
			}
		}
		// Let every sandbox get as far as its cell.
		time.Sleep(200 * time.Millisecond)
		b.StartTimer()
		t0 = time.Now()
		// As the root stops a cell: SIGTERM to what runs under bwrap,
		// then bwrap relays the exit.
		for _, c := range cmds {
			for _, pid := range below(c.Process.Pid) {
				syscall.Kill(pid, syscall.SIGTERM)
			}
		}
		for _, c := range cmds {
			c.Wait()
		}
		bareNs += time.Since(t0)
	}
	round()
	rootNs, bareNs = 0, 0
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		round()
	}
	b.ReportMetric(float64(rootNs.Nanoseconds())/float64(b.N)/1e6, "root-ms")
	b.ReportMetric(float64(bareNs.Nanoseconds())/float64(b.N)/1e6, "bwrap-ms")
	b.ReportMetric(float64(rootNs)/float64(bareNs), "ratio")
}

// below lists the processes under pid (its children, theirs, ...).
func below(pid int) []int {
	var out []int
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", p))
		for _, t := range tasks {
			b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", p, t.Name()))
			for _, f := range strings.Fields(string(b)) {
				if c, err := strconv.Atoi(f); err == nil {
					out = append(out, c)
					queue = append(queue, c)
				}
			}
		}
	}
	return out
}

// waitForKeys waits until the kernel's key quota leaves room for n more
// keys of this user. Every bwrap cell holds a fresh session keyring, and
// the keyrings of sandboxes that just ended count until the kernel
// collects them, which the spawns before this one can leave it behind on.
func waitForKeys(b *testing.B, n int) {
	b.Helper()
	uid := strconv.Itoa(os.Getuid()) + ":"
	deadline := time.Now().Add(2 * time.Minute)
	for {
		data, err := os.ReadFile("/proc/key-users")
		if err != nil {
			b.Fatalf("read the key quota: %v", err)
		}
		used, max := 0, 0
		for _, line := range strings.Split(string(data), "\n") {
			if f := strings.Fields(line); len(f) >= 4 && f[0] == uid {
				fmt.Sscanf(f[3], "%d/%d", &used, &max)
			}
		}
		if max == 0 || used+n <= max { // no line: this user holds no keys
			return
		}
		if n > max {
			b.Fatalf("kernel.keys.maxkeys is %d; %d cells need more (raise the sysctl)", max, n)
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d keys still held after 2 minutes; %d cells need %d", used, max, n, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
