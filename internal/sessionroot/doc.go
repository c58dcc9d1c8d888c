// Package sessionroot runs one session root: it takes the owner's umbilical,
// collects dead sessions, loads the allowlist, opens the backends and the
// audit sinks, and serves the session until the owner goes; the cellroot
// command only parses flags and calls [Serve].
package sessionroot
