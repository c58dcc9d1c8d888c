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

// Request is every message a client sends. id and op are required, and v in
// a hello; a field the op does not use is an error, as is an unknown one.
type Request struct {
	ID       uint64 `json:"id"`
	Op       Op     `json:"op"`
	Version  int    `json:"v,omitempty"`
	Role     Role   `json:"role,omitempty"`
	Token    string `json:"token,omitempty"`
	Name     string `json:"name,omitempty"`
	Instance string `json:"instance,omitempty"`
	// Cursor continues a list from the Next of the previous page.
	Cursor string `json:"cursor,omitempty"`
}

// opFields is, per known op, every field a request of that op may carry.
var opFields = map[Op]map[string]bool{
	OpHello: {"id": true, "op": true, "v": true, "role": true, "token": true},
	OpSpawn: {"id": true, "op": true, "name": true, "instance": true},
	OpStop:  {"id": true, "op": true, "name": true},
	OpList:  {"id": true, "op": true, "cursor": true},

	OpListener:     {"id": true, "op": true},
	OpUpgrade:      {"id": true, "op": true, "name": true},
	OpAwaitFailure: {"id": true, "op": true},
}

// requestFields is every field of Request; an op not in opFields may carry
// any of them (it gets unknown_op, not bad_frame).
var requestFields = map[string]bool{
	"id": true, "op": true, "v": true, "role": true, "token": true, "name": true, "instance": true, "cursor": true,
}

// replyFields is every top-level field of Reply.
var replyFields = map[string]bool{
	"id": true, "ok": true, "error": true, "session": true, "runtime_dir": true, "token": true, "self": true,
	"key": true, "socket": true, "cells": true, "next": true,
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

	// List: one page of cells, sorted by key; Next, when set, is the
	// cursor of the next page.
	Cells []CellInfo `json:"cells,omitempty"`
	Next  string     `json:"next,omitempty"`
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
	// CodeTooManyConnections: the peer's class of connection is at its
	// bound (docs/umbilical.md, "Bounds").
	CodeTooManyConnections Code = "too_many_connections"
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

// DecodeRequest parses one request strictly: the payload must be valid UTF-8
// holding one JSON object; keys match exactly (case-sensitive), none twice,
// none unknown or unused by the op; id and op are required, and v in a
// hello. Anything else wraps ErrMalformed, so that a confused client learns
// of its mistake instead of having parts of its message ignored or guessed.
func DecodeRequest(payload []byte) (Request, error) {
	present, err := checkObject(payload, requestFields)
	if err != nil {
		return Request{}, err
	}
	var req Request
	if err := decodeStd(payload, &req); err != nil {
		return Request{}, err
	}
	switch {
	case !present["id"]:
		return Request{}, fmt.Errorf("%w: id is required", ErrMalformed)
	case req.ID == 0:
		return Request{}, fmt.Errorf("%w: id must be 1 or more (0 is the id of replies to unreadable requests)", ErrMalformed)
	case !present["op"] || req.Op == "":
		return Request{}, fmt.Errorf("%w: op is required", ErrMalformed)
	case req.Op == OpHello && !present["v"]:
		return Request{}, fmt.Errorf("%w: v is required in hello", ErrMalformed)
	case present["v"] && req.Version < 1:
		return Request{}, fmt.Errorf("%w: v must be a positive integer", ErrMalformed)
	}
	if allowed, ok := opFields[req.Op]; ok {
		for k := range present {
			if !allowed[k] {
				return Request{}, fmt.Errorf("%w: field %q is not used by %s", ErrMalformed, k, req.Op)
			}
		}
	}
	return req, nil
}

// DecodeReply parses one reply with the same key, duplicate and UTF-8 rules.
func DecodeReply(payload []byte) (Reply, error) {
	if _, err := checkObject(payload, replyFields); err != nil {
		return Reply{}, err
	}
	var rep Reply
	if err := decodeStd(payload, &rep); err != nil {
		return Reply{}, err
	}
	return rep, nil
}

// decodeStd fills v from a payload checkObject accepted; it still refuses
// wrong types and unknown nested fields.
func decodeStd(payload []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
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
