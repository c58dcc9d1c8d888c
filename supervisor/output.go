package supervisor

import (
	"bytes"
	"io"
	"sync"
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

// maxPartialLine bounds the unterminated tail kept per cell, so that a cell
// writing without newlines cannot grow the root's memory.
const maxPartialLine = 4096

type cellOutput struct {
	parent  *lineWriter
	prefix  []byte
	partial []byte // only touched by the backend's copier of this cell
}

func (c *cellOutput) Write(p []byte) (int, error) {
	c.partial = append(c.partial, p...)
	for {
		i := bytes.IndexByte(c.partial, '\n')
		if i < 0 {
			break
		}
		c.emit(c.partial[:i+1])
		c.partial = c.partial[i+1:]
	}
	if len(c.partial) > maxPartialLine {
		c.emit(append(c.partial, '\n'))
		c.partial = nil
	}
	return len(p), nil
}

func (c *cellOutput) emit(line []byte) {
	c.parent.mu.Lock()
	defer c.parent.mu.Unlock()
	c.parent.out.Write(append(append([]byte{}, c.prefix...), line...))
}
