// Package quota is the one type for a cell's resource limits (memory, CPU,
// pids), parsed from the allowlist's strings and numbers and translated for
// each backend.
package quota

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
