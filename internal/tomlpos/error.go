package tomlpos

import "fmt"

// Error is a problem in a config file, placed as precisely as known. The
// strict loaders (allowlist, Cell.toml, trust.toml) all report this type, so
// that every config error reads the same way.
type Error struct {
	File string
	// Line is 1-based; 0 when the problem has no single place, such as a
	// missing key or a file too large.
	Line int
	// Key is the dotted TOML key concerned, "" for the file as a whole.
	Key string
	Msg string
	// Err is the underlying cause when there is one, for errors.Is.
	Err error
}

// Error reads "FILE:LINE: key: msg", leaving out what is unknown.
func (e *Error) Error() string {
	s := e.File
	if e.Line > 0 {
		s += fmt.Sprintf(":%d", e.Line)
	}
	if e.Key != "" {
		s += ": " + e.Key
	}
	return s + ": " + e.Msg
}

func (e *Error) Unwrap() error { return e.Err }
