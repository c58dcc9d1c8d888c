package junction

import (
	"io"
	"testing"
)

// The ring's own figures, between two goroutines of one process (so on two
// cores when GOMAXPROCS allows): the same traffic as test/bench's raw ring,
// without the process boundary, for quick comparisons of ring changes.

const benchMsg = 64

// BenchmarkRingRTT: one 64-byte message out, the same back, one at a time.
func BenchmarkRingRTT(b *testing.B) {
	srv, cli := junctionPair(b, DefaultRing)
	go func() {
		buf := make([]byte, benchMsg)
		for {
			if _, err := io.ReadFull(srv, buf); err != nil {
				return // the pair closes at the benchmark's end
			}
			if err := srv.WriteBuffers([][]byte{buf}); err != nil {
				return
			}
		}
	}()
	out, in := [][]byte{make([]byte, benchMsg)}, make([]byte, benchMsg)
	b.ResetTimer()
	for range b.N {
		if err := cli.WriteBuffers(out); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(cli, in); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRingOneWay: 64-byte messages one way, each its own write, to a
// reader that takes what is there into a 64 KiB buffer. An 8-byte prefix
// first puts the messages off cache-line alignment, as the frames of a
// real connection are.
func BenchmarkRingOneWay(b *testing.B) {
	srv, cli := junctionPair(b, DefaultRing)
	total := 8 + b.N*benchMsg
	done := make(chan error, 1)
	go func() {
		buf := make([]byte, 64<<10)
		for left := total; left > 0; {
			n, err := srv.Read(buf)
			if err != nil {
				done <- err
				return
			}
			left -= n
		}
		done <- nil
	}()
	msg := [][]byte{make([]byte, benchMsg)}
	b.SetBytes(benchMsg)
	b.ResetTimer()
	if err := cli.WriteBuffers([][]byte{make([]byte, 8)}); err != nil {
		b.Fatal(err)
	}
	for range b.N {
		if err := cli.WriteBuffers(msg); err != nil {
			b.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
}
