package trust

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/cellproject/cell/internal/atomicfile"
)

// trustHeader starts a trust.toml that AddKey creates.
const trustHeader = "# Keys whose signatures cellroot accepts; see docs/trust.md.\nversion = 1\n"

// AddKey appends the table [key.NAME] with pub to the trust.toml at path,
// creating the file if it does not exist and keeping everything the user
// wrote. The result is checked with Parse before it replaces the file, and
// replaces it atomically, so a bad name, a duplicate or a broken file leaves
// the file as it was.
func AddKey(path, name string, pub string) error {
	text, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		text = []byte(trustHeader)
	} else if err != nil {
		return fmt.Errorf("trust: add key: %w", err)
	}
	if len(text) > 0 && text[len(text)-1] != '\n' {
		text = append(text, '\n')
	}
	text = append(append(text, '\n'), KeyTable(name, pub)...)
	if _, err := Parse(path, text); err != nil {
		return fmt.Errorf("trust: not adding the key, trust.toml would be invalid: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("trust: add key: %w", err)
	}
	return atomicfile.Write(path, text, 0o600)
}

// KeyTable is the trust.toml table that trusts pub under name.
func KeyTable(name, pub string) string {
	return fmt.Sprintf("[key.%s]\ned25519 = %q\n", name, pub)
}
