package allowlist

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/cellproject/cell/internal/capsid"
	"github.com/cellproject/cell/internal/cellspec"
	"github.com/cellproject/cell/quota"

	"github.com/cellproject/cell/internal/tomlpos"
)

// Version is the only schema version this package reads.
const Version = 1

// MaxSize is the largest allowlist accepted, in bytes. Real files are a few
// KiB; the cap keeps a mistake (pointing at a log or a device) from costing
// memory and time in the session root.
const MaxSize = 1 << 20

// Defaults and bounds of the numeric settings; see docs/allowlist.md.
const (
	DefaultMaxCells     = 32
	MaxMaxCells         = 1024
	DefaultMaxDepth     = 4
	MaxMaxDepth         = 64
	DefaultMaxInstances = 1
	MaxMaxInstances     = 64
)

var (
	// ErrTooLarge is wrapped by the *Error for a file over MaxSize.
	ErrTooLarge = errors.New("allowlist: file too large")
	// ErrUnsafe is wrapped by Load's error for a file other users could
	// write: whoever can edit the allowlist decides what runs as this user.
	ErrUnsafe = errors.New("allowlist: file is writable by group or others")
)

// File is a parsed allowlist.
type File struct {
	// Path is where the file was read from, as given to Load or Parse.
	Path          string
	Version       int
	SessionLimits SessionLimits
	// Cells holds the listed cells by name. An empty map denies everything.
	Cells map[string]Cell
}

// SessionLimits are the [session] table: the bounds of one session,
// whoever asks.
type SessionLimits struct {
	// MaxCells caps live and starting cells in a session.
	MaxCells int
	// MaxDepth caps the spawn depth: a cell the owner spawns is at depth 1.
	MaxDepth int
}

// Cell is what the allowlist grants one cell.
type Cell struct {
	Name string
	// Exec is an absolute, clean path; Args are passed after it unchanged.
	Exec string
	Args []string
	// Backend is cellspec.Auto unless the file names one.
	Backend cellspec.Backend
	Network bool
	// Spawn lists the cells this cell may ask the root to spawn; every one is
	// listed in the same file.
	Spawn        []string
	MaxInstances int
	Limits       quota.Limits
	// AcceptUnenforcedLimits lets the cell run on a backend that cannot
	// enforce Limits instead of being denied.
	AcceptUnenforcedLimits bool
	// AcceptMissingLayers names the capsid layers (docs/capsid.md) the cell
	// may run without, on a backend that cannot apply them here, instead of
	// being denied. Each missing layer must be named: accepting one
	// accepts no other.
	AcceptMissingLayers []capsid.Layer
	// Source, when set, is the absolute dir of the cell's source in an app
	// (cells/NAME, holding Cell.toml): Exec is then the root's build of it,
	// and the root checks before each launch that Exec was built from the
	// source tree now in Source and that Cell.toml asks for no more than
	// this entry grants (see docs/trust.md).
	Source string
	// SHA256 pins the binary at Exec, SourceSHA256 the source tree at
	// Source: lowercase hex, "" for no pin.
	SHA256       string
	SourceSHA256 string
	// RequireSignature starts the cell only with a signature file that
	// verifies against a key of trust.toml: of the source tree when Source
	// is set, else of the binary.
	RequireSignature bool
	// Restart is the restart policy granted (restart.go); zero: none.
	Restart cellspec.Restart
	// Line is where the cell's table starts in the file.
	Line int
}

// Error is a problem with the contents of an allowlist: file, line, key
// and, in Err, the cause (a TOML syntax error, cellspec.ErrInvalidName,
// quota.ErrInvalid, ErrTooLarge).
type Error = tomlpos.Error

// Load reads and parses the allowlist at path. When the file does not exist
// the error matches fs.ErrNotExist; when it exists but is wrong it is an
// *Error; a file writable by group or others is refused with ErrUnsafe.
func Load(path string) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("allowlist: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("allowlist: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, &Error{File: path, Msg: fmt.Sprintf("not a regular file (%s)", fi.Mode().Type())}
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return nil, fmt.Errorf("%w: %s has mode %s", ErrUnsafe, path, fi.Mode().Perm())
	}
	// Read one byte past the cap so that Parse sees the file is too large.
	data, err := io.ReadAll(io.LimitReader(f, MaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("allowlist: read %s: %w", path, err)
	}
	return Parse(path, data)
}
