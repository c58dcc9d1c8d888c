// Package podmanhelper keeps the Podman bindings out of the session root: the
// root's side ([Launcher]) runs the cellroot-podman helper, which links the
// podman package, only when a Podman cell is first spawned or a dead
// session's containers need collecting, and drives it over a socketpair;
// the helper's side ([Serve]) answers with whatever implements [Podman].
//
// # Protocol
//
// One connected stream socket (a socketpair; the helper gets it as
// descriptor 3). Every frame is
//
//	uint32 length   big endian: the bytes that follow (5 to MaxFrame)
//	uint8  kind     one of the kinds below
//	uint32 id       big endian: the request it belongs to
//	payload         length-5 bytes, encoded per kind
//
// Payload fields are uint8 (bool: 0 or 1 only), uint32, uint64 (big
// endian), strings (uint32 length, then the bytes) and string lists
// (uint32 count, then the strings), in a fixed order per kind; anything
// left over after the last field is an error, so every payload has exactly
// one encoding. A frame that breaks a rule ends the connection.
//
// The root sends requests, each with an id of its own choosing that is not
// in flight:
//
//	open     uint32 protocol version (1); must come first, once
//	launch   the resolved spec (see encodeSpec)
//	stop     uint32 handle (the id of the launch that made the instance)
//	end      string session: remove every container of the session
//	collect  (empty): remove the containers of dead sessions
//	close    (empty): stop everything, then the helper exits
//	cancel   (empty): the request with this id is no longer waited for;
//	         a stop becomes forced, a launch leaves nothing behind
//
// The helper answers each request but cancel with one reply: uint8 ok,
// then when ok the request's result (open: socket, version, uint8 own;
// launch: the container's name; collect: the sessions collected; others:
// nothing), else the error text. It also sends, for a launched instance
// (id = its handle), output frames (the cell's output, raw bytes) and one
// exited frame (the exit status) once the container is gone.
//
// The helper dies with the root: it runs with a SIGKILL death signal from
// a thread locked for its life (internal/process), and it exits when the
// socket reaches EOF. What a killed root's helper leaves in Podman is
// collected by the next root, which starts a helper for that when it finds
// the private dir of a podman backend that died.
package podmanhelper
