// Package testutil holds the small helpers the tests of several packages
// share: an output buffer safe for concurrent writers, waiting for output,
// for processes to die and for launched cells to end, and a writer into the
// test log.
package testutil

import (
	"bytes"
	"io"
	"strings"
	"sync"
	"testing"
	"time"
)

// SyncBuffer is an io.Writer that a process's output copier and the test can
// use at the same time.
type SyncBuffer struct {
	mu  sync.Mutex // guards buf
	buf bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// WaitOutput waits up to ten seconds until out holds want, and fails the
// test with what it holds otherwise.
func WaitOutput(t *testing.T, out *SyncBuffer, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in output %q", want, out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// LogWriter writes into the test's log, a line per write.
func LogWriter(t *testing.T) io.Writer { return logWriter{t} }

type logWriter struct{ t *testing.T }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Logf("%s", bytes.TrimRight(p, "\n"))
	return len(p), nil
}
