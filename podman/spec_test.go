package podman

import (
	"encoding/json"
	"errors"
	"os"
	"slices"
	"testing"

	"github.com/containers/podman/v5/pkg/specgen"
	rspec "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/cellproject/cell/internal/cellspec"
	"github.com/cellproject/cell/quota"
)

func testSpec() cellspec.Spec {
	return cellspec.Spec{
		Name: "eye", Key: "eye@left", Session: "0123456789abcdef",
		SessionDir: "/run/user/1000/cell/0123456789abcdef",
		Exec:       "/opt/vision/bin/eye", Args: []string{"-v"},
		Backend: cellspec.Podman,
		Env:     []string{"CELL_NAME=eye", "CELL_TOKEN=a=b"},
		Limits:  quota.Limits{MemoryBytes: 64 << 20, CPU: 0.5, Pids: 32}, LimitsEnforced: true,
	}
}

func TestSpecConfinement(t *testing.T) {
	priv := t.TempDir()
	root := priv + "/root-1"
	s, err := Spec(testSpec(), root, "/run/user/1000/cell")
	if err != nil {
		t.Fatal(err)
	}
	prof, err := os.ReadFile(s.SeccompProfilePath)
	if err != nil {
		t.Fatalf("seccomp profile: %v", err)
	}
	var seccomp rspec.LinuxSeccomp
	if err := json.Unmarshal(prof, &seccomp); err != nil {
		t.Fatalf("seccomp profile: %v", err)
	}
	if err := s.Validate(); err != nil {
		t.Fatalf("the spec does not validate: %v", err)
	}
	checks := []struct {
		what string
		ok   bool
	}{
		{"rootfs is the per-cell root", s.Rootfs == root},
		{"capsid profile in the private dir", s.SeccompProfilePath == priv+"/"+ProfileName},
		{"profile: unknown calls fail with ENOSYS", seccomp.DefaultAction == rspec.ActErrno && seccomp.DefaultErrnoRet != nil && *seccomp.DefaultErrnoRet == 38},
		{"/tmp bounded by the memory limit", slices.Contains(s.Mounts[0].Options, "size=67108864")},
		{"no image", s.Image == ""},
		{"command is exec and args", slices.Equal(s.Command, []string{"/opt/vision/bin/eye", "-v"})},
		{"env is the spec's, split at the first =", len(s.Env) == 2 && s.Env["CELL_TOKEN"] == "a=b"},
		{"podman's default env is unset", s.UnsetEnvAll != nil && *s.UnsetEnvAll},
		{"no network", s.NetNS.NSMode == specgen.NoNetwork},
		{"keep-id", s.UserNS.NSMode == specgen.KeepID},
		{"read-only root", s.ReadOnlyFilesystem != nil && *s.ReadOnlyFilesystem},
		{"no default tmpfs mounts", s.ReadWriteTmpfs != nil && !*s.ReadWriteTmpfs},
		{"all caps dropped", slices.Equal(s.CapDrop, []string{"all"})},
		{"no new privileges", s.NoNewPrivileges != nil && *s.NoNewPrivileges},
		{"removed on exit", s.Remove != nil && *s.Remove},
		{"session label", s.Labels[LabelSession] == "0123456789abcdef"},
		{"cell label", s.Labels[LabelCell] == "eye@left"},
		{"base label", s.Labels[LabelBase] == "/run/user/1000/cell"},
		{"name", s.Name == "cell-0123456789abcdef-eye_left"},
		{"memory", s.ResourceLimits != nil && *s.ResourceLimits.Memory.Limit == 64<<20},
		{"cpu", s.ResourceLimits != nil && *s.ResourceLimits.CPU.Quota == 50000 && *s.ResourceLimits.CPU.Period == 100000},
		{"pids", s.ResourceLimits != nil && s.ResourceLimits.Pids.Limit == 32},
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("%s: not so in %+v", c.what, s)
		}
	}
	var dests []string
	for _, m := range s.Mounts {
		dests = append(dests, m.Destination)
		if m.Destination != "/tmp" && m.Destination != "/run/user/1000/cell/0123456789abcdef" && !slices.Contains(m.Options, "ro") {
			t.Errorf("mount %s is writable", m.Destination)
		}
	}
	want := []string{"/tmp", "/run/user/1000/cell/0123456789abcdef", "/opt/vision/bin/eye"}
	if !slices.Equal(dests, want) {
		t.Errorf("mounts %v, want exactly %v", dests, want)
	}
}

func TestSpecNetworkAndUnenforcedLimits(t *testing.T) {
	sp := testSpec()
	sp.Network = true
	sp.LimitsEnforced = false
	sp.Limits.MemoryBytes = 0
	s, err := Spec(sp, t.TempDir()+"/r", "/b")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(s.Mounts[0].Options, "size=67108864") {
		t.Errorf("/tmp without a memory limit: %v, want the default bound", s.Mounts[0].Options)
	}
	if s.NetNS.NSMode == specgen.NoNetwork {
		t.Error("a cell granted network has none")
	}
	// Limits the allowlist accepted as unenforced are not passed on: on a
	// machine that cannot enforce them Podman would fail or warn.
	if s.ResourceLimits != nil {
		t.Errorf("unenforced limits passed to Podman: %+v", s.ResourceLimits)
	}
}

func TestSpecRejects(t *testing.T) {
	for name, mod := range map[string]func(*cellspec.Spec){
		"relative exec":   func(s *cellspec.Spec) { s.Exec = "bin/eye" },
		"unclean exec":    func(s *cellspec.Spec) { s.Exec = "/opt/../etc/eye" },
		"no session dir":  func(s *cellspec.Spec) { s.SessionDir = "" },
		"env without =":   func(s *cellspec.Spec) { s.Env = []string{"CELL_NAME"} },
		"env without key": func(s *cellspec.Spec) { s.Env = []string{"=x"} },
	} {
		sp := testSpec()
		mod(&sp)
		if _, err := Spec(sp, "/r", "/b"); !errors.Is(err, ErrInvalidSpec) {
			t.Errorf("%s: %v, want ErrInvalidSpec", name, err)
		}
	}
}

func TestResources(t *testing.T) {
	if r := Resources(quota.Limits{}); r != nil {
		t.Errorf("no limits: %+v, want nil", r)
	}
	r := Resources(quota.Limits{CPU: 0.001})
	if *r.CPU.Quota != 1000 {
		t.Errorf("tiny cpu quota %d, want the 1 ms floor", *r.CPU.Quota)
	}
	if r.Memory != nil || r.Pids != nil {
		t.Errorf("unset limits set: %+v", r)
	}
	r = Resources(quota.Limits{MemoryBytes: 1 << 30})
	if *r.Memory.Limit != 1<<30 || *r.Memory.Swap != 1<<30 {
		t.Errorf("memory %d swap %d, want 1G and no swap beyond it", *r.Memory.Limit, *r.Memory.Swap)
	}
}

func TestMountPointsParentsFirst(t *testing.T) {
	dirs, files := mountPoints(testSpec())
	pos := map[string]int{}
	for i, d := range dirs {
		pos[d] = i
	}
	for _, d := range []string{"/run", "/run/user", "/run/user/1000/cell/0123456789abcdef", "/opt/vision/bin", "/tmp", "/etc"} {
		if _, ok := pos[d]; !ok {
			t.Errorf("mount point dir %s missing from %v", d, dirs)
		}
	}
	if pos["/run"] > pos["/run/user"] || pos["/opt"] > pos["/opt/vision"] {
		t.Errorf("a child sorts before its parent: %v", dirs)
	}
	if !slices.Contains(files, "/opt/vision/bin/eye") {
		t.Errorf("the binary's mount point is missing from %v", files)
	}
}
