package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/cellproject/cell/internal/rundir"
	"github.com/cellproject/cell/wire"
)

func runPs(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fl := newFlags("ps", stderr)
	asJSON := fl.Bool("json", false, "print the sessions as JSON")
	setUsage(fl, `Usage: cellroot ps [--json]

Shows every live session of this user and its cells as a tree: name, backend,
pid or container id, state and uptime. It asks each session's root over its
umbilical, as an observer that may only list.

Flags:
`)
	if code, ok := parseFlags(fl, args); !ok {
		return code
	}
	base, err := rundir.Base()
	if err != nil {
		fmt.Fprintf(stderr, "cellroot ps: %v\n", err)
		return 1
	}
	ids, err := rundir.Sessions(base)
	if err != nil {
		fmt.Fprintf(stderr, "cellroot ps: %v\n", err)
		return 1
	}
	type session struct {
		ID    string          `json:"session"`
		Dir   string          `json:"dir"`
		Cells []wire.CellInfo `json:"cells"`
	}
	sessions := []session{}
	for _, id := range ids {
		dir := filepath.Join(base, id)
		cells, err := listSession(ctx, dir)
		if err != nil {
			// A session can end between listing and asking; only live roots
			// answer, and a dead one is collected by the next root.
			continue
		}
		sessions = append(sessions, session{ID: id, Dir: dir, Cells: cells})
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(sessions)
		return 0
	}
	if len(sessions) == 0 {
		fmt.Fprintln(stdout, "no live sessions")
		return 0
	}
	now := time.Now()
	for _, s := range sessions {
		fmt.Fprintf(stdout, "session %s  %s\n", s.ID, s.Dir)
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "CELL\tBACKEND\tPID\tSTATE\tUPTIME")
		for _, row := range treeRows(s.Cells) {
			c := row.cell
			fmt.Fprintf(tw, "%s%s\t%s\t%s\t%s\t%s\n", row.indent, c.Key, c.Backend, c.ID, c.State,
				now.Sub(c.Started).Round(time.Second))
		}
		tw.Flush()
	}
	return 0
}

func listSession(ctx context.Context, dir string) ([]wire.CellInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	c, err := wire.Dial(ctx, filepath.Join(dir, rundir.UmbilicalName))
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if _, err := c.Hello(ctx, wire.RoleObserver, ""); err != nil {
		return nil, err
	}
	return c.List(ctx)
}

type treeRow struct {
	indent string
	cell   wire.CellInfo
}

// treeRows orders cells depth-first under their parents, the owner's
// children first; a cell whose parent is gone is shown at the top.
func treeRows(cells []wire.CellInfo) []treeRow {
	known := map[string]bool{}
	children := map[string][]wire.CellInfo{}
	for _, c := range cells {
		known[c.Key] = true
	}
	for _, c := range cells {
		parent := c.Parent
		if !known[parent] {
			parent = ""
		}
		children[parent] = append(children[parent], c)
	}
	var rows []treeRow
	var walk func(parent string, depth int)
	walk = func(parent string, depth int) {
		for _, c := range children[parent] {
			indent := ""
			if depth > 0 {
				indent = strings.Repeat("   ", depth-1) + "└─ "
			}
			rows = append(rows, treeRow{indent: indent, cell: c})
			walk(c.Key, depth+1)
		}
	}
	walk("", 0)
	return rows
}
