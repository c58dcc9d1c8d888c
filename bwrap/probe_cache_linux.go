package bwrap

import (
	"os"
	"syscall"
)

// noFollow makes the cache's open refuse a symlink.
const noFollow = syscall.O_NOFOLLOW

func statIno(fi os.FileInfo) (uint64, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return st.Ino, true
}

func ownedByUs(fi os.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && int(st.Uid) == os.Getuid()
}
