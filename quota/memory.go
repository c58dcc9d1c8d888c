package quota

import (
	"fmt"
	"math/bits"
	"strconv"
)

// units are the binary multipliers ParseMemory knows, largest first so that
// formatMemory picks the shortest exact spelling.
var units = []struct {
	suffix byte
	shift  uint
}{
	{'T', 40},
	{'G', 30},
	{'M', 20},
	{'K', 10},
}

// ParseMemory parses a memory size into bytes.
//
// The form is a decimal number, optionally with a fraction, followed by an
// optional unit: K, M, G or T (either case), each binary (K = 1024 bytes),
// optionally followed by "i" and/or "B" ("512K", "512Ki", "512KiB", "512KB"
// are all 524288), or "B" alone for bytes. A fraction is allowed with a unit
// ("1.5G") and the result is truncated to whole bytes. No sign, spaces or
// exponent are accepted, and the result must be at least one byte and fit in
// a uint64: a zero limit is written by leaving the limit out, so "0" here is
// a mistake, not a request for no memory.
//
// Every error wraps ErrInvalid.
func ParseMemory(s string) (uint64, error) {
	bad := func(why string) (uint64, error) {
		return 0, fmt.Errorf("%w: memory %q: %s", ErrInvalid, s, why)
	}
	if s == "" {
		return bad("empty")
	}
	if s[0] == '-' {
		return bad("negative")
	}

	// Split number and unit.
	end := 0
	for end < len(s) && (s[end] >= '0' && s[end] <= '9' || s[end] == '.') {
		end++
	}
	num, unit := s[:end], s[end:]
	shift, ok := parseUnit(unit)
	if !ok {
		return bad(fmt.Sprintf("unknown unit %q (want K, M, G or T, optionally with i or B)", unit))
	}

	whole, frac := num, ""
	for i := 0; i < len(num); i++ {
		if num[i] == '.' {
			whole, frac = num[:i], num[i+1:]
			break
		}
	}
	if whole == "" {
		return bad("no digits before the unit")
	}
	if len(whole) != len(num) && (frac == "" || shift == 0) {
		// "1." is a typo, and "1.5" bytes has no meaning.
		return bad("a fraction needs digits after the point and a unit")
	}
	for i := 0; i < len(frac); i++ {
		if frac[i] == '.' {
			return bad("more than one decimal point")
		}
	}

	n, err := strconv.ParseUint(whole, 10, 64)
	if err != nil {
		return bad("too large")
	}
	if n > (1<<64-1)>>shift {
		return bad("too large")
	}
	n <<= shift
	fracBytes, err := fractionBytes(frac, shift)
	if err != nil {
		return bad(err.Error())
	}
	total, carry := bits.Add64(n, fracBytes, 0)
	if carry != 0 {
		return bad("too large")
	}
	if total == 0 {
		return bad("zero bytes; leave the limit out for no limit")
	}
	return total, nil
}

// parseUnit maps a unit suffix to its power-of-two shift.
func parseUnit(u string) (uint, bool) {
	switch u {
	case "", "B":
		return 0, true
	}
	var shift uint
	found := false
	for _, x := range units {
		if u[0] == x.suffix || u[0] == x.suffix+('a'-'A') {
			shift, found = x.shift, true
			break
		}
	}
	if !found {
		return 0, false
	}
	switch u[1:] {
	case "", "i", "B", "iB":
		return shift, true
	}
	return 0, false
}

// fractionBytes converts the digits after the decimal point, scaled by
// 2^shift, to whole bytes (truncated). Only the first 19 digits count:
// further digits are below one byte even for T (2^40 < 10^13).
func fractionBytes(frac string, shift uint) (uint64, error) {
	if len(frac) > 19 {
		frac = frac[:19]
	}
	if frac == "" {
		return 0, nil
	}
	num, err := strconv.ParseUint(frac, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("bad fraction %q", frac)
	}
	den := uint64(1)
	for range len(frac) {
		den *= 10
	}
	// num < den <= 10^19 and 2^shift <= 2^40: the 128-bit product cannot
	// overflow the division, whose quotient is below 2^shift.
	hi, lo := bits.Mul64(num, 1<<shift)
	q, _ := bits.Div64(hi, lo, den)
	return q, nil
}

// formatMemory renders n bytes in the form ParseMemory reads: with the largest
// unit that divides n exactly, or as plain bytes.
func formatMemory(n uint64) string {
	for _, u := range units {
		if n != 0 && n&(1<<u.shift-1) == 0 {
			return strconv.FormatUint(n>>u.shift, 10) + string(u.suffix)
		}
	}
	return strconv.FormatUint(n, 10)
}
