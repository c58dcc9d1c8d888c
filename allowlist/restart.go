package allowlist

import (
	"time"

	"github.com/cellproject/cell/internal/cellspec"
)

// Restart policy bounds: restart_limit restarts within restart_window
// seconds at most.
const (
	DefaultRestartLimit  = 5
	DefaultRestartWindow = 10 * time.Second
	MaxRestartLimit      = 100
	MaxRestartWindowSecs = 3600
)

// RestartModes are the values of restart.
var RestartModes = []string{"on-failure", "always"}

// restart reads a cell's restart, restart_limit and restart_window keys:
// the policy the root applies when the cell ends by itself.
func (p *parser) restart(key func(...string) []string, t map[string]any) cellspec.Restart {
	var r cellspec.Restart
	v, ok := t["restart"]
	if !ok {
		for _, k := range []string{"restart_limit", "restart_window"} {
			if _, set := t[k]; set {
				p.fail(key(k), nil, "needs restart = \"on-failure\" or \"always\"")
			}
		}
		return r
	}
	s, ok := p.str(key("restart"), v)
	if !ok {
		return r
	}
	if s != RestartModes[0] && s != RestartModes[1] {
		p.fail(key("restart"), nil, "unknown restart mode %q: want \"on-failure\" or \"always\"", s)
		return r
	}
	r = cellspec.Restart{Mode: s, Limit: DefaultRestartLimit, Window: DefaultRestartWindow}
	if v, ok := t["restart_limit"]; ok {
		if n, ok := p.integer(key("restart_limit"), v, 1, MaxRestartLimit); ok {
			r.Limit = n
		}
	}
	if v, ok := t["restart_window"]; ok {
		if n, ok := p.integer(key("restart_window"), v, 1, MaxRestartWindowSecs); ok {
			r.Window = time.Duration(n) * time.Second
		}
	}
	return r
}
