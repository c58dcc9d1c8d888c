//go:build !linux

package process

import "syscall"

// Cells need Linux process groups, death signals and /proc.
const supported = false

func sysProcAttr() *syscall.SysProcAttr { return nil }

func waitExit(pid int) {}

func killGroup(pgid int, sig syscall.Signal) error { return ErrUnsupported }

func signalMembers(pgid int, sig syscall.Signal) error { return ErrUnsupported }

func joinNewSessionKeyring() error { return ErrUnsupported }
