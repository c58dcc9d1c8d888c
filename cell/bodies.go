package cell

import (
	"math/bits"
	"sync"
)

// Bodies of a few KiB and more cost more than their copy when each one is
// fresh memory: the allocator zeroes it, the kernel faults its pages in,
// and the collector runs every few bodies and hands the pages back. So the
// frame reader takes such bodies from per-size pools, and a program that
// is done with a body it was given may hand it back with [Recycle].
//
// The pools hold slices whose capacity is a power of two, from
// minPooledBody up to DefaultMaxBody; a slice of another capacity goes
// into the class below it.
const (
	minPooledShift = 12 // 4 KiB
	maxPooledShift = 24 // 16 MiB, DefaultMaxBody
	minPooledBody  = 1 << minPooledShift
)

var bodyPools [maxPooledShift - minPooledShift + 1]sync.Pool

// Recycle hands back a body the SDK gave this program (a reply from
// [Conn.Call], or a request body a handler received), so that a later
// frame of about its size is read into it instead of fresh memory. Nothing
// may use b, or any slice of it, afterwards: a later message overwrites it.
// A cell serving with ServeOptions.RecycleBodies recycles its request
// bodies itself: its handlers must not.
// Recycling is never needed; it pays for bodies of 4 KiB and more, received
// often. Slices under 4 KiB are left to the collector.
func Recycle(b []byte) {
	c := cap(b)
	if c < minPooledBody {
		return
	}
	class := min(bits.Len(uint(c))-1, maxPooledShift) - minPooledShift
	b = b[:1<<(class+minPooledShift)]
	bodyPools[class].Put(&b)
}

// newBody returns a slice of length n for a frame's body: from the pools
// when n is at least minPooledBody and at most the largest class, with a
// capacity under 2n; otherwise fresh.
func newBody(n int) []byte {
	if n < minPooledBody || n > 1<<maxPooledShift {
		return make([]byte, n)
	}
	class := bits.Len(uint(n-1)) - minPooledShift
	if p, ok := bodyPools[class].Get().(*[]byte); ok {
		return (*p)[:n]
	}
	return make([]byte, n, 1<<(class+minPooledShift))
}
