#include "textflag.h"

// func int80(nr uintptr) uintptr: an i386-ABI system call without
// arguments, from 64-bit code, the way a cell would try the foreign ABI.
TEXT ·int80(SB), NOSPLIT, $0-16
	MOVQ nr+0(FP), AX
	INT $0x80
	MOVQ AX, ret+8(FP)
	RET
