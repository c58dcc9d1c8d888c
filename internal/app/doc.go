// Package app turns an app folder into running cells: it finds every
// cells/NAME/Cell.toml, reads each strictly (file:line errors), orders the
// cells by their dependencies, builds them from source (package build) and
// starts the autostart ones in a session as its owner. It also holds the
// root's vetting hook for app cells, which checks before each launch that
// what would run is the source the allowlist names, pinned or signed as it
// requires, and that Cell.toml asks for no more than the allowlist grants.
//
// Cell.toml is documented in docs/cell-toml.md; the trust model in
// docs/trust.md.
package app
