package bwrap

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"sync"

	"github.com/cellproject/cell/internal/capsid"
	"github.com/cellproject/cell/internal/cellspec"
)

// Options are the capsid layers Args puts into a sandbox.
type Options struct {
	// SeccompFD, when above 0, is the descriptor bwrap reads the filter
	// program from (--seccomp).
	SeccompFD int
	// DisableUserns forbids user namespaces inside the sandbox and makes
	// bwrap fail unless that holds.
	DisableUserns bool
	// TmpSize, when above 0, bounds the /tmp tmpfs in bytes (--size).
	TmpSize uint64
}

// Features are the options of the capsid this bubblewrap understands.
type Features struct {
	Seccomp, DisableUserns, TmpfsSize bool
}

// Missing lists the layers a sandbox of this bubblewrap cannot apply. The
// fresh keyring is the root's own doing (internal/process) and never
// missing; the filter is also missing where capsid has no policy for the
// architecture.
func (f Features) Missing() []capsid.Layer {
	var m []capsid.Layer
	if !capsid.Supported() || !f.Seccomp {
		m = append(m, capsid.Filter)
	}
	if !f.DisableUserns {
		m = append(m, capsid.UsernsBlock)
	}
	if !f.TmpfsSize {
		m = append(m, capsid.BoundedTmp)
	}
	return m
}

// features caches FeaturesOf per bwrap path: the binary does not change
// under a running root. ProbeCached fills it from its file, so that a root
// whose probe is cached runs no bwrap at all before it serves.
var features sync.Map // path -> Features

// FeaturesOf reads which capsid options bwrapPath understands from its
// --help, once per path and process (or from ProbeCached's file). A bwrap
// that cannot say has none.
func FeaturesOf(ctx context.Context, bwrapPath string) Features {
	if f, ok := features.Load(bwrapPath); ok {
		return f.(Features)
	}
	out, _ := exec.CommandContext(ctx, bwrapPath, "--help").Output()
	f := Features{
		Seccomp:       bytes.Contains(out, []byte("--seccomp FD")),
		DisableUserns: bytes.Contains(out, []byte("--disable-userns")) && bytes.Contains(out, []byte("--assert-userns-disabled")),
		TmpfsSize:     bytes.Contains(out, []byte("--size BYTES")),
	}
	if len(out) > 0 {
		features.Store(bwrapPath, f)
	}
	return f
}

// Sandbox is one sandbox ready to start: bwrap's options and the
// descriptors they name, to be passed to the child in order.
type Sandbox struct {
	Args  []string
	Files []*os.File
}

// Close closes the parent's copies of the descriptors; call it once the
// child has started (or failed to).
func (s *Sandbox) Close() {
	for _, f := range s.Files {
		f.Close()
	}
}

// Prepare builds spec's sandbox for bwrapPath with every capsid layer it
// understands; the child will get the filter program as descriptor fd
// (the first of Sandbox.Files).
func Prepare(ctx context.Context, bwrapPath string, spec cellspec.Spec, fd int) (*Sandbox, error) {
	f := FeaturesOf(ctx, bwrapPath)
	o := Options{DisableUserns: f.DisableUserns}
	if f.TmpfsSize {
		o.TmpSize = capsid.TmpSize(spec.Limits)
	}
	sb := &Sandbox{}
	if capsid.Supported() && f.Seccomp {
		// Missing promised the filter: a program that does not compile
		// refuses the sandbox rather than run it without.
		p, err := capsid.Compiled()
		if err != nil {
			return nil, fmt.Errorf("seccomp filter: %w", err)
		}
		r, err := programPipe(p.Bytes())
		if err != nil {
			return nil, err
		}
		sb.Files = append(sb.Files, r)
		o.SeccompFD = fd
	}
	sb.Args = Args(spec, o)
	return sb, nil
}

// programPipe returns a pipe's read end holding prog and then EOF, the
// form bwrap reads --seccomp from. The program is a few KiB, far below a
// pipe's buffer, so the write cannot block.
func programPipe(prog []byte) (*os.File, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("seccomp pipe: %w", err)
	}
	defer w.Close()
	if _, err := w.Write(prog); err != nil {
		r.Close()
		return nil, fmt.Errorf("seccomp pipe: %w", err)
	}
	return r, nil
}
