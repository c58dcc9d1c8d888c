package capsid

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sort"

	"golang.org/x/net/bpf"
)

// ErrUnsupported: the policy has no syscall numbers for this architecture.
var ErrUnsupported = errors.New("capsid: no syscall policy for this architecture")

// Return values of a seccomp filter (linux/seccomp.h).
const (
	retAllow = 0x7fff0000
	retErrno = 0x00050000
)

// Offsets in struct seccomp_data: nr, arch, instruction pointer, args[6].
const (
	offNr   = 0
	offArch = 4
	offArgs = 16
)

// Program is the compiled filter: the policy as bubblewrap reads it from a
// descriptor (an array of struct sock_filter, native byte order).
type Program struct {
	raw []byte
	n   int
}

// Bytes returns the program in the form --seccomp and --add-seccomp-fd read.
// The caller must not change it.
func (p *Program) Bytes() []byte { return p.raw }

// Len is the number of instructions.
func (p *Program) Len() int { return p.n }

// Compile renders Rules as a BPF program. A root compiles it once and hands
// the same bytes to every sandbox.
func Compile() (*Program, error) {
	return compile(Rules(), retAllow, nil)
}

// compile renders rs. allowRet is what an allowed call returns (a test
// turns it into an errno so that calls can be tried without running them);
// prefix, when set, goes between the ABI checks and the syscall dispatch.
func compile(rs []Rule, allowRet uint32, prefix []bpf.Instruction) (*Program, error) {
	if len(numbers) == 0 {
		return nil, ErrUnsupported
	}
	if err := check(rs); err != nil {
		return nil, err
	}
	deny := uint32(retErrno | uint32(DenyErrno))
	ret := func(a Action) bpf.Instruction {
		if a == Allow {
			return bpf.RetConstant{Val: allowRet}
		}
		return bpf.RetConstant{Val: deny}
	}

	var prog []bpf.Instruction
	prog = append(prog,
		// Only the native ABI: any other arch value (i386 through int
		// 0x80) and x32 numbers fail.
		bpf.LoadAbsolute{Off: offArch, Size: 4},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: nativeArch, SkipTrue: 1},
		bpf.RetConstant{Val: deny},
		bpf.LoadAbsolute{Off: offNr, Size: 4},
		bpf.JumpIf{Cond: bpf.JumpGreaterOrEqual, Val: x32SyscallBit, SkipFalse: 1},
		bpf.RetConstant{Val: deny},
	)
	if prefix != nil {
		prog = append(prog, prefix...)
		prog = append(prog, bpf.LoadAbsolute{Off: offNr, Size: 4})
	}

	// One block per syscall, in number order: "A == nr" else skip the
	// block. Every path inside a block returns, so A still holds nr for
	// the next block's test.
	by := map[string][]Rule{}
	for _, r := range rs {
		by[r.Syscall] = append(by[r.Syscall], r)
	}
	names := syscalls(rs)
	sort.Slice(names, func(i, j int) bool { return numbers[names[i]] < numbers[names[j]] })
	for _, name := range names {
		block := syscallBlock(by[name], ret, deny)
		if len(block) > 255 {
			return nil, fmt.Errorf("capsid: the rules of %q need %d instructions, more than a jump can skip", name, len(block))
		}
		prog = append(prog, bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(numbers[name]), SkipFalse: uint8(len(block))})
		prog = append(prog, block...)
	}
	prog = append(prog, bpf.RetConstant{Val: deny})

	raw, err := bpf.Assemble(prog)
	if err != nil {
		return nil, fmt.Errorf("capsid: assemble: %w", err)
	}
	out := make([]byte, 0, 8*len(raw))
	for _, ins := range raw {
		out = binary.NativeEndian.AppendUint16(out, ins.Op)
		out = append(out, ins.Jt, ins.Jf)
		out = binary.NativeEndian.AppendUint32(out, ins.K)
	}
	return &Program{raw: out, n: len(raw)}, nil
}

// syscallBlock renders one syscall's rules: each conditional rule tests its
// arguments and returns its action when all match, else falls to the next;
// then the unconditional rule's action, or deny.
func syscallBlock(rs []Rule, ret func(Action) bpf.Instruction, deny uint32) []bpf.Instruction {
	var block []bpf.Instruction
	fallback := bpf.Instruction(bpf.RetConstant{Val: deny})
	for _, r := range rs {
		if len(r.Args) == 0 {
			fallback = ret(r.Action)
			continue
		}
		var tests [][]bpf.Instruction
		for _, a := range r.Args {
			tests = append(tests, argTest(a)...)
		}
		// Each test ends in a jump that skips to the rule's end on a
		// mismatch: the instructions after it in this rule, plus the
		// rule's return.
		total := 0
		for _, t := range tests {
			total += len(t)
		}
		done := 0
		for _, t := range tests {
			done += len(t)
			j := t[len(t)-1].(bpf.JumpIf)
			j.SkipFalse = uint8(total - done + 1)
			t[len(t)-1] = j
			block = append(block, t...)
		}
		block = append(block, ret(r.Action))
	}
	return append(block, fallback)
}

// argTest is the instructions comparing one argument, one group per 32-bit
// half (low half first: seccomp_data is in native order, little endian
// here), each ending in a JumpEqual whose SkipFalse the caller fills in.
func argTest(a Arg) [][]bpf.Instruction {
	mask := ^uint64(0)
	if a.Op == MaskedEqual {
		mask = a.Mask
	}
	var out [][]bpf.Instruction
	for half := 0; half < 2; half++ {
		shift := 32 * half
		m, v := uint32(mask>>shift), uint32(a.Value>>shift)
		t := []bpf.Instruction{bpf.LoadAbsolute{Off: uint32(offArgs + 8*a.Index + 4*half), Size: 4}}
		if m == 0 {
			continue // nothing to compare in this half
		}
		if m != 0xffffffff {
			t = append(t, bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: m})
		}
		out = append(out, append(t, bpf.JumpIf{Cond: bpf.JumpEqual, Val: v}))
	}
	return out
}
