package scope

import (
	"fmt"
	"math"
	"strings"

	sdbus "github.com/coreos/go-systemd/v22/dbus"
	godbus "github.com/godbus/dbus/v5"

	"github.com/cellproject/cell/internal/cellspec"
	"github.com/cellproject/cell/quota"
)

// SliceName is the slice holding every scope of a session. Its one dash
// puts it under app.slice, the user manager's own home for applications,
// which always exists: a parent of Cell's own (cell.slice) would be
// created implicitly and then stay active after every session.
func SliceName(session string) string { return slicePrefix + escape(session) + ".slice" }

// slicePrefix starts every session slice's name; the underscore keeps the
// session below app.slice rather than opening another level.
const slicePrefix = "app-cell_"

// UnitName is the scope of one launch. seq makes every launch's name unique:
// a scope of an earlier instance of the same key may still be going away.
func UnitName(session, key string, seq uint64) string {
	return fmt.Sprintf("cell-%s-%s-%d.scope", escape(session), escape(key), seq)
}

// escape keeps [A-Za-z0-9_] and escapes everything else the way
// systemd-escape does (\xNN), so that no key can change the unit's type or
// its place in the slice hierarchy ("-" is a separator in slice names).
func escape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, `\x%02x`, c)
	}
	return b.String()
}

// cpuPeriodUSec is the CPU quota's accounting unit: systemd's
// CPUQuotaPerSecUSec counts microseconds of CPU time per second.
const cpuPeriodUSec = 1_000_000

// Properties are the transient unit's settings for one cell.
func Properties(spec cellspec.Spec, slice string, pid int) []sdbus.Property {
	props := []sdbus.Property{
		sdbus.PropDescription(fmt.Sprintf("Cell %s of session %s", spec.Key, spec.Session)),
		sdbus.PropSlice(slice),
		sdbus.PropPids(uint32(pid)),
		// Stop kills every process of the scope, not only the main one.
		{Name: "KillMode", Value: godbus.MakeVariant("control-group")},
		// Collect the unit even when it failed (the cell crashed, or was
		// killed by the OOM killer), so that no failed scope lingers.
		{Name: "CollectMode", Value: godbus.MakeVariant("inactive-or-failed")},
	}
	return append(props, limitProperties(spec.Limits)...)
}

func limitProperties(l quota.Limits) []sdbus.Property {
	var props []sdbus.Property
	if l.MemoryBytes > 0 {
		props = append(props,
			sdbus.Property{Name: "MemoryAccounting", Value: godbus.MakeVariant(true)},
			sdbus.Property{Name: "MemoryMax", Value: godbus.MakeVariant(l.MemoryBytes)},
			// No swap either: a limit the cell can swap around is no limit.
			sdbus.Property{Name: "MemorySwapMax", Value: godbus.MakeVariant(uint64(0))})
	}
	if l.CPU > 0 {
		props = append(props,
			sdbus.Property{Name: "CPUAccounting", Value: godbus.MakeVariant(true)},
			sdbus.Property{Name: "CPUQuotaPerSecUSec", Value: godbus.MakeVariant(uint64(math.Round(l.CPU * cpuPeriodUSec)))})
	}
	if l.Pids > 0 {
		props = append(props,
			sdbus.Property{Name: "TasksAccounting", Value: godbus.MakeVariant(true)},
			sdbus.Property{Name: "TasksMax", Value: godbus.MakeVariant(l.Pids)})
	}
	return props
}
