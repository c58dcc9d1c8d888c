package cellbuild

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// SignatureName is a cell's signature file; it is left out of the source
// tree hash, since it signs that hash.
const SignatureName = "Cell.sig"

// ErrLayout: a cell directory is not where an app keeps cells, or has no
// go.mod at or above it within the app.
var ErrLayout = errors.New("build: not an app cell")

// Source is what one cell is built from.
type Source struct {
	// Name is the cell's name, and the name of the built binary.
	Name string
	// Dir is the cell's directory (APPDIR/cells/NAME): its main package.
	Dir string
	// Module is the root of the Go module holding Dir: Dir itself or a
	// directory above it, never above the app.
	Module string
	// Exclude lists the other cells' directories inside Module: main
	// packages cannot be imported, so their files cannot change this build,
	// and leaving them out keeps a change to one cell from rebuilding all.
	Exclude []string
}

// SourceOf derives a cell's Source from its directory alone, by the app
// layout: Dir is APPDIR/cells/NAME, the module root is the nearest go.mod
// from Dir up to APPDIR, and every sibling holding a Cell.toml is excluded.
// The root's vetting hook and the builder both call it, so that they hash
// the same tree.
func SourceOf(name, dir string) (Source, error) {
	dir = filepath.Clean(dir)
	cells := filepath.Dir(dir)
	if !filepath.IsAbs(dir) || filepath.Base(cells) != "cells" {
		return Source{}, fmt.Errorf("%w: %s is not APPDIR/cells/NAME", ErrLayout, dir)
	}
	appDir := filepath.Dir(cells)
	s := Source{Name: name, Dir: dir}
	for d := dir; ; d = filepath.Dir(d) {
		if fi, err := os.Stat(filepath.Join(d, "go.mod")); err == nil && fi.Mode().IsRegular() {
			s.Module = d
			break
		}
		if d == appDir {
			return Source{}, fmt.Errorf("%w: no go.mod in %s or above it up to the app folder %s", ErrLayout, dir, appDir)
		}
	}
	if s.Module != dir {
		entries, err := os.ReadDir(cells)
		if err != nil {
			return Source{}, fmt.Errorf("build: %w", err)
		}
		for _, e := range entries {
			sib := filepath.Join(cells, e.Name())
			if sib == dir || !e.IsDir() {
				continue
			}
			if _, err := os.Lstat(filepath.Join(sib, "Cell.toml")); err == nil {
				s.Exclude = append(s.Exclude, sib)
			}
		}
	}
	return s, nil
}

// Hash returns the sha256 of the source tree, as lowercase hex: every
// regular file and symlink under Module but the excluded dirs, .git and the
// cell's signature file, by relative path, mode (executable or not) and
// contents. Other file types are refused: a build should not read a fifo.
func (s Source) Hash() (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "cell-source-tree v1\n")
	err := filepath.WalkDir(s.Module, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(s.Module, p)
		if d.IsDir() {
			if d.Name() == ".git" || slices.Contains(s.Exclude, p) {
				return filepath.SkipDir
			}
			return nil
		}
		if p == filepath.Join(s.Dir, SignatureName) {
			return nil
		}
		switch t := d.Type(); {
		case t&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			fmt.Fprintf(h, "l %q %q\n", rel, target)
		case t.IsRegular():
			fi, err := d.Info()
			if err != nil {
				return err
			}
			sum, err := FileSHA256(p)
			if err != nil {
				return err
			}
			fmt.Fprintf(h, "f %q %t %s\n", rel, fi.Mode().Perm()&0o111 != 0, sum)
		default:
			return fmt.Errorf("%s is a %s, not a file a build can read", p, t)
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("build: hash source of %s: %w", s.Name, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// FileSHA256 returns the sha256 of a file's contents as lowercase hex.
func FileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hash %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// vendored reports whether the module vendors its dependencies.
func (s Source) vendored() bool {
	_, err := os.Stat(filepath.Join(s.Module, "vendor", "modules.txt"))
	return err == nil
}

// hasRequires reports whether go.mod requires any module; a module with
// none builds in vendor mode without a vendor directory.
func (s Source) hasRequires() bool {
	data, err := os.ReadFile(filepath.Join(s.Module, "go.mod"))
	if err != nil {
		return true
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[0] == "require" {
			return true
		}
	}
	return false
}
