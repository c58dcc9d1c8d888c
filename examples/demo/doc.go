// Package demo is the plumbing the example cells share: a logger on stderr
// and a main that joins the session and serves a handler until idle.
package demo
