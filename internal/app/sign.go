package app

import (
	"crypto/ed25519"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cellproject/cell/internal/atomicfile"
	"github.com/cellproject/cell/internal/cellbuild"
	"github.com/cellproject/cell/internal/trust"
)

// Signed is one signature file Sign wrote.
type Signed struct {
	// What is "binary" or the cell's name; Sum the sha256 signed; File the
	// signature file.
	What, Sum, File string
}

// Sign signs what path names with key: a regular file is a binary
// (FILE.sig over its sha256); a folder holding a Cell.toml is one cell and
// any other folder an app (every cell of it): each cell's Cell.sig signs
// the sha256 of its source tree, which the root checks before a launch
// when the allowlist requires a signature.
func Sign(key ed25519.PrivateKey, path string) ([]Signed, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return nil, err
	}
	if fi.Mode().IsRegular() {
		sum, err := cellbuild.FileSHA256(abs)
		if err != nil {
			return nil, err
		}
		if err := atomicfile.Write(abs+".sig", trust.Sign(key, trust.KindBinary, sum), 0o644); err != nil {
			return nil, err
		}
		return []Signed{{What: "binary", Sum: sum, File: abs + ".sig"}}, nil
	}
	var cells []*Cell
	if m, _, err := LoadManifest(filepath.Join(abs, ManifestName)); err == nil {
		cells = append(cells, &Cell{Manifest: *m, Dir: abs})
	} else {
		a, err := Discover(abs)
		if err != nil {
			return nil, err
		}
		for _, n := range a.Order {
			cells = append(cells, a.Cells[n])
		}
	}
	var signed []Signed
	for _, c := range cells {
		src, err := cellbuild.SourceOf(c.Name, c.Dir)
		if err != nil {
			return signed, err
		}
		sum, err := src.Hash()
		if err != nil {
			return signed, fmt.Errorf("sign %s: %w", c.Name, err)
		}
		out := filepath.Join(c.Dir, cellbuild.SignatureName)
		if err := atomicfile.Write(out, trust.Sign(key, trust.KindSource, sum), 0o644); err != nil {
			return signed, err
		}
		signed = append(signed, Signed{What: c.Name, Sum: sum, File: out})
	}
	return signed, nil
}
