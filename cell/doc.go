// Package cell is the SDK for Go cells and their owner apps: it starts or
// joins a session root, grows cells by name, serves a cell's socket, and
// carries requests and replies between cells.
//
// # Roles
//
// The owner app calls [Start], which execs `cellroot serve` with one end of a
// socketpair as the umbilical; the session lives as long as the returned
// [Session] (or the owner process) does. A cell, or another process the
// owner started with [Session.Env], calls [Join]. Both then use
// [Session.Grow] to reach a cell by name, spawning it through the root when
// it is not running. A cell answers requests with [Serve].
//
// # Cell-to-cell messages
//
// A cell listens on <session dir>/<key>.sock and speaks the synapse format
// (docs/synapse.md): a 16-byte preface each way that negotiates the version,
// the body bounds and the gap junction, then frames of a 16-byte header and
// raw body bytes. Bodies go up to [DefaultMaxBody] (16 MiB) in one frame;
// larger ones travel as streams ([Conn.CallStream], [StreamHandler]). A
// receiver never allocates for a body beyond the bound it announced. Bodies
// of 4 KiB and more are read into pooled memory: a program that receives
// many of them hands them back with [Recycle] (a caller its replies, a cell
// its request bodies with ServeOptions.RecycleBodies), which spares it
// most of their cost. Calls
// from many goroutines share one connection, their frames written together
// in one writev; a serving cell runs at most ServeOptions.MaxConcurrent
// handlers at once.
//
// A connection can move to a gap junction ([WithJunction] on the caller's
// side, ServeOptions.Junction on the cell's): two shared-memory rings in a
// sealed memfd passed over the socket. It falls back to the socket when
// either side cannot. The socket's EOF still reports the peer's death, which
// fails pending calls at once.
//
// When a serving cell stops (an upgrade, a stop, idle exit), it drains: it
// stops accepting, sends GOAWAY on every connection and finishes the calls
// in flight; a [Conn] sends its new calls over a fresh connection (growing
// the cell again if needed), so that no call fails across an upgrade.
//
// # Logging and errors
//
// The SDK logs through a *slog.Logger passed in its options (none when
// nil). [IsDenied] and [DenialReason] tell a spawn the user's allowlist
// refused from other failures.
package cell
