// Package harness is the one end-to-end test harness of the integration
// tests on the host (test/integration) and in the VM lab
// (test/integration/vm): where the binaries under test are, allowlists
// written for them, real session roots started as the test's owner, and the
// client that loads a cell while it is upgraded.
package harness

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cellproject/cell/cell"
	"github.com/cellproject/cell/internal/testutil"
)

// BinDir is where the binaries under test are: $CELL_TEST_BIN, which
// test/run-tests.sh sets, or the bin dir of the VM lab's extra disk
// ($CELL_VMLAB_EXTRA). Each binary in need must be there; a missing one
// fails the test, it never skips it.
func BinDir(tb testing.TB, need ...string) string {
	tb.Helper()
	dir := os.Getenv("CELL_TEST_BIN")
	if dir == "" {
		if extra := os.Getenv("CELL_VMLAB_EXTRA"); extra != "" {
			dir = filepath.Join(extra, "bin")
		}
	}
	if dir == "" {
		tb.Fatal("neither CELL_TEST_BIN nor CELL_VMLAB_EXTRA is set: run these tests through `make test` (test/run-tests.sh) or `make integration-vm`, which build cellroot, the examples and the test cells")
	}
	for _, b := range need {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			tb.Fatalf("binary under test missing: %v", err)
		}
	}
	return dir
}

// WriteAllowlist writes text to path (0600), with @BIN@ replaced by BinDir,
// and returns path.
func WriteAllowlist(tb testing.TB, path, text string) string {
	tb.Helper()
	text = strings.ReplaceAll(text, "@BIN@", BinDir(tb))
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		tb.Fatal(err)
	}
	return path
}

// StartSession execs the cellroot under test as this test's owner, with
// allowlistText (written to the test's temp dir) and extra root flags
// after --log-format json, within start (stretched by testutil.Scaled). The
// root's log goes to the returned buffer and the test log; the session
// ends when the test does.
func StartSession(t *testing.T, start time.Duration, allowlistText string, args ...string) (*cell.Session, *testutil.SyncBuffer) {
	t.Helper()
	log := &testutil.SyncBuffer{}
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Scaled(t, start))
	defer cancel()
	s, err := cell.Start(ctx, cell.OwnerOptions{
		Cellroot:  filepath.Join(BinDir(t, "cellroot"), "cellroot"),
		Allowlist: WriteAllowlist(t, filepath.Join(t.TempDir(), "allowlist.toml"), allowlistText),
		Args:      append([]string{"--log-format", "json"}, args...),
		Stderr:    io.MultiWriter(log, testutil.LogWriter(t)),
	})
	if err != nil {
		t.Fatalf("start session: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s, log
}

// Call grows name in s and calls method with arg on it; a failed grow
// fails the test, the call's own error is the caller's to judge.
func Call(ctx context.Context, t *testing.T, s *cell.Session, name, method, arg string) (string, error) {
	t.Helper()
	conn, err := s.Grow(ctx, name)
	if err != nil {
		t.Fatalf("grow %s: %v", name, err)
	}
	defer conn.Close()
	out, err := conn.Call(ctx, method, []byte(arg))
	return string(out), err
}
