package policy

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/cellproject/cell/allowlist"
	"github.com/cellproject/cell/internal/capsid"
	"github.com/cellproject/cell/internal/cellspec"
)

// Code says which rule decided a request. Codes are stable: they go to the
// audit trail and callers branch on them.
type Code string

const (
	// OK: the request is allowed.
	OK Code = "ok"
	// NoAllowlist: the allowlist could not be loaded, so nothing is allowed.
	NoAllowlist Code = "no_allowlist"
	// BadName: the cell name, instance or requester is not a valid cell name.
	BadName Code = "bad_name"
	// NotListed: the allowlist has no table for the cell.
	NotListed Code = "not_listed"
	// EdgeDenied: the requesting cell's spawn list does not name the cell.
	EdgeDenied Code = "edge_denied"
	// MaxCells: the session already holds session.max_cells cells.
	MaxCells Code = "max_cells"
	// MaxDepth: the cell would sit deeper than session.max_depth.
	MaxDepth Code = "max_depth"
	// MaxInstances: the cell already runs max_instances times.
	MaxInstances Code = "max_instances"
	// BackendUnavailable: the named backend, or for auto every candidate, is
	// unavailable on this machine.
	BackendUnavailable Code = "backend_unavailable"
	// LimitsUnenforceable: the cell has limits, the backend cannot enforce
	// them, and the allowlist does not accept that.
	LimitsUnenforceable Code = "limits_unenforceable"
	// LayersMissing: the backend cannot apply a layer of the capsid here
	// (docs/capsid.md), and the cell's accept_missing_layers does not name
	// it.
	LayersMissing Code = "layers_missing"
	// Unverified: policy allowed the cell, but the root's check of what
	// would run (a pinned hash, a signature) failed. Decide never returns
	// it; the supervisor does, after its vetting hook.
	Unverified Code = "unverified"
)

// Request is one spawn request as the supervisor knows it. Requester and
// RequesterDepth come from the supervisor's cell table, never from the
// request's sender.
type Request struct {
	// Requester is "" for the owner, else the requesting cell's name.
	Requester string
	// RequesterDepth is 0 for the owner, 1 for a cell the owner spawned, ...
	RequesterDepth int
	// Name is the cell asked for; Instance is "" for the default instance.
	Name, Instance string
}

// Capability is what one backend can do on this machine.
type Capability struct {
	Available      bool
	EnforcesLimits bool
	// Missing lists the capsid layers this backend cannot apply here; nil
	// when it applies all of them (or, for process, has no sandbox).
	Missing []capsid.Layer
	// Reason says why the backend is unavailable or does not enforce limits.
	Reason string
}

// State is the session as the supervisor sees it at the time of the request.
type State struct {
	// Cells counts live and starting cells in the session.
	Cells int
	// Instances counts live and starting instances per cell name.
	Instances map[string]int
	// Backends holds what was probed; a backend missing here is unavailable.
	Backends map[cellspec.Backend]Capability
	// AllowlistErr is set when the allowlist could not be loaded: every
	// request is denied with it as the reason.
	AllowlistErr error
	// KeyFits, when set, says whether a key can name a socket of the
	// session (its path must fit sun_path); a key that cannot is BadName.
	KeyFits func(key string) error
	// Vetted is set once the root's check of the allowed spec (pins,
	// signatures, builds) has run; VetErr is its refusal, which makes the
	// decision Unverified. Before it runs, Decide decides as if it passed.
	Vetted bool
	VetErr error
}

// ErrBadKey is wrapped by every error of KeyOf.
var ErrBadKey = errors.New("policy: bad cell key")

// KeyOf is the one place a requested name and instance become an instance
// key: both must pass the name rule, and the key must fit a socket of the
// session (fits, when set). The requester gets bad_name for anything else.
func KeyOf(name, instance string, fits func(key string) error) (string, error) {
	if err := cellspec.CheckName(name); err != nil {
		return "", fmt.Errorf("%w: name: %w", ErrBadKey, err)
	}
	if instance != "" {
		if err := cellspec.CheckName(instance); err != nil {
			return "", fmt.Errorf("%w: instance: %w", ErrBadKey, err)
		}
	}
	key := cellspec.Key(name, instance)
	if fits != nil {
		if err := fits(key); err != nil {
			return "", fmt.Errorf("%w: key %q cannot be a socket in this session dir: %w", ErrBadKey, key, err)
		}
	}
	return key, nil
}

// Decision is the answer to one request.
type Decision struct {
	Allow bool
	Code  Code
	// Reason is a sentence for people: the audit trail and the requester.
	Reason string
	// Spec is set only when Allow: Name, Key, Exec, Args, Backend (never
	// Auto), Network, Limits and LimitsEnforced. Session, SessionDir, Env and
	// Output are left to the supervisor.
	Spec cellspec.Spec
	// Depth is the depth the new cell would have, RequesterDepth+1.
	Depth int
	// Missing lists the capsid layers the cell runs without, which its
	// allowlist entry accepted; set only when Allow.
	Missing []capsid.Layer
}

// autoOrder is the order Auto tries backends, strongest sandbox first.
// Process is never picked implicitly: running unsandboxed must be asked for
// by name in the allowlist.
var autoOrder = []cellspec.Backend{cellspec.Scope, cellspec.Podman, cellspec.Bwrap}

// Decide applies the rules in this order, the first that fails deciding:
// allowlist loaded, valid names, cell listed, spawn edge (the owner may
// spawn any listed cell, a cell only those in its spawn list), depth, cells
// in the session, instances of the cell, backend available, limits
// enforceable, every capsid layer applied or accepted as missing, and the
// root's check of the result (Vetted, VetErr). The order puts facts about the request before facts about
// the session, so the same request is denied the same way however busy the
// session is.
func Decide(req Request, al *allowlist.File, st State) Decision {
	d := Decision{Depth: req.RequesterDepth + 1}
	deny := func(c Code, format string, args ...any) Decision {
		d.Code, d.Reason = c, fmt.Sprintf(format, args...)
		return d
	}
	who := "the owner"
	if req.Requester != "" {
		who = fmt.Sprintf("cell %q", req.Requester)
	}

	switch {
	case st.AllowlistErr != nil:
		return deny(NoAllowlist, "no cell may run: the allowlist could not be loaded: %v", st.AllowlistErr)
	case al == nil:
		return deny(NoAllowlist, "no cell may run: no allowlist is loaded")
	}
	if _, err := KeyOf(req.Name, req.Instance, st.KeyFits); err != nil {
		return deny(BadName, "%s asked for cell %q by an invalid name or key: %v", who, req.Name, err)
	}
	if req.Requester != "" {
		if err := cellspec.CheckName(req.Requester); err != nil {
			return deny(BadName, "the requester has an invalid name: %v", err)
		}
	}
	c, ok := al.Cells[req.Name]
	if !ok {
		return deny(NotListed, "cell %q is not listed in %s", req.Name, al.Path)
	}
	if req.Requester != "" {
		parent, ok := al.Cells[req.Requester]
		switch {
		case !ok:
			return deny(EdgeDenied, "cell %q may not spawn %q: the requester is no longer listed in %s",
				req.Requester, req.Name, al.Path)
		case !slices.Contains(parent.Spawn, req.Name):
			return deny(EdgeDenied, "cell %q may not spawn %q: it is not in the spawn list of [cell.%s] in %s",
				req.Requester, req.Name, req.Requester, al.Path)
		}
	}
	if d.Depth > al.SessionLimits.MaxDepth {
		return deny(MaxDepth, "%s may not spawn %q: it would run at depth %d, and session.max_depth in %s is %d",
			who, req.Name, d.Depth, al.Path, al.SessionLimits.MaxDepth)
	}
	if st.Cells >= al.SessionLimits.MaxCells {
		return deny(MaxCells, "cell %q may not start: the session already has %d cells, and session.max_cells in %s is %d",
			req.Name, st.Cells, al.Path, al.SessionLimits.MaxCells)
	}
	if n := st.Instances[req.Name]; n >= c.MaxInstances {
		return deny(MaxInstances, "cell %q may not start: %d instances already run, and its max_instances in %s is %d",
			req.Name, n, al.Path, c.MaxInstances)
	}

	backend, capa, why := resolveBackend(c.Backend, st.Backends)
	if backend == cellspec.Auto {
		return deny(BackendUnavailable, "cell %q may not start: %s", req.Name, why)
	}
	enforced := c.Limits.IsZero() || capa.EnforcesLimits
	if !enforced && !c.AcceptUnenforcedLimits {
		return deny(LimitsUnenforceable,
			"cell %q may not start: backend %s cannot enforce its limits (%s): %s; set accept_unenforced_limits = true in %s to run it anyway",
			req.Name, backend, c.Limits, orUnknown(capa.Reason), al.Path)
	}

	if backend != cellspec.Process {
		var refused []string
		for _, l := range capa.Missing {
			if !slices.Contains(c.AcceptMissingLayers, l) {
				refused = append(refused, string(l))
			}
		}
		if refused != nil {
			return deny(LayersMissing,
				"cell %q may not start: backend %s cannot apply %s here (%s); add them to accept_missing_layers of [cell.%s] in %s to run it without",
				req.Name, backend, strings.Join(refused, ", "), orUnknown(capa.Reason), req.Name, al.Path)
		}
	}

	d.Allow, d.Code = true, OK
	d.Reason = fmt.Sprintf("%s may spawn cell %q: listed in %s, backend %s", who, req.Name, al.Path, backend)
	if !enforced {
		d.Reason += fmt.Sprintf(", limits (%s) not enforced (%s) as the allowlist accepts", c.Limits, orUnknown(capa.Reason))
	}
	if backend != cellspec.Process && len(capa.Missing) > 0 {
		d.Missing = slices.Clone(capa.Missing)
		d.Reason += fmt.Sprintf(", without %s as the allowlist accepts", layerList(capa.Missing))
	}
	d.Spec = cellspec.Spec{
		Name: req.Name,
		Key:  cellspec.Key(req.Name, req.Instance),
		Exec: c.Exec,
		// A copy, so that the supervisor owning the spec cannot change the
		// allowlist shared by later decisions.
		Args:           slices.Clone(c.Args),
		Backend:        backend,
		Network:        c.Network,
		Limits:         c.Limits,
		LimitsEnforced: enforced,
		Restart:        c.Restart,
	}
	if st.Vetted && st.VetErr != nil {
		return Decision{Depth: d.Depth, Spec: d.Spec, Code: Unverified,
			Reason: fmt.Sprintf("cell %q failed verification: %v", req.Name, st.VetErr)}
	}
	return d
}

// resolveBackend returns the backend to use and its capability, or Auto and
// why none can be used.
func resolveBackend(want cellspec.Backend, caps map[cellspec.Backend]Capability) (cellspec.Backend, Capability, string) {
	if want != cellspec.Auto {
		c, ok := caps[want]
		if !ok || !c.Available {
			return cellspec.Auto, c, fmt.Sprintf("its backend %s is unavailable: %s", want, orUnknown(c.Reason))
		}
		return want, c, ""
	}
	b, why := AutoChoice(caps)
	if b == cellspec.Auto {
		return b, Capability{}, why
	}
	return b, caps[b], ""
}

// AutoChoice is the backend "auto" resolves to with these capabilities: the
// first available of scope, podman and bwrap (never process). When none is,
// it returns Auto and why each is unavailable.
func AutoChoice(caps map[cellspec.Backend]Capability) (cellspec.Backend, string) {
	var whys []string
	for _, b := range autoOrder {
		c := caps[b]
		if c.Available {
			return b, ""
		}
		whys = append(whys, fmt.Sprintf("%s: %s", b, orUnknown(c.Reason)))
	}
	return cellspec.Auto, "no sandboxing backend is available (" + strings.Join(whys, "; ") + ")"
}

// MissingLayers is Missing comma-separated, as the audit records it.
func (d Decision) MissingLayers() string {
	s := make([]string, len(d.Missing))
	for i, l := range d.Missing {
		s[i] = string(l)
	}
	return strings.Join(s, ",")
}

func layerList(ls []capsid.Layer) string {
	s := make([]string, len(ls))
	for i, l := range ls {
		s[i] = string(l)
	}
	return strings.Join(s, ", ")
}

func orUnknown(reason string) string {
	if reason == "" {
		return "not probed or no reason given"
	}
	return reason
}
