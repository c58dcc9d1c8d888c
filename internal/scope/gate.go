package scope

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
)

// GateCommand is the subcommand of cellroot that runs RunGate.
const GateCommand = "internal-scope-gate"

// gateFD is the descriptor the gate waits on: the first of Command.Files.
const gateFD = 3

// RunGate is the gate's whole life: wait until the root has placed this
// process in its scope (one byte on fd 3), then exec argv in place, keeping
// the pid, the environment and the death signal. EOF without the byte means
// the root gave up: exit without running anything.
func RunGate(argv []string) error {
	if len(argv) == 0 {
		return errors.New("scope gate: no command")
	}
	gate := os.NewFile(gateFD, "scope-gate")
	var b [1]byte
	if _, err := io.ReadFull(gate, b[:]); err != nil {
		return fmt.Errorf("scope gate: the root did not open the gate: %w", err)
	}
	gate.Close()
	// The cell's environment has no PATH: the root passes absolute paths.
	if !filepath.IsAbs(argv[0]) {
		return fmt.Errorf("scope gate: %q is not an absolute path", argv[0])
	}
	return syscall.Exec(argv[0], argv, os.Environ())
}
