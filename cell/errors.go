package cell

import (
	"errors"
	"fmt"
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
	// ErrTooLarge means a request or reply body exceeds MaxBody.
	ErrTooLarge = errors.New("cell: body too large")
)

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
