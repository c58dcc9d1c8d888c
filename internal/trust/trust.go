package trust

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/cellproject/cell/internal/cellspec"
	"github.com/cellproject/cell/internal/tomlpos"
)

// Version is the schema version of trust.toml and of signature files.
const Version = 1

// MaxSize caps trust.toml and signature files, in bytes.
const MaxSize = 256 << 10

// KeyPrefix starts a public key in text form: "ed25519:" and the key in
// standard base64.
const KeyPrefix = "ed25519:"

var (
	// ErrInvalid is wrapped by every *Error about a file's contents.
	ErrInvalid = errors.New("trust: invalid file")
	// ErrUnsafe: a trust.toml or key file others could write or read.
	ErrUnsafe = errors.New("trust: unsafe file mode")
	// ErrUntrusted: a signature by a key trust.toml does not name.
	ErrUntrusted = errors.New("trust: signed by a key that is not trusted")
	// ErrBadSignature: the signature does not verify.
	ErrBadSignature = errors.New("trust: signature does not verify")
	// ErrMismatch: the signature is for other contents than those checked.
	ErrMismatch = errors.New("trust: signature is for other contents")
)

// Error is a problem in a file, with its line when known.
type Error = tomlpos.Error

// File is a parsed trust.toml.
type File struct {
	Path string
	// Keys maps each trusted key's name to it.
	Keys map[string]ed25519.PublicKey
}

// Name returns the name trust.toml gives pub, if it trusts it.
func (f *File) Name(pub ed25519.PublicKey) (string, bool) {
	if f == nil {
		return "", false
	}
	names := make([]string, 0, len(f.Keys))
	for n := range f.Keys {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		if f.Keys[n].Equal(pub) {
			return n, true
		}
	}
	return "", false
}

// readSafe reads a file that only its owner may write, up to MaxSize.
func readSafe(path string, mask os.FileMode) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("trust: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("trust: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, &Error{File: path, Msg: "not a regular file", Err: ErrInvalid}
	}
	if fi.Mode().Perm()&mask != 0 {
		return nil, fmt.Errorf("%w: %s has mode %s", ErrUnsafe, path, fi.Mode().Perm())
	}
	return io.ReadAll(io.LimitReader(f, MaxSize+1))
}

// Load reads trust.toml. A missing file matches fs.ErrNotExist; one that
// group or others can write is refused with ErrUnsafe, since whoever edits
// it decides whose code runs.
func Load(path string) (*File, error) {
	data, err := readSafe(path, 0o022)
	if err != nil {
		return nil, err
	}
	return Parse(path, data)
}

// Parse parses trust.toml's contents; path is for errors only.
//
//	version = 1
//	[key.NAME]
//	ed25519 = "ed25519:BASE64"
//	comment = "optional, for people"
func Parse(path string, data []byte) (*File, error) {
	doc, err := decode(path, data, func(k toml.Key) bool {
		switch {
		case len(k) == 1:
			return k[0] == "version" || k[0] == "key"
		case k[0] != "key":
			return false
		case len(k) == 3:
			return k[2] == "ed25519" || k[2] == "comment"
		}
		return len(k) == 2
	})
	if err != nil {
		return nil, err
	}
	f := &File{Path: path, Keys: map[string]ed25519.PublicKey{}}
	if err := doc.version(); err != nil {
		return nil, err
	}
	v, ok := doc.raw["key"]
	if !ok {
		return f, nil
	}
	keys, ok := v.(map[string]any)
	if !ok {
		return nil, doc.fail([]string{"key"}, "must be a table of [key.NAME] tables")
	}
	names := make([]string, 0, len(keys))
	for n := range keys {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		if err := cellspec.CheckName(n); err != nil {
			return nil, doc.fail([]string{"key", n}, "not a valid key name (letters, digits, _ and -): %v", err)
		}
		t, ok := keys[n].(map[string]any)
		if !ok {
			return nil, doc.fail([]string{"key", n}, "must be a table")
		}
		if c, ok := t["comment"]; ok {
			if _, ok := c.(string); !ok {
				return nil, doc.fail([]string{"key", n, "comment"}, "must be a string")
			}
		}
		s, ok := t["ed25519"].(string)
		if !ok {
			return nil, doc.fail([]string{"key", n, "ed25519"}, `missing or not a string: want "%sBASE64"`, KeyPrefix)
		}
		pub, err := ParsePublicKey(s)
		if err != nil {
			return nil, doc.fail([]string{"key", n, "ed25519"}, "%v", err)
		}
		if other, dup := f.Name(pub); dup {
			return nil, doc.fail([]string{"key", n, "ed25519"}, "the same key as [key.%s]", other)
		}
		f.Keys[n] = pub
	}
	return f, nil
}

// ParsePublicKey reads "ed25519:BASE64".
func ParsePublicKey(s string) (ed25519.PublicKey, error) {
	b64, ok := strings.CutPrefix(s, KeyPrefix)
	if !ok {
		return nil, fmt.Errorf("%q is not a public key: want %q and the key in base64", s, KeyPrefix)
	}
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(raw) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%q is not a %d-byte ed25519 key in base64", s, ed25519.PublicKeySize)
	}
	return ed25519.PublicKey(raw), nil
}

// FormatPublicKey writes pub as ParsePublicKey reads it.
func FormatPublicKey(pub ed25519.PublicKey) string {
	return KeyPrefix + base64.StdEncoding.EncodeToString(pub)
}

// document is a decoded file with its key lines, for errors.
type document struct {
	path  string
	raw   map[string]any
	lines map[string]int
}

func (d *document) fail(key []string, format string, args ...any) error {
	return &Error{File: d.path, Line: tomlpos.Line(d.lines, key), Key: toml.Key(key).String(),
		Msg: fmt.Sprintf(format, args...), Err: ErrInvalid}
}

func (d *document) version() error {
	v, ok := d.raw["version"]
	if !ok {
		return &Error{File: d.path, Key: "version", Msg: fmt.Sprintf("missing: the file must say version = %d", Version), Err: ErrInvalid}
	}
	if n, ok := v.(int64); !ok || n != Version {
		return d.fail([]string{"version"}, "unsupported version %v: this cellroot reads version %d", v, Version)
	}
	return nil
}

// decode parses TOML strictly: a syntax error or a key known() refuses is
// an *Error with its line, the first in file order.
func decode(path string, data []byte, known func(toml.Key) bool) (*document, error) {
	if len(data) > MaxSize {
		return nil, &Error{File: path, Msg: fmt.Sprintf("larger than %d bytes", MaxSize), Err: ErrInvalid}
	}
	d := &document{path: path, lines: tomlpos.Lines(data)}
	md, err := toml.Decode(string(data), &d.raw)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, &Error{File: path, Line: pe.Position.Line, Msg: pe.Message, Err: errors.Join(ErrInvalid, err)}
		}
		return nil, &Error{File: path, Msg: err.Error(), Err: errors.Join(ErrInvalid, err)}
	}
	var first *Error
	for _, k := range md.Keys() {
		if known(k) {
			continue
		}
		e := d.fail(k, "unknown key (see docs/trust.md)").(*Error)
		if first == nil || e.Line < first.Line {
			first = e
		}
	}
	if first != nil {
		return nil, first
	}
	return d, nil
}
