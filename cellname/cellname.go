// Package cellname defines which strings may name a cell, so that a name is
// always safe to use as a file name in the session dir, a journal field and a
// unit or container label.
package cellname

import (
	"errors"
	"fmt"
)

// MaxLen is the longest name accepted, in bytes.
const MaxLen = 64

// ErrInvalid is wrapped by every error Check returns.
var ErrInvalid = errors.New("cellname: invalid cell name")

// Check reports whether s is a valid cell name: 1 to 64 bytes of ASCII letters,
// digits, '_' and '-', starting with a letter or digit. Dots are excluded
// outright so that "." and ".." can never reach a path join, and '@' is kept
// for instance keys (see Key).
func Check(s string) error {
	if s == "" {
		return fmt.Errorf("%w: empty", ErrInvalid)
	}
	if len(s) > MaxLen {
		return fmt.Errorf("%w: %d bytes, the limit is %d", ErrInvalid, len(s), MaxLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case (c == '_' || c == '-') && i > 0:
		default:
			return fmt.Errorf("%w: %q has byte %#x at offset %d", ErrInvalid, s, c, i)
		}
	}
	return nil
}

// Key names one instance of a cell: the name itself for the default instance,
// "name@instance" otherwise. Both parts must already have passed Check.
func Key(name, instance string) string {
	if instance == "" {
		return name
	}
	return name + "@" + instance
}
