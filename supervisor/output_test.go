package supervisor

import (
	"bytes"
	"strings"
	"testing"

	"github.com/cellproject/cell/internal/termsafe"
)

// A cell's escape sequences, carriage returns and invalid UTF-8 reach the
// owner's terminal as visible text; an endless line is cut once, with the
// marker, and the output resumes at the next line.
func TestCellOutputIsTerminalSafe(t *testing.T) {
	var out bytes.Buffer
	c := newLineWriter(&out).prefixed("eye")
	c.Write([]byte("\x1b]0;owned\x07\rfake\n[root] \xff\n"))
	want := `[eye] \x1b]0;owned\x07\rfake` + "\n[eye] [root] \uFFFD\n"
	if out.String() != want {
		t.Fatalf("output %q, want %q", out.String(), want)
	}
	out.Reset()
	c.Write(bytes.Repeat([]byte("x"), maxPartialLine+10))
	c.Write([]byte("more of the same line"))
	c.Write([]byte(" end\nnext\n"))
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 2 || !strings.HasSuffix(lines[0], termsafe.CutMarker) || lines[1] != "[eye] next" {
		t.Fatalf("cut output: %d lines, %q ... %q", len(lines), lines[0][:20], lines[len(lines)-1])
	}
	if n := len(lines[0]); n > maxPartialLine+len("[eye] ")+len(termsafe.CutMarker) {
		t.Fatalf("cut line is %d bytes", n)
	}
}
