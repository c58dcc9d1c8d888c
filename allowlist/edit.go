package allowlist

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/cellproject/cell/internal/atomicfile"
)

// ErrConflict: a grant would replace an entry the user wrote by hand.
var ErrConflict = errors.New("allowlist: entry exists")

// Block is one cell's grant as a tool writes it: the TOML of its
// [cell.NAME] table, which the editor puts between marker comments so that
// it can later replace or remove exactly that text and nothing else.
type Block struct {
	Cell string
	Body string
}

const (
	beginMark = "# >>> cell grant "
	endMark   = "# <<< cell grant "
)

func marker(prefix, cell, owner string) string {
	return prefix + cell + " for " + owner + "\n"
}

// SetBlocks returns text with owner's grants replaced by blocks: a block
// already in the text (between its markers) is replaced where it stands,
// a new one appended, and owner's other blocks removed. Every other line,
// comments included, is kept byte for byte. A [cell.NAME] the user wrote
// by hand is never overwritten: that is ErrConflict. The result is parsed
// before it is returned, so a grant never leaves an invalid allowlist.
func SetBlocks(path string, text []byte, owner string, blocks []Block) ([]byte, error) {
	if strings.ContainsAny(owner, "\n\r") {
		return nil, fmt.Errorf("allowlist: owner %q holds a line break", owner)
	}
	want := map[string]string{}
	for _, b := range blocks {
		want[b.Cell] = b.Body
	}
	kept, done, err := rewrite(string(text), owner, func(cell string) (string, bool) {
		body, ok := want[cell]
		if !ok {
			return "", false
		}
		return marker(beginMark, cell, owner) + ensureNL(body) + marker(endMark, cell, owner), true
	})
	if err != nil {
		return nil, err
	}
	// What the user wrote, without any of owner's blocks: a hand-written
	// table for one of our cells is a conflict.
	bare, _, _ := rewrite(kept, owner, func(string) (string, bool) { return "", false })
	if f, err := Parse(path, []byte(versioned(bare))); err == nil {
		for _, b := range blocks {
			if c, ok := f.Cells[b.Cell]; ok {
				return nil, fmt.Errorf("%w: %s:%d already has [cell.%s], written by hand; remove or rename it first",
					ErrConflict, path, c.Line, b.Cell)
			}
		}
	}
	var sb strings.Builder
	sb.WriteString(versioned(kept))
	for _, b := range blocks {
		if done[b.Cell] {
			continue
		}
		if s := sb.String(); s != "" && !strings.HasSuffix(s, "\n\n") {
			if !strings.HasSuffix(s, "\n") {
				sb.WriteString("\n")
			}
			sb.WriteString("\n")
		}
		sb.WriteString(marker(beginMark, b.Cell, owner) + ensureNL(b.Body) + marker(endMark, b.Cell, owner))
	}
	out := []byte(sb.String())
	if _, err := Parse(path, out); err != nil {
		return nil, fmt.Errorf("allowlist: the grant would leave an invalid file, nothing written: %w", err)
	}
	return out, nil
}

// RemoveBlocks returns text without owner's blocks and how many it removed.
func RemoveBlocks(path string, text []byte, owner string) ([]byte, int, error) {
	out, done, err := rewrite(string(text), owner, func(string) (string, bool) { return "", false })
	if err != nil {
		return nil, 0, err
	}
	if _, err := Parse(path, []byte(out)); err != nil && len(done) > 0 {
		return nil, 0, fmt.Errorf("allowlist: removing the grants would leave an invalid file (does another entry spawn them?), nothing written: %w", err)
	}
	return []byte(out), len(done), nil
}

// rewrite walks text's lines; each of owner's blocks is replaced by what
// repl returns for its cell (ok false: removed). done holds the cells seen.
func rewrite(text, owner string, repl func(cell string) (string, bool)) (string, map[string]bool, error) {
	lines := strings.SplitAfter(text, "\n")
	var sb strings.Builder
	done := map[string]bool{}
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		cell, ok := parseMark(l, beginMark, owner)
		if !ok {
			sb.WriteString(l)
			continue
		}
		end := -1
		for j := i + 1; j < len(lines); j++ {
			if c, ok := parseMark(lines[j], endMark, owner); ok && c == cell {
				end = j
				break
			}
		}
		if end < 0 {
			return "", nil, fmt.Errorf("allowlist: line %d opens the grant of cell %s for %s, and no %q line closes it",
				i+1, cell, owner, strings.TrimSpace(marker(endMark, cell, owner)))
		}
		done[cell] = true
		if r, ok := repl(cell); ok {
			sb.WriteString(r)
		} else if s := sb.String(); strings.HasSuffix(s, "\n\n") {
			// Drop the blank line SetBlocks put before the block.
			sb.Reset()
			sb.WriteString(s[:len(s)-1])
		} else if end+1 < len(lines) && lines[end+1] == "\n" {
			end++
		}
		i = end
	}
	return sb.String(), done, nil
}

func parseMark(line, prefix, owner string) (string, bool) {
	rest, ok := strings.CutPrefix(strings.TrimRight(line, "\r\n"), prefix)
	if !ok {
		return "", false
	}
	cell, o, ok := strings.Cut(rest, " for ")
	return cell, ok && o == owner
}

func ensureNL(s string) string {
	if strings.HasSuffix(s, "\n") {
		return s
	}
	return s + "\n"
}

// versioned adds "version = 1" to a file that has no top-level version,
// which is what a new or empty allowlist lacks.
func versioned(text string) string {
	for _, l := range strings.Split(text, "\n") {
		t := strings.TrimSpace(l)
		if strings.HasPrefix(t, "[") {
			break
		}
		if k, _, ok := strings.Cut(t, "="); ok && strings.TrimSpace(k) == "version" {
			return text
		}
	}
	head := fmt.Sprintf("# Cell allowlist: see docs/allowlist.md. Anything not listed is denied.\nversion = %d\n", Version)
	if strings.TrimSpace(text) == "" {
		return head
	}
	return head + "\n" + text
}

// WriteFile replaces the allowlist at path with data atomically, readable
// and writable by the user only.
func WriteFile(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("allowlist: %w", err)
	}
	if err := atomicfile.Write(path, data, 0o600); err != nil {
		return fmt.Errorf("allowlist: %w", err)
	}
	return nil
}
