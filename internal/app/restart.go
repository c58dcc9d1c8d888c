package app

import (
	"fmt"
	"slices"
	"time"

	"github.com/cellproject/cell/allowlist"
	"github.com/cellproject/cell/internal/cellspec"
)

// restart reads restart, restart_limit and restart_window, with the
// allowlist's defaults and bounds: the same keys grant the policy there.
func (c *checker) restart(raw map[string]any) cellspec.Restart {
	v, ok := raw["restart"]
	if !ok {
		for _, k := range []string{"restart_limit", "restart_window"} {
			if _, set := raw[k]; set {
				c.fail([]string{k}, "needs restart = \"on-failure\" or \"always\"")
			}
		}
		return cellspec.Restart{}
	}
	s, ok := c.str("restart", v)
	if !ok {
		return cellspec.Restart{}
	}
	if !slices.Contains(allowlist.RestartModes, s) {
		c.fail([]string{"restart"}, "unknown restart mode %q: want \"on-failure\" or \"always\"", s)
		return cellspec.Restart{}
	}
	r := cellspec.Restart{Mode: s, Limit: allowlist.DefaultRestartLimit, Window: allowlist.DefaultRestartWindow}
	if v, ok := raw["restart_limit"]; ok {
		if n, isInt := v.(int64); !isInt || n < 1 || n > allowlist.MaxRestartLimit {
			c.fail([]string{"restart_limit"}, "must be an integer in 1..%d, not %v", allowlist.MaxRestartLimit, v)
		} else {
			r.Limit = int(n)
		}
	}
	if v, ok := raw["restart_window"]; ok {
		if n, isInt := v.(int64); !isInt || n < 1 || n > allowlist.MaxRestartWindowSecs {
			c.fail([]string{"restart_window"}, "must be a number of seconds in 1..%d, not %v", allowlist.MaxRestartWindowSecs, v)
		} else {
			r.Window = time.Duration(n) * time.Second
		}
	}
	return r
}

// restartTOML renders a policy as allowlist keys; "" for none.
func restartTOML(r cellspec.Restart) string {
	if r.Mode == "" {
		return ""
	}
	return fmt.Sprintf("restart = %q\nrestart_limit = %d\nrestart_window = %d\n", r.Mode, r.Limit, int(r.Window/time.Second))
}

// restartExceeds says how a requested policy restarts more than the
// granted one, or "": a mode the grant lacks, more restarts, or the same
// restarts in a shorter window.
func restartExceeds(m, g cellspec.Restart) string {
	switch {
	case m.Mode == "":
		return ""
	case g.Mode == "" || (m.Mode == "always" && g.Mode != "always"):
		return fmt.Sprintf("restart %q (granted: %q)", m.Mode, g.Mode)
	case m.Limit > g.Limit || m.Window < g.Window:
		return fmt.Sprintf("restart_limit %d in %s (granted: %d in %s)", m.Limit, m.Window, g.Limit, g.Window)
	}
	return ""
}

// describeRestart is the permission prompt's line for a policy.
func describeRestart(r cellspec.Restart) string {
	if r.Mode == "" {
		return "never (a crashed cell stays down)"
	}
	return fmt.Sprintf("%s, at most %d times in %s", r.Mode, r.Limit, r.Window)
}
