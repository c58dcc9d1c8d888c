package quota

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// MaxCPU is the largest CPU limit accepted, in cores. It is far above any
// machine a session runs on; its job is to catch typos such as cpu = 50000
// meant as a percentage or a CFS quota in microseconds.
const MaxCPU = 1024

// ErrInvalid is wrapped by every error of ParseMemory and Limits.Validate.
var ErrInvalid = errors.New("quota: invalid limit")

// Limits are a cell's resource limits; a zero field means "no limit".
type Limits struct {
	// MemoryBytes caps the cell's memory (cgroup memory.max).
	MemoryBytes uint64
	// CPU caps the cell's CPU time in cores: 0.5 is half of one core.
	CPU float64
	// Pids caps the number of tasks (cgroup pids.max).
	Pids uint64
}

// IsZero reports whether no limit is set.
func (l Limits) IsZero() bool { return l == Limits{} }

// Validate reports whether l is usable: CPU, when set, must be a finite
// number of cores in (0, MaxCPU]. Memory and pids need no check beyond their
// type: zero means unset and any other value is a limit.
func (l Limits) Validate() error {
	switch {
	case l.CPU == 0:
		return nil
	case math.IsNaN(l.CPU) || math.IsInf(l.CPU, 0):
		return fmt.Errorf("%w: cpu %v is not a finite number", ErrInvalid, l.CPU)
	case l.CPU < 0:
		return fmt.Errorf("%w: cpu %v is negative", ErrInvalid, l.CPU)
	case l.CPU > MaxCPU:
		return fmt.Errorf("%w: cpu %v is above %d cores", ErrInvalid, l.CPU, MaxCPU)
	}
	return nil
}

// String renders the set limits as "memory=256M cpu=0.5 pids=64", in that
// order, or "none". Memory uses the largest binary unit that divides it
// exactly, so the text parses back to the same value with ParseMemory.
func (l Limits) String() string {
	if l.IsZero() {
		return "none"
	}
	var parts []string
	if l.MemoryBytes != 0 {
		parts = append(parts, "memory="+formatMemory(l.MemoryBytes))
	}
	if l.CPU != 0 {
		parts = append(parts, "cpu="+strconv.FormatFloat(l.CPU, 'g', -1, 64))
	}
	if l.Pids != 0 {
		parts = append(parts, "pids="+strconv.FormatUint(l.Pids, 10))
	}
	return strings.Join(parts, " ")
}
