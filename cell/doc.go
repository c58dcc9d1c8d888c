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
// A cell listens on <session dir>/<key>.sock. Every message is one frame of
// the umbilical framing (package wire: a 4-byte big-endian length, then at
// most wire.MaxFrame bytes) holding exactly one JSON object:
//
//	request: {"id": 7, "method": "see", "body": "aGVsbG8="}
//	reply:   {"id": 7, "body": "cmVk"}
//	error:   {"id": 7, "error": {"code": "unknown_method", "message": "..."}}
//
// id is a non-zero unsigned integer chosen by the caller and echoed in the
// reply; requests on one connection may be answered in any order, so a caller
// can have many in flight (pipelining). method is 1 to 64 bytes. body is
// opaque bytes, base64 in JSON (encoding/json's []byte form), at most
// [MaxBody] bytes so that the framed message always fits. A reply carries
// either body or error, never both; error.code is for programs (may be
// empty), error.message for people. Unknown fields, trailing data, a request
// without a method and a reply with one are malformed; a server closes a
// connection that sends a malformed or oversized frame, since it cannot tell
// which call the frame belonged to.
package cell
