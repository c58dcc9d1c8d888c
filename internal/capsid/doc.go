// Package capsid is the one syscall policy every cell sandbox enforces: a
// table a reviewer can read, rendered as a classic BPF program for
// bubblewrap (bwrap and scope backends) and as an OCI seccomp profile for
// Podman, so that the three backends refuse the same calls.
//
// The policy is an allow list: a syscall the table does not allow fails
// with ENOSYS, as in Podman's default profile, so programs fall back as on
// an older kernel (libcs fall back from clone3 to clone). Only the native
// ABI is allowed: on amd64, i386 (int 0x80) and x32 calls fail with ENOSYS.
package capsid
