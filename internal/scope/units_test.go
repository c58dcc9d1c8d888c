package scope

import (
	"strings"
	"testing"

	godbus "github.com/godbus/dbus/v5"

	"github.com/cellproject/cell/internal/cellspec"
	"github.com/cellproject/cell/quota"
)

func TestUnitNames(t *testing.T) {
	if got := SliceName("0123abcd"); got != "app-cell_0123abcd.slice" {
		t.Errorf("SliceName = %s", got)
	}
	got := UnitName("0123abcd", "my-cell@2", 7)
	if got != `cell-0123abcd-my\x2dcell\x402-7.scope` {
		t.Errorf("UnitName = %s", got)
	}
	// No key can make two launches collide or escape the naming scheme.
	for _, key := range []string{"a-b", "a_b", "a@b", "A", "x.scope"} {
		name := UnitName("s", key, 1)
		if strings.Count(name, ".") != 1 || !strings.HasSuffix(name, ".scope") {
			t.Errorf("UnitName(%q) = %s", key, name)
		}
	}
	if UnitName("s", "a-b", 1) == UnitName("s", "a_b", 1) {
		t.Error("distinct keys share a unit name")
	}
}

func TestProperties(t *testing.T) {
	spec := cellspec.Spec{Key: "eye", Session: "s1", Limits: quota.Limits{MemoryBytes: 64 << 20, CPU: 0.5, Pids: 32}}
	props := map[string]godbus.Variant{}
	for _, p := range Properties(spec, "cell-s1.slice", 1234) {
		props[p.Name] = p.Value
	}
	want := map[string]any{
		"Slice":              "cell-s1.slice",
		"MemoryMax":          uint64(64 << 20),
		"MemorySwapMax":      uint64(0),
		"CPUQuotaPerSecUSec": uint64(500000),
		"TasksMax":           uint64(32),
		"KillMode":           "control-group",
	}
	for k, v := range want {
		got, ok := props[k]
		if !ok || got.Value() != v {
			t.Errorf("%s = %v, want %v", k, got, v)
		}
	}
	if pids := props["PIDs"].Value().([]uint32); len(pids) != 1 || pids[0] != 1234 {
		t.Errorf("PIDs = %v", pids)
	}
	none := Properties(cellspec.Spec{Key: "x", Session: "s"}, "cell-s.slice", 1)
	for _, p := range none {
		if p.Name == "MemoryMax" || p.Name == "TasksMax" || p.Name == "CPUQuotaPerSecUSec" {
			t.Errorf("no limits, yet %s is set", p.Name)
		}
	}
}
