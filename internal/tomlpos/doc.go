// Package tomlpos finds where each key of a TOML document is defined, so
// that strict config loaders can report file:line for problems the TOML
// decoder itself does not see (unknown keys, values out of range).
package tomlpos
