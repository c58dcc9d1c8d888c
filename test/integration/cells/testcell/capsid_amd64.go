package main

// int80 makes an i386 system call (number nr, no arguments); it returns
// the kernel's raw result, a negative errno on failure.
func int80(nr uintptr) uintptr
