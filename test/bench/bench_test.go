package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cellproject/cell/bwrap"
	"github.com/cellproject/cell/cell"
	"github.com/cellproject/cell/internal/cellspec"
)

// The allowlist of the benchmarks; @BIN@ is the binary dir.
const allowlistText = `
version = 1

[cell.onpodman]
exec = "@BIN@/testcell"
backend = "podman"

[cell.onbwrap]
exec = "@BIN@/testcell"
backend = "bwrap"
`

func binDir(b *testing.B) string {
	b.Helper()
	dir := os.Getenv("CELL_TEST_BIN")
	if dir == "" {
		b.Fatal("CELL_TEST_BIN is unset: run the benchmarks through `make bench` (test/bench/run.sh)")
	}
	return dir
}

// session starts a root for the benchmark in a runtime dir of its own.
func session(b *testing.B) *cell.Session {
	b.Helper()
	rt, err := os.MkdirTemp("", "cellbench")
	if err != nil {
		b.Fatal(err)
	}
	os.Chmod(rt, 0o700)
	b.Cleanup(func() { os.RemoveAll(rt) })
	b.Setenv("XDG_RUNTIME_DIR", rt)
	al := filepath.Join(rt, "allowlist.toml")
	if err := os.WriteFile(al, []byte(strings.ReplaceAll(allowlistText, "@BIN@", binDir(b))), 0o600); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// The root's log would drown the results.
	s, err := cell.Start(ctx, cell.OwnerOptions{Cellroot: filepath.Join(binDir(b), "cellroot"), Allowlist: al, Stderr: io.Discard})
	if err != nil {
		b.Fatalf("start session: %v", err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

// spawnLoop times Spawn (request to socket accepting) of name, stopping the
// cell between iterations outside the timer.
func spawnLoop(b *testing.B, name string) {
	s := session(b)
	ctx := context.Background()
	// One untimed spawn: the first container of a service warms it up.
	if _, err := s.Spawn(ctx, name); err != nil {
		b.Fatal(err)
	}
	if err := s.Stop(ctx, name); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := s.Spawn(ctx, name); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := s.Stop(ctx, name); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

// BenchmarkRootPodman: spawn request to ready socket of a cell on podman.
func BenchmarkRootPodman(b *testing.B) { spawnLoop(b, "onpodman") }

// BenchmarkRootBwrap: the same on bwrap.
func BenchmarkRootBwrap(b *testing.B) { spawnLoop(b, "onbwrap") }

// BenchmarkCLIPodmanRun: `podman run -d` of the same binary with the same
// confinement (no network, read-only root, private /tmp, keep-id, no
// capabilities, no new privileges, the binary bound read-only), until the
// container runs; it is removed outside the timer. The binary runs in its
// -block mode: outside a session it could not get ready any other way.
func BenchmarkCLIPodmanRun(b *testing.B) {
	exe := filepath.Join(binDir(b), "testcell")
	root := b.TempDir()
	for _, d := range []string{"etc", "proc", "dev", "sys", "tmp", "run", filepath.Dir(exe)[1:]} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			b.Fatal(err)
		}
	}
	os.Chmod(filepath.Join(root, "tmp"), 0o1777)
	if err := os.WriteFile(filepath.Join(root, exe[1:]), nil, 0o755); err != nil {
		b.Fatal(err)
	}
	run := func(i int) {
		name := fmt.Sprintf("cellbench-%d-%d", os.Getpid(), i)
		out, err := exec.Command("podman", "run", "-d", "--rm", "--name", name,
			"--network", "none", "--read-only", "--read-only-tmpfs=false", "--tmpfs", "/tmp:rw,mode=1777,size=64m",
			"--userns", "keep-id", "--cap-drop", "all", "--security-opt", "no-new-privileges",
			"-v", exe+":"+exe+":ro", "--rootfs", root, exe, "-block").CombinedOutput()
		if err != nil {
			b.Fatalf("podman run: %v\n%s", err, out)
		}
		b.StopTimer()
		if out, err := exec.Command("podman", "rm", "--force", "--time", "0", name).CombinedOutput(); err != nil {
			b.Fatalf("podman rm: %v\n%s", err, out)
		}
		b.StartTimer()
	}
	run(-1)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		run(i)
	}
}

// BenchmarkCLIBwrap: bwrap with the sandbox the bwrap backend builds, running
// the same binary to its exit (outside a session it exits at once).
func BenchmarkCLIBwrap(b *testing.B) {
	exe := filepath.Join(binDir(b), "testcell")
	dir := b.TempDir()
	args := append(bwrap.Args(cellspec.Spec{Exec: exe, SessionDir: dir}, bwrap.Options{}), "--", exe)
	// The backend binds the umbilical socket too: give it a file to bind.
	os.WriteFile(filepath.Join(dir, "umbilical.sock"), nil, 0o600)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		cmd := exec.Command("bwrap", args...)
		cmd.Env = []string{}
		// testcell exits 1 outside a session: that is its whole run.
		if out, err := cmd.CombinedOutput(); err != nil && !strings.Contains(string(out), "not in a cell session") {
			b.Fatalf("bwrap: %v\n%s", err, out)
		}
	}
}
