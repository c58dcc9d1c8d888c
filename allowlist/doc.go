// Package allowlist reads the user's allowlist.toml, the only source of what
// a session root may launch: it decodes the file strictly, fills defaults,
// and reports every problem with file, line and key.
//
// The schema is documented in docs/allowlist.md. A missing file is told
// apart from an invalid one: Load's error matches fs.ErrNotExist for the
// first and is an [*Error] for the second.
package allowlist
