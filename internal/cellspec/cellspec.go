// Package cellspec holds the resolved launch of one cell: what the supervisor
// hands a backend after policy allowed it. Every field comes from the allowlist
// or from the root itself, never from the requesting cell. It also holds how
// a launched cell ends ([Exit]), which every backend reports alike.
package cellspec

import (
	"io"
	"time"

	"github.com/cellproject/cell/quota"
)

// Backend names a way of running a cell.
type Backend string

const (
	// Auto lets the root pick the strongest backend this machine has.
	Auto Backend = ""
	// Bwrap runs the cell in a bubblewrap sandbox (namespaces, no cgroup limits).
	Bwrap Backend = "bwrap"
	// Process runs the cell unsandboxed; only for cells the allowlist trusts.
	Process Backend = "process"
	// Podman runs the cell as a rootless Podman container.
	Podman Backend = "podman"
	// Scope runs the cell's bubblewrap sandbox in a systemd transient scope.
	Scope Backend = "scope"
)

// ParseBackend reads a backend as the allowlist and Cell.toml write it:
// "auto" (or nothing) and the names above.
func ParseBackend(s string) (Backend, bool) {
	switch b := Backend(s); b {
	case Auto, Bwrap, Process, Podman, Scope:
		return b, true
	}
	if s == "auto" {
		return Auto, true
	}
	return "", false
}

// Spec is one cell launch.
type Spec struct {
	// Name is the cell's name; Key is the instance key ("name" or "name@inst").
	Name string
	Key  string
	// Session is the session id and SessionDir its directory on the host.
	Session    string
	SessionDir string
	// Exec is the absolute host path of the cell's binary; Args follow it.
	Exec string
	Args []string
	// Backend is resolved: never Auto.
	Backend Backend
	// Network grants the host network; false means no network at all.
	Network bool
	// Limits are the resource limits; LimitsEnforced is false only when the
	// allowlist accepted that this backend cannot enforce them.
	Limits         quota.Limits
	LimitsEnforced bool
	// Env is the cell's whole environment ("KEY=value"): the CELL_* contract.
	Env []string
	// Output receives the cell's stdout and stderr; nil discards them.
	Output io.Writer
	// Restart is the restart policy the allowlist granted; zero: none.
	Restart Restart
}

// Restart says when the root starts a cell that ended by itself again, on
// the same listener: Mode "on-failure" (it did not exit 0) or "always"
// ("" never), at most Limit times within any Window.
type Restart struct {
	Mode   string
	Limit  int
	Window time.Duration
}
