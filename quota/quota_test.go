package quota

import (
	"errors"
	"math"
	"testing"
)

func TestParseMemory(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want uint64
	}{
		{"65536", 65536},
		{"1B", 1},
		{"512K", 512 << 10},
		{"512k", 512 << 10},
		{"512Ki", 512 << 10},
		{"512KiB", 512 << 10},
		{"512KB", 512 << 10},
		{"256M", 256 << 20},
		{"1G", 1 << 30},
		{"1.5G", 3 << 29},
		{"0.5K", 512},
		{"1.0001K", 1024}, // truncated to whole bytes
		{"2T", 2 << 40},
		{"16777215T", 16777215 << 40},
		{"18446744073709551615", math.MaxUint64},
	} {
		got, err := ParseMemory(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseMemory(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
}

func TestParseMemoryRejects(t *testing.T) {
	for _, in := range []string{
		"", "-1", "-1G", "+1G", "0", "0K", "0.0001K", "K", "G", ".5G", "1.", "1.G",
		"1.5", "1.5B", "1..5G", "1.5.5G", "1 G", " 1G", "1G ", "1X", "1KiBB", "1Bi",
		"1e9", "0x10", "NaN", "Inf",
		"18446744073709551616", "16777216T", "16777216.5T", "99999999999999999999999K",
	} {
		if got, err := ParseMemory(in); err == nil {
			t.Errorf("ParseMemory(%q) = %d, want an error", in, got)
		} else if !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseMemory(%q) error %v does not wrap ErrInvalid", in, err)
		}
	}
}

func TestLimitsString(t *testing.T) {
	for _, tt := range []struct {
		l    Limits
		want string
	}{
		{Limits{}, "none"},
		{Limits{MemoryBytes: 256 << 20, CPU: 0.5, Pids: 64}, "memory=256M cpu=0.5 pids=64"},
		{Limits{MemoryBytes: 3 << 29}, "memory=1536M"},
		{Limits{MemoryBytes: 1000}, "memory=1000"},
		{Limits{MemoryBytes: 4 << 40}, "memory=4T"},
		{Limits{CPU: 2}, "cpu=2"},
		{Limits{Pids: 1}, "pids=1"},
	} {
		if got := tt.l.String(); got != tt.want {
			t.Errorf("%#v.String() = %q, want %q", tt.l, got, tt.want)
		}
	}
}

// The memory text of String must read back to the same number of bytes, so
// that what the audit log shows is exactly what was enforced.
func TestMemoryRoundTrip(t *testing.T) {
	for _, n := range []uint64{1, 1023, 1024, 1025, 3 << 29, 5 << 40, math.MaxUint64} {
		s := formatMemory(n)
		got, err := ParseMemory(s)
		if err != nil || got != n {
			t.Errorf("ParseMemory(formatMemory(%d) = %q) = %d, %v", n, s, got, err)
		}
	}
}

func TestValidate(t *testing.T) {
	for _, tt := range []struct {
		l  Limits
		ok bool
	}{
		{Limits{}, true},
		{Limits{CPU: 0.01}, true},
		{Limits{CPU: MaxCPU}, true},
		{Limits{MemoryBytes: 1, Pids: 1}, true},
		{Limits{CPU: -0.5}, false},
		{Limits{CPU: MaxCPU + 0.5}, false},
		{Limits{CPU: math.NaN()}, false},
		{Limits{CPU: math.Inf(1)}, false},
		{Limits{CPU: math.Inf(-1)}, false},
	} {
		err := tt.l.Validate()
		if (err == nil) != tt.ok {
			t.Errorf("%#v.Validate() = %v, want ok=%v", tt.l, err, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("%#v.Validate() error %v does not wrap ErrInvalid", tt.l, err)
		}
	}
}

func FuzzParseMemory(f *testing.F) {
	for _, s := range []string{"1", "1.5G", "512KiB", "-1", "9999999999999999999T"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseMemory(s)
		if err != nil {
			return
		}
		if n == 0 {
			t.Fatalf("ParseMemory(%q) = 0 without error", s)
		}
		if back, err := ParseMemory(formatMemory(n)); err != nil || back != n {
			t.Fatalf("round trip of %q: %d -> %q -> %d, %v", s, n, formatMemory(n), back, err)
		}
	})
}
