// Package junction is the gap junction: a pair of single-producer,
// single-consumer byte rings in one sealed memfd, shared by two processes,
// that wait by spinning briefly and then sleeping on an eventfd.
//
// Each side trusts nothing the other writes to the mapping: it keeps its own
// index privately, checks the peer's index against the ring size before
// using it, and copies bytes out of the ring before anyone parses them, so a
// peer that scribbles on the memory can break the junction (ErrCorrupt) but
// never make this side read or write outside the mapping. The memfd is
// sealed against shrinking, so the mapping cannot turn into SIGBUS.
package junction
