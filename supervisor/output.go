package supervisor

import (
	"bytes"
	"io"
	"sync"

	"github.com/cellproject/cell/internal/termsafe"
)

// lineWriter serialises the cells' output onto one writer, whole lines at a
// time, each prefixed with its cell's key, so that interleaved cells stay
// readable.
type lineWriter struct {
	mu  sync.Mutex // guards out
	out io.Writer
}

func newLineWriter(out io.Writer) *lineWriter { return &lineWriter{out: out} }

// prefixed returns the writer for one cell; nil when output is discarded.
func (w *lineWriter) prefixed(key string) io.Writer {
	if w.out == nil {
		return nil
	}
	return &cellOutput{parent: w, prefix: []byte("[" + key + "] ")}
}

// maxPartialLine bounds one line of a cell's output as the owner sees it: longer
// lines are cut with termsafe.CutMarker and the rest, up to the next newline,
// dropped, so that a cell writing without newlines cannot grow the root's
// memory or flood the terminal with one line.
const maxPartialLine = 4096

type cellOutput struct {
	parent *lineWriter
	prefix []byte
	// partial and skipping are only touched by the backend's copier of
	// this cell. skipping is set after a cut, until the line's end.
	partial  []byte
	skipping bool
}

// Write relays whole lines, each made terminal-safe (termsafe.AppendLine):
// a cell's escape sequences and carriage returns show as text and cannot
// drive the owner's terminal or forge a line of another cell or the root.
func (c *cellOutput) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if c.skipping {
			if i < 0 {
				break
			}
			c.skipping = false
			p = p[i+1:]
			continue
		}
		if i < 0 {
			c.partial = append(c.partial, p...)
			if len(c.partial) > maxPartialLine {
				c.emit(c.partial)
				c.partial, c.skipping = c.partial[:0], true
			}
			break
		}
		c.partial = append(c.partial, p[:i+1]...)
		c.emit(c.partial)
		c.partial = c.partial[:0]
		p = p[i+1:]
	}
	return n, nil
}

// emit writes one line; one without its newline (cut, or the cell's last
// words before exiting) gets one.
func (c *cellOutput) emit(line []byte) {
	out := termsafe.AppendLine(append([]byte{}, c.prefix...), line, maxPartialLine)
	if out[len(out)-1] != '\n' {
		out = append(out, '\n')
	}
	c.parent.mu.Lock()
	defer c.parent.mu.Unlock()
	c.parent.out.Write(out)
}
