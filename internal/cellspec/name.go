package cellspec

import (
	"errors"
	"fmt"
	"strings"
)

// MaxNameLen is the longest name accepted, in bytes.
const MaxNameLen = 64

// ErrInvalidName is wrapped by every error CheckName returns.
var ErrInvalidName = errors.New("cellspec: invalid cell name")

// CheckName reports whether s is a valid cell name: 1 to 64 bytes of ASCII letters,
// digits, '_' and '-', starting with a letter or digit. Dots are excluded
// outright so that "." and ".." can never reach a path join, and '@' is kept
// for instance keys (see Key).
func CheckName(s string) error {
	if s == "" {
		return fmt.Errorf("%w: empty", ErrInvalidName)
	}
	if len(s) > MaxNameLen {
		return fmt.Errorf("%w: %d bytes, the limit is %d", ErrInvalidName, len(s), MaxNameLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case (c == '_' || c == '-') && i > 0:
		default:
			return fmt.Errorf("%w: %q has byte %#x at offset %d", ErrInvalidName, s, c, i)
		}
	}
	return nil
}

// Key names one instance of a cell: the name itself for the default instance,
// "name@instance" otherwise. Both parts must already have passed CheckName.
func Key(name, instance string) string {
	if instance == "" {
		return name
	}
	return name + "@" + instance
}

// SplitKey checks an instance key and returns its parts: "name" gives
// (name, ""), "name@instance" gives both; each part must pass CheckName.
func SplitKey(key string) (name, instance string, err error) {
	name, instance, hasInstance := strings.Cut(key, "@")
	if err := CheckName(name); err != nil {
		return "", "", fmt.Errorf("key %q: name: %w", key, err)
	}
	if hasInstance {
		if err := CheckName(instance); err != nil {
			return "", "", fmt.Errorf("key %q: instance: %w", key, err)
		}
	}
	return name, instance, nil
}
