// Package wire is the umbilical protocol between cellroot and the processes of
// its session: length-prefixed JSON frames, the request and reply messages,
// and a client for them. docs/umbilical.md is the language-neutral
// description; this package is its reference implementation.
package wire
