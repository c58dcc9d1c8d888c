package app

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/cellproject/cell/internal/cellspec"
	"github.com/cellproject/cell/internal/tomlpos"
	"github.com/cellproject/cell/quota"
)

// ManifestName is the file that makes a directory under cells/ a cell.
const ManifestName = "Cell.toml"

// ManifestVersion is the only Cell.toml schema version this package reads.
const ManifestVersion = 1

// MaxManifestSize caps a Cell.toml, in bytes: real ones are a few hundred.
const MaxManifestSize = 64 << 10

// ErrManifest is wrapped by every *Error about a Cell.toml's contents.
var ErrManifest = errors.New("app: invalid Cell.toml")

// Manifest is what one Cell.toml requests. Nothing here is granted by being
// written down: the user's allowlist grants, and the root refuses a cell
// whose request goes beyond its grant.
type Manifest struct {
	Name        string
	Description string
	// Autostart starts the cell when the app runs, after DependsOn.
	Autostart bool
	// DependsOn names cells of the same app that must be ready first.
	DependsOn []string
	// Spawn names the cells this cell asks to be allowed to spawn.
	Spawn   []string
	Network bool
	Limits  quota.Limits
	// IdleTimeout is how long the cell may idle before exiting; 0 is the
	// cell's own default. It reaches the cell as the argument -idle=D.
	IdleTimeout time.Duration
	// Backend is a preference; the allowlist decides.
	Backend      cellspec.Backend
	MaxInstances int
	// Restart asks the root to restart the cell when it ends by itself
	// (restart, restart_limit, restart_window); zero: stay down.
	Restart cellspec.Restart
}

// Error is a problem with an app: a Cell.toml's contents (File, Line, Key)
// or the app as a whole (a cycle, a name used twice), naming the files.
type Error = tomlpos.Error

// LoadManifest reads the Cell.toml at path.
func LoadManifest(path string) (*Manifest, *Positions, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("app: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxManifestSize+1))
	if err != nil {
		return nil, nil, fmt.Errorf("app: read %s: %w", path, err)
	}
	return ParseManifest(path, data)
}

// Positions tells the line of a manifest's keys, for errors found later
// (a dependency missing from the app).
type Positions struct{ lines map[string]int }

// Line returns the line of the dotted key, or of its nearest parent.
func (p *Positions) Line(key ...string) int {
	if p == nil {
		return 0
	}
	return tomlpos.Line(p.lines, key)
}

var manifestKeys = []string{"version", "name", "description", "autostart", "depends_on", "spawn",
	"network", "limits", "idle_timeout", "backend", "max_instances",
	"restart", "restart_limit", "restart_window"}

// ParseManifest parses a Cell.toml; path is used in errors only. The first
// problem in file order is returned as an *Error wrapping ErrManifest.
func ParseManifest(path string, data []byte) (*Manifest, *Positions, error) {
	if len(data) > MaxManifestSize {
		return nil, nil, &Error{File: path, Msg: fmt.Sprintf("larger than %d bytes", MaxManifestSize), Err: ErrManifest}
	}
	var raw map[string]any
	md, err := toml.Decode(string(data), &raw)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, nil, &Error{File: path, Line: pe.Position.Line, Msg: pe.Message, Err: errors.Join(ErrManifest, err)}
		}
		return nil, nil, &Error{File: path, Msg: err.Error(), Err: errors.Join(ErrManifest, err)}
	}
	pos := &Positions{lines: tomlpos.Lines(data)}
	c := &checker{path: path, pos: pos}
	for _, k := range md.Keys() {
		switch {
		case !slices.Contains(manifestKeys, k[0]):
			c.fail(k[:1], "unknown key (see docs/cell-toml.md for the schema)")
		case k[0] == "limits" && len(k) > 1 && !slices.Contains(quota.TOMLKeys, k[1]):
			c.fail(k[:2], "unknown key (limits has memory, cpu and pids)")
		}
	}
	m := c.manifest(raw)
	if len(c.errs) > 0 {
		slices.SortStableFunc(c.errs, func(a, b *Error) int { return a.Line - b.Line })
		return nil, nil, c.errs[0]
	}
	return m, pos, nil
}

type checker struct {
	path string
	pos  *Positions
	errs []*Error
}

func (c *checker) fail(key []string, format string, args ...any) {
	c.errs = append(c.errs, &Error{File: c.path, Line: c.pos.Line(key...), Key: toml.Key(key).String(),
		Msg: fmt.Sprintf(format, args...), Err: ErrManifest})
}

func (c *checker) manifest(raw map[string]any) *Manifest {
	m := &Manifest{MaxInstances: 1}
	if v, ok := raw["version"]; !ok {
		c.errs = append(c.errs, &Error{File: c.path, Key: "version", Msg: fmt.Sprintf("missing: the file must say version = %d", ManifestVersion), Err: ErrManifest})
	} else if n, ok := v.(int64); !ok || n != ManifestVersion {
		c.fail([]string{"version"}, "unsupported version %v: this cellroot reads version %d", v, ManifestVersion)
	}
	if v, ok := raw["name"]; !ok {
		c.errs = append(c.errs, &Error{File: c.path, Key: "name", Msg: "missing: the cell's name", Err: ErrManifest})
	} else if s, ok := c.str("name", v); ok {
		if err := cellspec.CheckName(s); err != nil {
			c.fail([]string{"name"}, "not a valid cell name: %v", err)
		}
		m.Name = s
	}
	if v, ok := raw["description"]; ok {
		m.Description, _ = c.str("description", v)
	}
	if v, ok := raw["autostart"]; ok {
		m.Autostart = c.boolean("autostart", v)
	}
	if v, ok := raw["network"]; ok {
		m.Network = c.boolean("network", v)
	}
	m.DependsOn = c.names(raw, "depends_on")
	m.Spawn = c.names(raw, "spawn")
	if v, ok := raw["idle_timeout"]; ok {
		if s, ok := c.str("idle_timeout", v); ok {
			d, err := time.ParseDuration(s)
			switch {
			case err != nil:
				c.fail([]string{"idle_timeout"}, "%q is not a duration such as \"30s\" or \"5m\"", s)
			case d <= 0:
				c.fail([]string{"idle_timeout"}, "%q must be positive; leave it out for the cell's default", s)
			default:
				m.IdleTimeout = d
			}
		}
	}
	if v, ok := raw["backend"]; ok {
		if s, ok := c.str("backend", v); ok {
			b, known := cellspec.ParseBackend(s)
			if !known {
				c.fail([]string{"backend"}, "unknown backend %q: want auto, scope, podman, bwrap or process", s)
			}
			m.Backend = b
		}
	}
	if v, ok := raw["max_instances"]; ok {
		n, isInt := v.(int64)
		if !isInt || n < 1 || n > 64 {
			c.fail([]string{"max_instances"}, "must be an integer in 1..64, not %v", v)
		} else {
			m.MaxInstances = int(n)
		}
	}
	m.Restart = c.restart(raw)
	if v, ok := raw["limits"]; ok {
		if t, isTable := v.(map[string]any); !isTable {
			c.fail([]string{"limits"}, "must be a table such as { memory = \"256M\", cpu = 0.5, pids = 64 }")
		} else {
			m.Limits = c.limits(t)
		}
	}
	return m
}

func (c *checker) limits(t map[string]any) quota.Limits {
	l, errs := quota.FromTOML(t)
	for _, e := range errs {
		c.fail([]string{"limits", e.Key}, "%s", e.Msg)
	}
	return l
}

func (c *checker) str(key string, v any) (string, bool) {
	s, ok := v.(string)
	if !ok {
		c.fail([]string{key}, "must be a string")
	} else if strings.IndexByte(s, 0) >= 0 {
		c.fail([]string{key}, "contains a NUL byte")
		return "", false
	}
	return s, ok
}

func (c *checker) boolean(key string, v any) bool {
	b, ok := v.(bool)
	if !ok {
		c.fail([]string{key}, "must be true or false")
	}
	return b
}

// names reads an optional array of distinct, valid cell names.
func (c *checker) names(raw map[string]any, key string) []string {
	v, ok := raw[key]
	if !ok {
		return nil
	}
	a, ok := v.([]any)
	if !ok {
		c.fail([]string{key}, "must be an array of cell names")
		return nil
	}
	var out []string
	for _, e := range a {
		s, ok := e.(string)
		if !ok {
			c.fail([]string{key}, "must be an array of cell names, not hold %T", e)
			continue
		}
		if err := cellspec.CheckName(s); err != nil {
			c.fail([]string{key}, "not a valid cell name: %v", err)
			continue
		}
		if slices.Contains(out, s) {
			c.fail([]string{key}, "%q is listed twice", s)
			continue
		}
		out = append(out, s)
	}
	return out
}
