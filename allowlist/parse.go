package allowlist

import (
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/cellproject/cell/internal/capsid"
	"github.com/cellproject/cell/internal/cellspec"
	"github.com/cellproject/cell/internal/tomlpos"
	"github.com/cellproject/cell/quota"
)

// Parse parses the allowlist in data; path is only used in errors and File.
// It reports the first problem in file order as an *Error.
func Parse(path string, data []byte) (*File, error) {
	if len(data) > MaxSize {
		return nil, &Error{File: path, Msg: fmt.Sprintf("larger than %d bytes", MaxSize), Err: ErrTooLarge}
	}
	var raw map[string]any
	md, err := toml.Decode(string(data), &raw)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, &Error{File: path, Line: pe.Position.Line, Key: pe.LastKey, Msg: pe.Message, Err: err}
		}
		return nil, &Error{File: path, Msg: err.Error(), Err: err}
	}
	p := &parser{path: path, lines: tomlpos.Lines(data)}
	// Unknown keys first: on a shared line, a misspelt key explains the
	// "missing" problems that follow from it.
	p.unknownKeys(md.Keys())
	f := p.file(raw)
	if len(p.errs) > 0 {
		// Stable, so that problems on one line keep the order they were found.
		slices.SortStableFunc(p.errs, func(a, b *Error) int { return a.Line - b.Line })
		return nil, p.errs[0]
	}
	return f, nil
}

// parser walks the decoded document, collecting every problem so that Parse
// can report the earliest one whatever order the checks run in.
type parser struct {
	path  string
	lines map[string]int
	errs  []*Error
}

// lineOf finds the line of key, or of its nearest parent with a known line.
func (p *parser) lineOf(key []string) int {
	return tomlpos.Line(p.lines, key)
}

func (p *parser) fail(key []string, cause error, format string, args ...any) {
	p.failAt(p.lineOf(key), key, cause, format, args...)
}

func (p *parser) failAt(line int, key []string, cause error, format string, args ...any) {
	p.errs = append(p.errs, &Error{
		File: p.path,
		Line: line,
		Key:  toml.Key(key).String(),
		Msg:  fmt.Sprintf(format, args...),
		Err:  cause,
	})
}

func (p *parser) file(raw map[string]any) *File {
	f := &File{
		Path:          p.path,
		Version:       Version,
		SessionLimits: SessionLimits{MaxCells: DefaultMaxCells, MaxDepth: DefaultMaxDepth},
		Cells:         make(map[string]Cell),
	}
	if v, ok := raw["version"]; !ok {
		p.failAt(0, []string{"version"}, nil, "missing: the file must say version = %d", Version)
	} else if n, ok := p.integer([]string{"version"}, v, math.MinInt64, math.MaxInt64); ok && n != Version {
		p.fail([]string{"version"}, nil, "unsupported version %d: this cellroot reads version %d", n, Version)
	}
	if v, ok := raw["session"]; ok {
		if t, ok := p.table([]string{"session"}, v); ok {
			p.session(t, &f.SessionLimits)
		}
	}
	v, ok := raw["cell"]
	if !ok {
		return f
	}
	cells, ok := p.table([]string{"cell"}, v)
	if !ok {
		return f
	}
	for _, name := range sortedKeys(cells) {
		key := []string{"cell", name}
		if err := cellspec.CheckName(name); err != nil {
			p.fail(key, err, "not a valid cell name: %v", err)
			continue
		}
		t, ok := p.table(key, cells[name])
		if !ok {
			continue
		}
		if c, ok := p.cell(name, t); ok {
			f.Cells[name] = c
		}
	}
	// Edges are checked against every name in the file, broken cells
	// included, so that one mistake is not reported twice.
	for _, name := range sortedKeys(f.Cells) {
		c := f.Cells[name]
		for _, target := range c.Spawn {
			if _, ok := cells[target]; !ok {
				p.fail([]string{"cell", name, "spawn"}, nil,
					"%q is not listed in this file; add a [cell.%s] table or remove it", target, target)
			}
		}
	}
	return f
}

func (p *parser) session(t map[string]any, s *SessionLimits) {
	if v, ok := t["max_cells"]; ok {
		if n, ok := p.integer([]string{"session", "max_cells"}, v, 1, MaxMaxCells); ok {
			s.MaxCells = n
		}
	}
	if v, ok := t["max_depth"]; ok {
		if n, ok := p.integer([]string{"session", "max_depth"}, v, 1, MaxMaxDepth); ok {
			s.MaxDepth = n
		}
	}
}

// cell decodes one [cell.NAME] table; ok is false when it had a problem.
func (p *parser) cell(name string, t map[string]any) (Cell, bool) {
	before := len(p.errs)
	key := func(k ...string) []string { return append([]string{"cell", name}, k...) }
	c := Cell{
		Name:         name,
		Backend:      cellspec.Auto,
		MaxInstances: DefaultMaxInstances,
		Line:         p.lineOf(key()),
	}

	if v, ok := t["exec"]; !ok {
		p.failAt(c.Line, key("exec"), nil, "missing: the absolute path of the cell's binary")
	} else if s, ok := p.str(key("exec"), v); ok {
		if why := checkExec(s); why != "" {
			p.fail(key("exec"), nil, "%q %s", s, why)
		}
		c.Exec = s
	}
	if v, ok := t["args"]; ok {
		c.Args = p.strings(key("args"), v)
		for _, a := range c.Args {
			if strings.IndexByte(a, 0) >= 0 {
				p.fail(key("args"), nil, "%q contains a NUL byte, which no argument can hold", a)
			}
		}
	}
	if v, ok := t["backend"]; ok {
		if s, ok := p.str(key("backend"), v); ok {
			b, known := cellspec.ParseBackend(s)
			if !known {
				p.fail(key("backend"), nil, "unknown backend %q: want auto, scope, podman, bwrap or process", s)
			}
			c.Backend = b
		}
	}
	if v, ok := t["network"]; ok {
		c.Network, _ = p.boolean(key("network"), v)
	}
	if v, ok := t["spawn"]; ok {
		c.Spawn = p.strings(key("spawn"), v)
		seen := make(map[string]bool, len(c.Spawn))
		for _, s := range c.Spawn {
			if err := cellspec.CheckName(s); err != nil {
				p.fail(key("spawn"), err, "not a valid cell name: %v", err)
			} else if seen[s] {
				p.fail(key("spawn"), nil, "%q is listed twice", s)
			}
			seen[s] = true
		}
	}
	if v, ok := t["max_instances"]; ok {
		if n, ok := p.integer(key("max_instances"), v, 1, MaxMaxInstances); ok {
			c.MaxInstances = n
		}
	}
	if v, ok := t["accept_unenforced_limits"]; ok {
		c.AcceptUnenforcedLimits, _ = p.boolean(key("accept_unenforced_limits"), v)
	}
	if v, ok := t["accept_missing_layers"]; ok {
		seen := map[capsid.Layer]bool{}
		for _, s := range p.strings(key("accept_missing_layers"), v) {
			l, err := capsid.ParseLayer(s)
			switch {
			case err != nil:
				p.fail(key("accept_missing_layers"), err, "%v", err)
			case seen[l]:
				p.fail(key("accept_missing_layers"), nil, "%q is listed twice", s)
			default:
				seen[l] = true
				c.AcceptMissingLayers = append(c.AcceptMissingLayers, l)
			}
		}
	}
	if v, ok := t["limits"]; ok {
		if lt, ok := p.table(key("limits"), v); ok {
			c.Limits = p.limits(key("limits"), lt)
		}
	}
	if v, ok := t["source"]; ok {
		if s, ok := p.str(key("source"), v); ok {
			if why := checkExec(s); why != "" {
				p.fail(key("source"), nil, "%q %s", s, why)
			}
			c.Source = s
		}
	}
	c.SHA256 = p.digest(key("sha256"), t)
	c.SourceSHA256 = p.digest(key("source_sha256"), t)
	if c.SourceSHA256 != "" && c.Source == "" {
		p.fail(key("source_sha256"), nil, "pins a source tree, but the entry has no source")
	}
	if v, ok := t["require_signature"]; ok {
		c.RequireSignature, _ = p.boolean(key("require_signature"), v)
	}
	c.Restart = p.restart(key, t)
	return c, len(p.errs) == before
}

// digest reads an optional sha256 pin: 64 lowercase hex digits, the form
// sha256sum and cellroot print, so that a pin compares as text.
func (p *parser) digest(key []string, t map[string]any) string {
	v, ok := t[key[len(key)-1]]
	if !ok {
		return ""
	}
	s, ok := p.str(key, v)
	if !ok {
		return ""
	}
	if !IsDigest(s) {
		p.fail(key, nil, "%q is not a sha256 digest: want 64 lowercase hex digits", s)
		return ""
	}
	return s
}

// IsDigest reports whether s is a sha256 digest as 64 lowercase hex digits.
func IsDigest(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// checkExec says what is wrong with an exec path, or "" when nothing is.
// The path is taken literally, never resolved against a directory, so it
// must be absolute; requiring it clean keeps the file and the audit log
// naming the same path the kernel opens.
func checkExec(s string) string {
	switch {
	case s == "":
		return "is empty"
	case strings.IndexByte(s, 0) >= 0:
		return "contains a NUL byte"
	case !filepath.IsAbs(s):
		return "is not an absolute path"
	case slices.Contains(strings.Split(s, "/"), ".."):
		return `contains ".."`
	case filepath.Clean(s) != s:
		return fmt.Sprintf("is not clean: write %q", filepath.Clean(s))
	case s == "/":
		return "is the root directory"
	}
	return ""
}

func (p *parser) limits(key []string, t map[string]any) quota.Limits {
	l, errs := quota.FromTOML(t)
	for _, e := range errs {
		p.fail(append(slices.Clone(key), e.Key), e.Err, "%s", e.Msg)
	}
	return l
}

// unknownKeys reports each key the schema does not have, once per unknown
// table or key even when keys below it follow. Keys below a value of the
// wrong type (an array of tables for args, say) are left to that value's
// type error.
func (p *parser) unknownKeys(keys []toml.Key) {
	seen := make(map[string]bool)
	for _, k := range keys {
		i := unknownPart(k)
		if i < 0 {
			continue
		}
		j := strings.Join(k[:i+1], tomlpos.Sep)
		if seen[j] {
			continue
		}
		seen[j] = true
		p.fail(k[:i+1], nil, "unknown key (see docs/allowlist.md for the schema)")
	}
}

var (
	sessionKeys = []string{"max_cells", "max_depth"}
	cellKeys    = []string{"exec", "args", "backend", "network", "spawn", "max_instances", "accept_unenforced_limits", "accept_missing_layers", "limits",
		"source", "sha256", "source_sha256", "require_signature", "restart", "restart_limit", "restart_window"}
	limitKeys = []string{"memory", "cpu", "pids"}
)

// unknownPart returns the index of the first part of k the schema does not
// know, or -1. Names are exact: TOML keys are case sensitive.
func unknownPart(k toml.Key) int {
	switch k[0] {
	case "version":
	case "session":
		if len(k) > 1 && !slices.Contains(sessionKeys, k[1]) {
			return 1
		}
	case "cell":
		switch {
		case len(k) > 2 && !slices.Contains(cellKeys, k[2]):
			return 2
		case len(k) > 3 && k[2] == "limits" && !slices.Contains(limitKeys, k[3]):
			return 3
		}
	default:
		return 0
	}
	return -1
}

func (p *parser) table(key []string, v any) (map[string]any, bool) {
	t, ok := v.(map[string]any)
	if !ok {
		p.fail(key, nil, "must be a table, not %s", tomlpos.TypeName(v))
	}
	return t, ok
}

func (p *parser) str(key []string, v any) (string, bool) {
	s, ok := v.(string)
	if !ok {
		p.fail(key, nil, "must be a string, not %s", tomlpos.TypeName(v))
	}
	return s, ok
}

func (p *parser) boolean(key []string, v any) (bool, bool) {
	b, ok := v.(bool)
	if !ok {
		p.fail(key, nil, "must be true or false, not %s", tomlpos.TypeName(v))
	}
	return b, ok
}

// integer checks that v is an integer in [lo, hi].
func (p *parser) integer(key []string, v any, lo, hi int64) (int, bool) {
	n, ok := v.(int64)
	if !ok {
		p.fail(key, nil, "must be an integer, not %s", tomlpos.TypeName(v))
		return 0, false
	}
	if n < lo || n > hi {
		p.fail(key, nil, "%d is out of range %d..%d", n, lo, hi)
		return 0, false
	}
	return int(n), true
}

// strings checks that v is an array of strings.
func (p *parser) strings(key []string, v any) []string {
	a, ok := v.([]any)
	if !ok {
		p.fail(key, nil, "must be an array of strings, not %s", tomlpos.TypeName(v))
		return nil
	}
	out := make([]string, 0, len(a))
	for i, e := range a {
		s, ok := e.(string)
		if !ok {
			p.fail(key, nil, "element %d must be a string, not %s", i, tomlpos.TypeName(e))
			continue
		}
		out = append(out, s)
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
