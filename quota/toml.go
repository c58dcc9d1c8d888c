package quota

import (
	"fmt"
	"math"
	"sort"

	"github.com/cellproject/cell/internal/tomlpos"
)

// FieldError is one problem with one key of a limits table, for the
// config loader to report at that key's file:line.
type FieldError struct {
	Key string // "memory", "cpu", "pids" or an unknown key
	Msg string
	Err error // ErrInvalid, or a ParseMemory error that wraps it
}

func (e FieldError) Error() string { return e.Key + ": " + e.Msg }

func (e FieldError) Unwrap() error { return e.Err }

// TOMLKeys are the keys of a limits table.
var TOMLKeys = []string{"memory", "cpu", "pids"}

// FromTOML reads a decoded TOML table of limits ({ memory = "256M", cpu =
// 0.5, pids = 64 }), the one reading the allowlist and Cell.toml share.
// Every problem is returned, in key order. Keys other than TOMLKeys are
// skipped: the loader reports them with every other unknown key.
func FromTOML(t map[string]any) (Limits, []FieldError) {
	var l Limits
	var errs []FieldError
	fail := func(key string, err error, format string, args ...any) {
		if err == nil {
			err = ErrInvalid
		}
		errs = append(errs, FieldError{Key: key, Msg: fmt.Sprintf(format, args...), Err: err})
	}
	keys := make([]string, 0, len(t))
	for k := range t {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := t[k]
		switch k {
		case "memory":
			switch m := v.(type) {
			case string:
				n, err := ParseMemory(m)
				if err != nil {
					fail(k, err, "%v", err)
				}
				l.MemoryBytes = n
			case int64:
				if m < 1 {
					fail(k, nil, "%d bytes: must be at least 1; leave memory out for no limit", m)
				} else {
					l.MemoryBytes = uint64(m)
				}
			default:
				fail(k, nil, `must be a size such as "256M" or a number of bytes, not %s`, tomlpos.TypeName(v))
			}
		case "cpu":
			// TOML reads "cpu = 2" as an integer.
			var cpu float64
			switch n := v.(type) {
			case float64:
				cpu = n
			case int64:
				cpu = float64(n)
			default:
				fail(k, nil, "must be a number of cores such as 0.5, not %s", tomlpos.TypeName(v))
				continue
			}
			if cpu == 0 {
				fail(k, nil, "0 cores: leave cpu out for no limit")
			} else if err := (Limits{CPU: cpu}).Validate(); err != nil {
				fail(k, err, "%v", err)
			} else {
				l.CPU = cpu
			}
		case "pids":
			n, ok := v.(int64)
			switch {
			case !ok:
				fail(k, nil, "must be an integer, not %s", tomlpos.TypeName(v))
			case n < 1 || n > math.MaxInt64:
				fail(k, nil, "%d is out of range: must be at least 1; leave pids out for no limit", n)
			default:
				l.Pids = uint64(n)
			}
		}
	}
	return l, errs
}
