//go:build !(linux && amd64)

package capsid

// The policy's syscall numbers are known for linux/amd64 only; elsewhere
// Compile fails with ErrUnsupported and the filter layer is missing.
var numbers = map[string]uintptr{}

const (
	nativeArch    = 0
	x32SyscallBit = 0
	ociArch       = ""
)
