package capsid

import (
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/cellproject/cell/quota"
)

// Layer names one protection of the capsid, as doctor, the allowlist's
// accept_missing_layers and the audit's missing_layers name it.
type Layer string

const (
	// Filter is this package's syscall policy.
	Filter Layer = "seccomp_filter"
	// UsernsBlock: no nested user namespaces (bubblewrap's
	// --disable-userns besides the filter; the profile on Podman).
	UsernsBlock Layer = "userns_block"
	// FreshKeyring: a new, empty session keyring per cell.
	FreshKeyring Layer = "fresh_keyring"
	// BoundedTmp: a size-bounded private /tmp.
	BoundedTmp Layer = "bounded_tmp"
)

// Layers lists every layer, in the order reports show them.
var Layers = []Layer{Filter, UsernsBlock, FreshKeyring, BoundedTmp}

// ParseLayer returns the layer named s, or an error naming the valid ones.
func ParseLayer(s string) (Layer, error) {
	if slices.Contains(Layers, Layer(s)) {
		return Layer(s), nil
	}
	names := make([]string, len(Layers))
	for i, l := range Layers {
		names[i] = string(l)
	}
	return "", fmt.Errorf("unknown sandbox layer %q (one of %s)", s, strings.Join(names, ", "))
}

// DefaultTmpSize bounds /tmp of a cell without a memory limit.
const DefaultTmpSize = 64 << 20

// TmpSize is the size of a cell's /tmp: its memory limit when it has one
// (tmpfs pages are charged to the cell's memory cgroup where the limit is
// enforced, so /tmp cannot hold more than the limit anyway), else
// DefaultTmpSize.
func TmpSize(l quota.Limits) uint64 {
	if l.MemoryBytes != 0 {
		return l.MemoryBytes
	}
	return DefaultTmpSize
}

var compiled struct {
	once sync.Once
	p    *Program
	err  error
}

// Supported reports whether the policy has a rendering for this
// architecture, without rendering it: what a root needs to know at start
// (which layers apply) costs nothing, and the program is compiled when the
// first sandbox needs it.
func Supported() bool { return len(numbers) > 0 }

// Compiled returns the policy's program, compiled on the first call: a root
// compiles it once and hands the same bytes to every sandbox.
func Compiled() (*Program, error) {
	compiled.once.Do(func() { compiled.p, compiled.err = Compile() })
	return compiled.p, compiled.err
}
