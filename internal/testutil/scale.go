package testutil

import (
	"os"
	"strconv"
	"testing"
	"time"
)

// Scaled stretches a test's wait by $CELL_TIME_SCALE, which the VM lab sets
// from how much slower the emulated guest runs a fixed piece of work than
// the host did just before boot. A loaded or slower host then gets longer
// waits instead of a flaky lab. Unset means 1; a value that is not a number
// of at least 1 fails the test, so a broken runner cannot shrink the waits.
func Scaled(tb testing.TB, d time.Duration) time.Duration {
	tb.Helper()
	v := os.Getenv("CELL_TIME_SCALE")
	if v == "" {
		return d
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f < 1 || f > 1000 {
		tb.Fatalf("CELL_TIME_SCALE=%q: want a number from 1 to 1000", v)
	}
	return time.Duration(float64(d) * f)
}
