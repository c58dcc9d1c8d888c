package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
)

// Version is the protocol version a client states in its hello.
const Version = 1

// Op is a request operation.
type Op string

// The operations. A connection's first request must be OpHello.
const (
	OpHello Op = "hello"
	OpSpawn Op = "spawn"
	OpStop  Op = "stop"
	OpList  Op = "list"
	// OpListener (a cell), OpUpgrade and OpAwaitFailure (the owner): see
	// listener.go.
	OpListener     Op = "listener"
	OpUpgrade      Op = "upgrade"
	OpAwaitFailure Op = "await_failure"
)

// Role says who is on the other end of a connection.
type Role string

// The roles a hello may claim.
const (
	// RoleOwner is the app that holds the session; only valid on the owner's
	// own connection, or elsewhere with the owner token.
	RoleOwner Role = "owner"
	// RoleCell is a cell the root launched, identified by its CELL_TOKEN.
	RoleCell Role = "cell"
	// RoleObserver may only list; `cellroot ps` uses it.
	RoleObserver Role = "observer"
)

// Request is every message a client sends. Fields unused by an op must be
// empty; the root rejects unknown fields.
type Request struct {
	ID       uint64 `json:"id"`
	Op       Op     `json:"op"`
	Version  int    `json:"v,omitempty"`
	Role     Role   `json:"role,omitempty"`
	Token    string `json:"token,omitempty"`
	Name     string `json:"name,omitempty"`
	Instance string `json:"instance,omitempty"`
}

// Reply answers the request with the same ID.
type Reply struct {
	ID    uint64 `json:"id"`
	OK    bool   `json:"ok"`
	Error *Error `json:"error,omitempty"`

	// Hello.
	Session    string `json:"session,omitempty"`
	RuntimeDir string `json:"runtime_dir,omitempty"`
	Token      string `json:"token,omitempty"`
	Self       string `json:"self,omitempty"`

	// Spawn.
	Key    string `json:"key,omitempty"`
	Socket string `json:"socket,omitempty"`

	// List.
	Cells []CellInfo `json:"cells,omitempty"`
}

// CellInfo describes one cell of the session.
type CellInfo struct {
	Key     string    `json:"key"`
	Name    string    `json:"name"`
	Parent  string    `json:"parent"`
	Depth   int       `json:"depth"`
	Backend string    `json:"backend"`
	ID      string    `json:"id"`
	State   string    `json:"state"`
	Started time.Time `json:"started"`
}

// Code classifies an error reply so that clients can branch on it.
type Code string

// The error codes; docs/umbilical.md says when each is sent.
const (
	CodeBadFrame      Code = "bad_frame"
	CodeBadVersion    Code = "bad_version"
	CodeHelloRequired Code = "hello_required"
	CodeUnknownOp     Code = "unknown_op"
	CodeUnknownToken  Code = "unknown_token"
	CodeBadName       Code = "bad_name"
	CodeDenied        Code = "denied"
	CodeSpawnFailed   Code = "spawn_failed"
	CodeNotFound      Code = "not_found"
	CodeNotPermitted  Code = "not_permitted"
	CodeRateLimited   Code = "rate_limited"
	CodeShuttingDown  Code = "shutting_down"
	CodeUpgradeFailed Code = "upgrade_failed"
	CodeCellFailed    Code = "cell_failed"
)

// Error is an error reply. Reason carries the policy's code for CodeDenied.
type Error struct {
	Code    Code   `json:"code"`
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message"`
}

func (e *Error) Error() string {
	if e.Reason != "" {
		return fmt.Sprintf("cellroot: %s (%s): %s", e.Code, e.Reason, e.Message)
	}
	return fmt.Sprintf("cellroot: %s: %s", e.Code, e.Message)
}

// Is lets errors.Is match on the code alone: errors.Is(err, &Error{Code: CodeDenied}).
func (e *Error) Is(target error) bool {
	var t *Error
	return errors.As(target, &t) && t.Code == e.Code
}

// ErrMalformed is wrapped by decode errors for payloads that are not exactly
// one well-formed message.
var ErrMalformed = errors.New("wire: malformed message")

// DecodeRequest parses one request strictly: unknown fields, trailing data
// and non-object payloads are errors, so that a confused client learns of its
// mistake instead of having parts of its message ignored.
func DecodeRequest(payload []byte) (Request, error) {
	var req Request
	if err := decodeStrict(payload, &req); err != nil {
		return Request{}, err
	}
	return req, nil
}

// DecodeReply parses one reply, as strictly as DecodeRequest.
func DecodeReply(payload []byte) (Reply, error) {
	var rep Reply
	if err := decodeStrict(payload, &rep); err != nil {
		return Reply{}, err
	}
	return rep, nil
}

func decodeStrict(payload []byte, v any) error {
	if len(bytes.TrimSpace(payload)) == 0 || bytes.TrimSpace(payload)[0] != '{' {
		return fmt.Errorf("%w: not a JSON object", ErrMalformed)
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: trailing data after the message", ErrMalformed)
	}
	return nil
}

// WriteMessage encodes v as JSON and writes it as one frame.
func WriteMessage(w io.Writer, v any) error {
	payload, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("wire: encode: %w", err)
	}
	return WriteFrame(w, payload)
}
