// Package trust holds who may vouch for a cell: trust.toml (the user's
// ed25519 public keys, strictly read), private key files, and signature
// files that sign a source tree's or a binary's sha256, with their
// verification against the trusted keys.
//
// Formats and the threat model are documented in docs/trust.md.
package trust
