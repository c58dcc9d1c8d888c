package app

import (
	"cmp"
	"fmt"
	"strconv"
	"strings"

	"github.com/cellproject/cell/allowlist"
	"github.com/cellproject/cell/internal/cellbuild"
	"github.com/cellproject/cell/internal/cellspec"
	"github.com/cellproject/cell/quota"
)

// GrantOptions says what cellroot allow adds to the requests it grants.
type GrantOptions struct {
	// Exec is the cell's installed build path (build.InstalledPath).
	Exec string
	// SourceSHA256, when set, pins the source tree to it.
	SourceSHA256 string
	// RequireSignature requires Cell.sig to verify against trust.toml.
	RequireSignature bool
	// Backend, when set, is the user's choice of backend over the cell's
	// preference.
	Backend cellspec.Backend
}

// GrantsOptions say how cellroot allow grants every cell of an app.
type GrantsOptions struct {
	// CacheDir is the build cache the grants point into; empty means
	// cellbuild.DefaultCacheDir.
	CacheDir string
	// Pin pins each cell to the sha256 of its source tree as it is now.
	Pin bool
	// RequireSignature and Backend are as in GrantOptions, for every cell.
	RequireSignature bool
	Backend          cellspec.Backend
}

// Grants renders the allowlist entries of every cell of a, in a's order.
func Grants(a *App, o GrantsOptions) ([]allowlist.Block, error) {
	cache := o.CacheDir
	if cache == "" {
		var err error
		if cache, err = cellbuild.DefaultCacheDir(); err != nil {
			return nil, err
		}
	}
	blocks := make([]allowlist.Block, 0, len(a.Order))
	for _, n := range a.Order {
		c := a.Cells[n]
		g := GrantOptions{Exec: cellbuild.InstalledPath(cache, c.Dir, n), RequireSignature: o.RequireSignature, Backend: o.Backend}
		if o.Pin {
			src, err := cellbuild.SourceOf(n, c.Dir)
			if err != nil {
				return nil, err
			}
			if g.SourceSHA256, err = src.Hash(); err != nil {
				return nil, fmt.Errorf("pin %s: %w", n, err)
			}
		}
		blocks = append(blocks, Grant(c, g))
	}
	return blocks, nil
}

// Grant renders the allowlist entry that grants exactly what c requests.
func Grant(c *Cell, o GrantOptions) allowlist.Block {
	var b strings.Builder
	if c.Description != "" {
		fmt.Fprintf(&b, "# %s\n", strings.ReplaceAll(c.Description, "\n", " "))
	}
	fmt.Fprintf(&b, "[cell.%s]\n", c.Name)
	fmt.Fprintf(&b, "source = %s\n", strconv.Quote(c.Dir))
	fmt.Fprintf(&b, "exec = %s\n", strconv.Quote(o.Exec))
	if c.IdleTimeout > 0 {
		fmt.Fprintf(&b, "args = [%s]\n", strconv.Quote("-idle="+c.IdleTimeout.String()))
	}
	if backend := cmp.Or(o.Backend, c.Backend); backend != "" {
		fmt.Fprintf(&b, "backend = %q\n", backend)
	}
	fmt.Fprintf(&b, "network = %t\n", c.Network)
	quoted := make([]string, len(c.Spawn))
	for i, s := range c.Spawn {
		quoted[i] = strconv.Quote(s)
	}
	fmt.Fprintf(&b, "spawn = [%s]\n", strings.Join(quoted, ", "))
	fmt.Fprintf(&b, "max_instances = %d\n", c.MaxInstances)
	if l := limitsTOML(c.Limits); l != "" {
		fmt.Fprintf(&b, "limits = { %s }\n", l)
	}
	b.WriteString(restartTOML(c.Restart))
	if o.SourceSHA256 != "" {
		fmt.Fprintf(&b, "source_sha256 = %q\n", o.SourceSHA256)
	}
	if o.RequireSignature {
		b.WriteString("require_signature = true\n")
	}
	return allowlist.Block{Cell: c.Name, Body: b.String()}
}

func limitsTOML(l quota.Limits) string {
	var parts []string
	if l.MemoryBytes != 0 {
		parts = append(parts, fmt.Sprintf("memory = %d", l.MemoryBytes))
	}
	if l.CPU != 0 {
		parts = append(parts, "cpu = "+strconv.FormatFloat(l.CPU, 'f', -1, 64))
	}
	if l.Pids != 0 {
		parts = append(parts, fmt.Sprintf("pids = %d", l.Pids))
	}
	return strings.Join(parts, ", ")
}

// Describe says in a few lines what c asks for, for a permission prompt.
func Describe(c *Cell) string {
	var b strings.Builder
	fmt.Fprintf(&b, "cell %s (%s)\n", c.Name, c.File)
	if c.Description != "" {
		fmt.Fprintf(&b, "  %s\n", c.Description)
	}
	net := "none"
	if c.Network {
		net = "YES: the host network"
	}
	fmt.Fprintf(&b, "  network:       %s\n", net)
	spawn := "nothing"
	if len(c.Spawn) > 0 {
		spawn = strings.Join(c.Spawn, ", ")
	}
	fmt.Fprintf(&b, "  may spawn:     %s\n", spawn)
	limits := "none (unlimited)"
	if !c.Limits.IsZero() {
		limits = c.Limits.String()
	}
	fmt.Fprintf(&b, "  limits:        %s\n", limits)
	fmt.Fprintf(&b, "  instances:     up to %d\n", c.MaxInstances)
	fmt.Fprintf(&b, "  restart:       %s\n", describeRestart(c.Restart))
	if c.Backend != "" {
		fmt.Fprintf(&b, "  backend:       %s\n", c.Backend)
	}
	if c.IdleTimeout > 0 {
		fmt.Fprintf(&b, "  idle timeout:  %s\n", c.IdleTimeout)
	}
	auto := "no (started when asked for)"
	if c.Autostart {
		auto = "yes"
		if len(c.DependsOn) > 0 {
			auto += ", after " + strings.Join(c.DependsOn, ", ")
		}
	}
	fmt.Fprintf(&b, "  autostart:     %s\n", auto)
	return b.String()
}
