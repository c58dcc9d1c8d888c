package capsid

import (
	rspec "github.com/opencontainers/runtime-spec/specs-go"
)

// Profile renders Rules as an OCI seccomp profile, the form Podman reads
// from a file (--security-opt seccomp=FILE): the same rules, in the same
// order, with ENOSYS as the default and only the native architecture.
func Profile() (*rspec.LinuxSeccomp, error) {
	return profile(Rules())
}

func profile(rs []Rule) (*rspec.LinuxSeccomp, error) {
	if len(numbers) == 0 {
		return nil, ErrUnsupported
	}
	if err := check(rs); err != nil {
		return nil, err
	}
	errno := uint(DenyErrno)
	p := &rspec.LinuxSeccomp{
		DefaultAction:   rspec.ActErrno,
		DefaultErrnoRet: &errno,
		Architectures:   []rspec.Arch{ociArch},
	}
	for _, r := range rs {
		s := rspec.LinuxSyscall{Names: []string{r.Syscall}, Action: rspec.ActAllow}
		if r.Action == Deny {
			e := uint(DenyErrno)
			s.Action, s.ErrnoRet = rspec.ActErrno, &e
		}
		for _, a := range r.Args {
			c := rspec.LinuxSeccompArg{Index: uint(a.Index), Value: a.Value, Op: rspec.OpEqualTo}
			if a.Op == MaskedEqual {
				// libseccomp's masked compare: (arg & Value) == ValueTwo.
				c.Value, c.ValueTwo, c.Op = a.Mask, a.Value, rspec.OpMaskedEqual
			}
			s.Args = append(s.Args, c)
		}
		p.Syscalls = append(p.Syscalls, s)
	}
	return p, nil
}
