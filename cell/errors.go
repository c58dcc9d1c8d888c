package cell

import (
	"errors"
	"fmt"

	"github.com/cellproject/cell/wire"
)

// Sentinel errors; match them with errors.Is.
var (
	// ErrNotInSession means the environment contract (CELL_SESSION,
	// CELL_RUNTIME_DIR, CELL_UMBILICAL, CELL_TOKEN) is missing, so this
	// process is neither a cell nor a child the owner handed [Session.Env].
	ErrNotInSession = errors.New("cell: not in a cell session")
	// ErrCellrootNotFound means Start could not find the cellroot binary.
	ErrCellrootNotFound = errors.New("cell: cellroot binary not found")
	// ErrAlreadyRunning means another process holds the cell's
	// single-instance lock; the caller should exit and let peers use it.
	ErrAlreadyRunning = errors.New("cell: instance already running")
	// ErrNotRunning means no cell listens on the socket Connect dialled.
	ErrNotRunning = errors.New("cell: cell not running")
	// ErrClosed means the Conn or Session was closed, by this side or the peer.
	ErrClosed = errors.New("cell: connection closed")
	// ErrMalformed is wrapped by errors about messages that break the
	// encoding described in the package doc.
	ErrMalformed = errors.New("cell: malformed message")
	// ErrTooLarge means a body exceeds the bound the peer announced (at
	// most [DefaultMaxBody] unless configured); send larger payloads with
	// [Conn.CallStream].
	ErrTooLarge = errors.New("cell: body too large")
	// ErrTruncated means the peer closed the stream inside a frame.
	ErrTruncated = errors.New("cell: truncated frame")
	// ErrVersion means the peer speaks no synapse version this SDK speaks.
	ErrVersion = errors.New("cell: no common synapse version")
)

// OversizeError is a frame whose declared body exceeds the receiver's bound.
// Nothing was allocated for it; the stream cannot be resynchronised, so the
// connection is closed.
type OversizeError struct {
	Length uint64
	Max    int
}

func (e *OversizeError) Error() string {
	return fmt.Sprintf("cell: frame body of %d bytes exceeds the limit of %d", e.Length, e.Max)
}

// Is makes an OversizeError match ErrTooLarge.
func (e *OversizeError) Is(target error) bool { return target == ErrTooLarge }

// CodeUnknownMethod is the RemoteError code a handler should use for a method
// it does not know; see [UnknownMethod].
const CodeUnknownMethod = "unknown_method"

// RemoteError is an error reply from the cell that handled a call.
type RemoteError struct {
	// Method is the method of the failed call; filled in on the caller's side.
	Method string
	// Code is for programs and may be empty; Message is for people.
	Code    string
	Message string
}

func (e *RemoteError) Error() string {
	if e.Code != "" {
		return fmt.Sprintf("cell: %s failed: %s: %s", e.Method, e.Code, e.Message)
	}
	return fmt.Sprintf("cell: %s failed: %s", e.Method, e.Message)
}

// Is matches another *RemoteError by code, so that
// errors.Is(err, &RemoteError{Code: CodeUnknownMethod}) works.
func (e *RemoteError) Is(target error) bool {
	t, ok := target.(*RemoteError)
	return ok && t.Code == e.Code
}

// UnknownMethod is the error a Handler returns for a method it does not serve.
func UnknownMethod(method string) error {
	return &RemoteError{Method: method, Code: CodeUnknownMethod, Message: fmt.Sprintf("no method %q", method)}
}

// IsDenied reports whether err carries the root's refusal of a spawn (the
// user's allowlist does not grant it), as opposed to any other failure.
func IsDenied(err error) bool { return wire.IsCode(err, wire.CodeDenied) }

// DenialReason is the root's reason for the refusal err carries (the
// allowlist's words for it), and false when err carries no refusal.
func DenialReason(err error) (string, bool) {
	var e *wire.Error
	if !errors.As(err, &e) || e.Code != wire.CodeDenied {
		return "", false
	}
	return e.Reason, true
}
