package quota

import (
	"errors"
	"testing"
)

func TestFromTOML(t *testing.T) {
	l, errs := FromTOML(map[string]any{"memory": "256M", "cpu": int64(2), "pids": int64(64)})
	if len(errs) != 0 || l != (Limits{MemoryBytes: 256 << 20, CPU: 2, Pids: 64}) {
		t.Fatalf("good table: %+v, %v", l, errs)
	}
	for _, tc := range []struct {
		name string
		t    map[string]any
		key  string
	}{
		{"bad size", map[string]any{"memory": "lots"}, "memory"},
		{"zero bytes", map[string]any{"memory": int64(0)}, "memory"},
		{"bool memory", map[string]any{"memory": true}, "memory"},
		{"zero cpu", map[string]any{"cpu": 0.0}, "cpu"},
		{"huge cpu", map[string]any{"cpu": 5e6}, "cpu"},
		{"string cpu", map[string]any{"cpu": "half"}, "cpu"},
		{"zero pids", map[string]any{"pids": int64(0)}, "pids"},
		{"float pids", map[string]any{"pids": 1.5}, "pids"},
	} {
		_, errs := FromTOML(tc.t)
		if tc.key == "" {
			continue
		}
		if len(errs) != 1 || errs[0].Key != tc.key || !errors.Is(errs[0], ErrInvalid) {
			t.Errorf("%s: got %v", tc.name, errs)
		}
	}
}
