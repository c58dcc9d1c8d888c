package bench

import (
	"bufio"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/cellproject/cell/bwrap"
	"github.com/cellproject/cell/internal/cellspec"
)

// BenchmarkCLIBwrapReady: bare bubblewrap, with the sandbox the bwrap
// backend builds, starting the same testcell binary until its socket
// accepts a connection: the baseline of BenchmarkRootBwrap (spawn request
// to the cell serving on the listener the root handed it). Outside a
// session testcell binds its own socket (TESTCELL_BENCH_LISTEN) and says
// so on stdout once it listens, so the baseline waits on that line, then
// connects once, without polling. Teardown is outside the timer.
func BenchmarkCLIBwrapReady(b *testing.B) {
	exe := filepath.Join(binDir(b), "testcell")
	dir := b.TempDir()
	// No seccomp filter or userns block: the bare tool as a hand-written
	// script would run it.
	args := bwrap.Args(cellspec.Spec{Exec: exe, SessionDir: dir}, bwrap.Options{})
	// The bare tool has no root to bind the socket for the cell: its dir
	// must be writable, as cells' session dirs were before root-owned
	// listeners.
	for i := range args {
		if args[i] == "--ro-bind" && args[i+1] == dir {
			args[i] = "--bind"
		}
	}
	sock := filepath.Join(dir, "cell.sock")
	args = append(args, "--", exe)
	run := func() {
		os.Remove(sock)
		cmd := exec.Command("bwrap", args...)
		cmd.Env = []string{"TESTCELL_BENCH_LISTEN=" + sock}
		out, err := cmd.StdoutPipe()
		if err != nil {
			b.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		if _, err := bufio.NewReader(out).ReadString('\n'); err != nil {
			cmd.Process.Kill()
			cmd.Wait()
			b.Fatalf("testcell did not listen: %v", err)
		}
		c, err := net.Dial("unix", sock)
		if err != nil {
			b.Fatalf("connect: %v", err)
		}
		b.StopTimer()
		c.Close()
		cmd.Process.Kill()
		cmd.Wait()
		b.StartTimer()
	}
	run()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		run()
	}
}
