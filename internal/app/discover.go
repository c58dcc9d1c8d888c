package app

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// CellsDir is the folder of an app that holds one directory per cell.
const CellsDir = "cells"

var (
	// ErrDuplicate: two Cell.toml files give the same name.
	ErrDuplicate = errors.New("app: two cells of one name")
	// ErrMissingDependency: a depends_on or spawn names no cell of the app.
	ErrMissingDependency = errors.New("app: missing dependency")
	// ErrCycle: the cells' depends_on form a cycle.
	ErrCycle = errors.New("app: dependency cycle")
	// ErrNoCells: the app has no cells/*/Cell.toml at all.
	ErrNoCells = errors.New("app: no cells")
)

// App is an app folder with its cells found and checked.
type App struct {
	// Dir is the app folder, absolute and clean.
	Dir string
	// Cells holds every cell by name.
	Cells map[string]*Cell
	// Order lists every cell so that each comes after its dependencies;
	// cells that do not depend on each other are in name order.
	Order []string
}

// Cell is one cell of an app.
type Cell struct {
	Manifest
	// Dir is the cell's source directory, File its Cell.toml.
	Dir, File string
	pos       *Positions
}

// Discover finds and reads every cells/NAME/Cell.toml of the app at dir,
// and checks the app as a whole: names unique, every dependency and spawn
// edge a cell of the app, no dependency cycle. Errors name the files.
func Discover(dir string) (*App, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("app %s: %w", dir, err)
	}
	a := &App{Dir: abs, Cells: map[string]*Cell{}}
	entries, err := os.ReadDir(filepath.Join(abs, CellsDir))
	if err != nil {
		return nil, fmt.Errorf("app %s: %w (an app holds %s/NAME/%s)", abs, err, CellsDir, ManifestName)
	}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		cdir := filepath.Join(abs, CellsDir, e.Name())
		file := filepath.Join(cdir, ManifestName)
		if _, err := os.Lstat(file); errors.Is(err, os.ErrNotExist) {
			continue // a shared package, not a cell
		}
		m, pos, err := LoadManifest(file)
		if err != nil {
			return nil, err
		}
		if prev, ok := a.Cells[m.Name]; ok {
			return nil, &Error{File: file, Line: pos.Line("name"), Key: "name", Err: ErrDuplicate,
				Msg: fmt.Sprintf("cell %q is also named in %s: names must be unique in an app", m.Name, prev.File)}
		}
		a.Cells[m.Name] = &Cell{Manifest: *m, Dir: cdir, File: file, pos: pos}
	}
	if len(a.Cells) == 0 {
		return nil, fmt.Errorf("%w: no %s/*/%s in %s", ErrNoCells, CellsDir, ManifestName, abs)
	}
	names := make([]string, 0, len(a.Cells))
	for n := range a.Cells {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		c := a.Cells[n]
		for _, key := range []string{"depends_on", "spawn"} {
			list := c.DependsOn
			if key == "spawn" {
				list = c.Spawn
			}
			for _, d := range list {
				if _, ok := a.Cells[d]; !ok {
					return nil, &Error{File: c.File, Line: c.pos.Line(key), Key: key, Err: ErrMissingDependency,
						Msg: fmt.Sprintf("%q is not a cell of this app (no %s/*/%s names it)", d, CellsDir, ManifestName)}
				}
			}
		}
	}
	order, err := a.order(names)
	if err != nil {
		return nil, err
	}
	a.Order = order
	return a, nil
}

// order sorts names topologically by depends_on, reporting a cycle with
// its path.
func (a *App) order(names []string) ([]string, error) {
	const (
		unseen = iota
		visiting
		done
	)
	state := map[string]int{}
	var out, stack []string
	var visit func(n string) error
	visit = func(n string) error {
		switch state[n] {
		case done:
			return nil
		case visiting:
			i := slices.Index(stack, n)
			path := append(slices.Clone(stack[i:]), n)
			var files []string
			for _, p := range stack[i:] {
				files = append(files, a.Cells[p].File)
			}
			c := a.Cells[n]
			return &Error{File: c.File, Line: c.pos.Line("depends_on"), Key: "depends_on", Err: ErrCycle,
				Msg: fmt.Sprintf("dependency cycle %s (in %s)", strings.Join(path, " -> "), strings.Join(files, ", "))}
		}
		state[n] = visiting
		stack = append(stack, n)
		deps := slices.Clone(a.Cells[n].DependsOn)
		slices.Sort(deps)
		for _, d := range deps {
			if err := visit(d); err != nil {
				return err
			}
		}
		stack = stack[:len(stack)-1]
		state[n] = done
		out = append(out, n)
		return nil
	}
	for _, n := range names {
		if err := visit(n); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// StartOrder lists the cells to start when the app runs: the autostart
// cells and everything they depend on, each after its dependencies.
func (a *App) StartOrder() []string {
	need := map[string]bool{}
	var mark func(n string)
	mark = func(n string) {
		if need[n] {
			return
		}
		need[n] = true
		for _, d := range a.Cells[n].DependsOn {
			mark(d)
		}
	}
	for n, c := range a.Cells {
		if c.Autostart {
			mark(n)
		}
	}
	var out []string
	for _, n := range a.Order {
		if need[n] {
			out = append(out, n)
		}
	}
	return out
}
