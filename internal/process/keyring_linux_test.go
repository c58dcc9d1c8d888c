package process_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cellproject/cell/internal/process"
	"github.com/cellproject/cell/internal/testutil"
)

const testKey = "cell-process-keyring-test"

// readTestKey looks for testKey in the session keyring, as a cell that
// hunts for the owner's secrets would, and returns what it found.
func readTestKey() string {
	id, err := unix.KeyctlSearch(unix.KEY_SPEC_SESSION_KEYRING, "user", testKey, 0)
	if err != nil {
		return "key=" + unix.ErrnoName(err.(unix.Errno))
	}
	buf := make([]byte, 256)
	n, err := unix.KeyctlBuffer(unix.KEYCTL_READ, id, buf, 0)
	if err != nil {
		return "key=" + err.Error()
	}
	return "key=" + string(buf[:n])
}

// TestFreshKeyring puts a key into this process's session keyring, as the
// owner's login would, and starts children with and without FreshKeyring:
// the control reads the key back verbatim, the fresh child cannot find it.
// Nothing else stands in the way here (no filter, no namespaces), so this
// is the keyring layer alone.
func TestFreshKeyring(t *testing.T) {
	// The session keyring's id, without creating one for this thread
	// only: the user session keyring when the process has none.
	ring, err := unix.KeyctlGetKeyringID(unix.KEY_SPEC_SESSION_KEYRING, false)
	if err != nil {
		t.Fatalf("find the session keyring: %v", err)
	}
	secret := fmt.Sprintf("secret-%d", time.Now().UnixNano())
	key, err := unix.AddKey("user", testKey, []byte(secret), ring)
	if err != nil {
		t.Fatalf("add a key to the session keyring: %v", err)
	}
	t.Cleanup(func() { unix.KeyctlInt(unix.KEYCTL_UNLINK, key, ring, 0, 0) })

	run := func(fresh bool) string {
		self, _ := os.Executable()
		var out testutil.SyncBuffer
		in, err := process.NewLauncher().Start(context.Background(), process.Command{
			Path: self, Env: []string{"GO_WANT_HELPER_PROCESS=1", "HELPER_MODE=keyring"},
			Output: &out, FreshKeyring: fresh,
		})
		if err != nil {
			t.Fatal(err)
		}
		<-in.Done()
		return strings.TrimSpace(out.String())
	}
	if got := run(false); got != "key="+secret {
		t.Fatalf("control: the child read %q, want the owner's key %q", got, secret)
	}
	if got := run(true); got != "key=ENOKEY" {
		t.Fatalf("fresh keyring: the child read %q, want ENOKEY", got)
	}
	// The root's own threads keep the owner's keyring.
	if got := readTestKey(); got != "key="+secret {
		t.Fatalf("after a fresh-keyring start this process reads %q", got)
	}
}
