package policy

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/cellproject/cell/allowlist"
	"github.com/cellproject/cell/internal/cellspec"
	"github.com/cellproject/cell/quota"
)

func testAllowlist() *allowlist.File {
	limits := quota.Limits{MemoryBytes: 256 << 20, CPU: 0.5}
	return &allowlist.File{
		Path:          "/home/u/.config/cell/allowlist.toml",
		Version:       1,
		SessionLimits: allowlist.SessionLimits{MaxCells: 4, MaxDepth: 2},
		Cells: map[string]allowlist.Cell{
			"eye":    {Name: "eye", Exec: "/bin/eye", Args: []string{"-v"}, Spawn: []string{"retina", "lens"}, MaxInstances: 2},
			"retina": {Name: "retina", Exec: "/bin/retina", Spawn: []string{"cone"}, MaxInstances: 1, Limits: limits},
			"cone":   {Name: "cone", Exec: "/bin/cone", MaxInstances: 1, Limits: limits, AcceptUnenforcedLimits: true},
			"lens":   {Name: "lens", Exec: "/bin/lens", Backend: cellspec.Podman, Network: true, MaxInstances: 1},
			"dev":    {Name: "dev", Exec: "/bin/dev", Backend: cellspec.Process, MaxInstances: 1, Limits: limits},
		},
	}
}

// Scope is off, as on a machine without a systemd user session; Podman runs
// but cannot enforce limits (rootless cgroup v1).
func hybridHost() State {
	return State{
		Instances: map[string]int{},
		Backends: map[cellspec.Backend]Capability{
			cellspec.Scope:   {Reason: "no systemd user bus"},
			cellspec.Podman:  {Available: true, Reason: "cgroup v1: rootless limits unsupported"},
			cellspec.Bwrap:   {Available: true, Reason: "namespaces only"},
			cellspec.Process: {Available: true, Reason: "no sandbox"},
		},
	}
}

func TestDecide(t *testing.T) {
	owner := func(name string) Request { return Request{Name: name} }
	from := func(req string, depth int, name string) Request {
		return Request{Requester: req, RequesterDepth: depth, Name: name}
	}
	withState := func(f func(*State)) State { st := hybridHost(); f(&st); return st }
	full := State{
		Instances: map[string]int{},
		Backends: map[cellspec.Backend]Capability{
			cellspec.Scope: {Available: true, EnforcesLimits: true},
		},
	}
	for _, tt := range []struct {
		name    string
		req     Request
		al      *allowlist.File // nil: testAllowlist()
		noAL    bool
		st      State
		code    Code
		backend cellspec.Backend // for allows
		reason  string           // a fragment of Reason
	}{
		{name: "owner spawns listed cell", req: owner("eye"), st: hybridHost(), code: OK, backend: cellspec.Podman, reason: "the owner may spawn"},
		{name: "auto prefers scope", req: owner("eye"), st: full, code: OK, backend: cellspec.Scope},
		{name: "auto falls to bwrap", req: owner("eye"), st: withState(func(s *State) { s.Backends[cellspec.Podman] = Capability{} }), code: OK, backend: cellspec.Bwrap},
		{name: "owner skips edges", req: owner("cone"), st: hybridHost(), code: OK, backend: cellspec.Podman},
		{name: "edge allowed", req: from("eye", 1, "retina"), st: full, code: OK, backend: cellspec.Scope},
		{name: "named process", req: Request{Name: "dev"}, al: func() *allowlist.File {
			al := testAllowlist()
			c := al.Cells["dev"]
			c.Limits = quota.Limits{}
			al.Cells["dev"] = c
			return al
		}(), st: hybridHost(), code: OK, backend: cellspec.Process},
		{name: "unenforced accepted", req: from("retina", 2, "cone"), al: func() *allowlist.File {
			al := testAllowlist()
			al.SessionLimits.MaxDepth = 3
			return al
		}(), st: hybridHost(), code: OK, backend: cellspec.Podman, reason: "not enforced"},

		{name: "allowlist error", req: owner("eye"), st: withState(func(s *State) { s.AllowlistErr = errors.New("allow.toml:3: bad") }), code: NoAllowlist, reason: "allow.toml:3: bad"},
		{name: "nil allowlist", req: owner("eye"), noAL: true, st: hybridHost(), code: NoAllowlist},
		{name: "allowlist error before bad name", req: owner("../x"), st: withState(func(s *State) { s.AllowlistErr = errors.New("x") }), code: NoAllowlist},
		{name: "bad name", req: owner("../etc"), st: hybridHost(), code: BadName, reason: "the owner asked"},
		{name: "empty name", req: owner(""), st: hybridHost(), code: BadName},
		{name: "bad instance", req: Request{Name: "eye", Instance: "a@b"}, st: hybridHost(), code: BadName, reason: `cell "eye"`},
		{name: "bad requester", req: from("x/y", 1, "eye"), st: hybridHost(), code: BadName, reason: "requester"},
		{name: "bad name before not listed", req: owner("no/such"), st: hybridHost(), code: BadName},
		{name: "not listed", req: owner("ghost"), st: hybridHost(), code: NotListed, reason: `cell "ghost" is not listed in /home/u/.config/cell/allowlist.toml`},
		{name: "not listed before edge", req: from("eye", 1, "ghost"), st: hybridHost(), code: NotListed},
		{name: "edge denied", req: from("retina", 1, "eye"), st: hybridHost(), code: EdgeDenied, reason: `cell "retina" may not spawn "eye"`},
		{name: "no self edge", req: from("cone", 1, "cone"), st: hybridHost(), code: EdgeDenied},
		{name: "requester unlisted", req: from("gone", 1, "eye"), st: hybridHost(), code: EdgeDenied, reason: "no longer listed"},
		{name: "edge before depth", req: from("retina", 9, "eye"), st: hybridHost(), code: EdgeDenied},
		{name: "max depth", req: from("retina", 2, "cone"), st: hybridHost(), code: MaxDepth, reason: "depth 3"},
		{name: "depth before cells", req: from("retina", 2, "cone"), st: withState(func(s *State) { s.Cells = 99 }), code: MaxDepth},
		{name: "max cells", req: owner("eye"), st: withState(func(s *State) { s.Cells = 4 }), code: MaxCells, reason: "max_cells"},
		{name: "cells before instances", req: owner("lens"), st: withState(func(s *State) { s.Cells = 4; s.Instances["lens"] = 1 }), code: MaxCells},
		{name: "max instances", req: owner("lens"), st: withState(func(s *State) { s.Cells = 1; s.Instances["lens"] = 1 }), code: MaxInstances, reason: "max_instances"},
		{name: "second instance fits", req: Request{Name: "eye", Instance: "2"}, st: withState(func(s *State) { s.Cells = 1; s.Instances["eye"] = 1 }), code: OK, backend: cellspec.Podman},
		{name: "instances before backend", req: owner("lens"), st: State{Instances: map[string]int{"lens": 1}}, code: MaxInstances},
		{name: "named backend unavailable", req: owner("lens"), st: withState(func(s *State) { s.Backends[cellspec.Podman] = Capability{Reason: "podman not installed"} }), code: BackendUnavailable, reason: "podman not installed"},
		{name: "named backend not probed", req: owner("lens"), st: State{}, code: BackendUnavailable, reason: "podman is unavailable"},
		{name: "auto never picks process", req: owner("eye"), st: State{Backends: map[cellspec.Backend]Capability{cellspec.Process: {Available: true}}}, code: BackendUnavailable, reason: "scope: not probed"},
		{name: "limits unenforceable", req: from("eye", 1, "retina"), st: hybridHost(), code: LimitsUnenforceable, reason: "cgroup v1"},
		{name: "process limits unenforceable", req: owner("dev"), st: hybridHost(), code: LimitsUnenforceable, reason: "accept_unenforced_limits"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			al := tt.al
			if al == nil && !tt.noAL {
				al = testAllowlist()
			}
			d := Decide(tt.req, al, tt.st)
			if d.Code != tt.code || d.Allow != (tt.code == OK) {
				t.Fatalf("Decide = %v %q (%s), want %q", d.Allow, d.Code, d.Reason, tt.code)
			}
			if !strings.Contains(d.Reason, tt.reason) || d.Reason == "" {
				t.Errorf("Reason %q does not contain %q", d.Reason, tt.reason)
			}
			if d.Depth != tt.req.RequesterDepth+1 {
				t.Errorf("Depth = %d", d.Depth)
			}
			if !d.Allow {
				if !reflect.DeepEqual(d.Spec, cellspec.Spec{}) {
					t.Errorf("denied with a Spec: %+v", d.Spec)
				}
				return
			}
			if d.Spec.Backend != tt.backend {
				t.Errorf("Backend = %q, want %q", d.Spec.Backend, tt.backend)
			}
		})
	}
}

func TestDecideSpec(t *testing.T) {
	al := testAllowlist()
	st := hybridHost()
	d := Decide(Request{Name: "eye", Instance: "left"}, al, st)
	want := cellspec.Spec{
		Name: "eye", Key: "eye@left", Exec: "/bin/eye", Args: []string{"-v"},
		Backend: cellspec.Podman, LimitsEnforced: true,
	}
	if !reflect.DeepEqual(d.Spec, want) {
		t.Errorf("Spec = %+v\nwant   %+v", d.Spec, want)
	}
	d.Spec.Args[0] = "--evil"
	if al.Cells["eye"].Args[0] != "-v" {
		t.Error("the Spec's Args alias the allowlist's")
	}

	d = Decide(Request{Name: "lens"}, al, st)
	if !d.Spec.Network || d.Spec.Key != "lens" {
		t.Errorf("lens Spec = %+v", d.Spec)
	}

	st.Backends[cellspec.Podman] = Capability{Available: true, EnforcesLimits: true}
	d = Decide(Request{Requester: "eye", RequesterDepth: 1, Name: "retina"}, al, st)
	if !d.Allow || !d.Spec.LimitsEnforced || d.Spec.Limits != al.Cells["retina"].Limits || d.Depth != 2 {
		t.Errorf("retina = %+v", d)
	}

	al.SessionLimits.MaxDepth = 3
	st.Backends[cellspec.Podman] = Capability{Available: true, Reason: "cgroup v1"}
	d = Decide(Request{Requester: "retina", RequesterDepth: 2, Name: "cone"}, al, st)
	if !d.Allow || d.Spec.LimitsEnforced || d.Spec.Limits.IsZero() {
		t.Errorf("cone with accepted unenforced limits = %+v", d)
	}
}

func TestKeyOf(t *testing.T) {
	if key, err := KeyOf("eye", "left", nil); err != nil || key != "eye@left" {
		t.Fatalf("KeyOf(eye, left) = %q, %v", key, err)
	}
	tooLong := errors.New("too long for sun_path")
	for _, tc := range []struct{ name, instance string }{{"../x", ""}, {"eye", "a@b"}, {"", ""}, {"eye", "x/y"}} {
		if _, err := KeyOf(tc.name, tc.instance, nil); !errors.Is(err, ErrBadKey) {
			t.Errorf("KeyOf(%q, %q): %v, want ErrBadKey", tc.name, tc.instance, err)
		}
	}
	if _, err := KeyOf("eye", "", func(string) error { return tooLong }); !errors.Is(err, ErrBadKey) || !errors.Is(err, tooLong) {
		t.Errorf("a key that does not fit: %v", err)
	}
}

// The vetting hook's outcome is part of the decision: a refusal is
// Unverified, with the spec named; before it ran, Decide allows.
func TestDecideVetOutcome(t *testing.T) {
	st := hybridHost()
	req := Request{Name: "eye"}
	if d := Decide(req, testAllowlist(), st); !d.Allow {
		t.Fatalf("before vetting: %+v", d)
	}
	st.Vetted, st.VetErr = true, errors.New("sha256 mismatch")
	d := Decide(req, testAllowlist(), st)
	if d.Allow || d.Code != Unverified || !strings.Contains(d.Reason, "sha256 mismatch") || d.Spec.Exec == "" {
		t.Fatalf("after a failed vet: %+v", d)
	}
	st.VetErr = nil
	if d := Decide(req, testAllowlist(), st); !d.Allow {
		t.Fatalf("after a passed vet: %+v", d)
	}
}
