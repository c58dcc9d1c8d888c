package junction

import (
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"
)

// countingEvent is a chanEvent that counts the waits on it: how the stress
// test sees that both sides really slept.
type countingEvent struct {
	chanEvent
	waits *atomic.Int64
}

func (e countingEvent) wait() error { e.waits.Add(1); return e.chanEvent.wait() }

// TestWakeUpStress: a producer and a consumer that each pause at random,
// often for longer than the other's spin, so that both go to sleep again
// and again (the consumer on an empty ring, the producer on a full one).
// A lost wake-up hangs the test; every byte must arrive, in order.
func TestWakeUpStress(t *testing.T) {
	writes := 3000
	if testing.Short() {
		writes = 500
	}
	var sleeps [4]atomic.Int64 // per event: ring 0's data, space, ring 1's
	var evs [4]event
	for i := range evs {
		evs[i] = countingEvent{make(chanEvent, 1), &sleeps[i]}
	}
	cli, srv, _ := pairWith(t, MinRing, evs)

	// pause sleeps past the peer's spin about one time in four.
	pause := func(rng *rand.Rand) {
		if rng.IntN(4) == 0 {
			time.Sleep(time.Duration(rng.IntN(3)+1) * spinFor)
		}
	}
	var total int
	sizes := make([]int, writes)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range sizes {
		sizes[i] = 1 + rng.IntN(3*MinRing) // up to three rings' worth: writes wait for space
		total += sizes[i]
	}
	wrote := make(chan error, 1)
	go func() {
		rng := rand.New(rand.NewPCG(3, 4))
		at := 0
		for _, n := range sizes {
			b := make([]byte, n)
			for i := range b {
				b[i] = pattern(at + i)
			}
			at += n
			// Split at random: one write of several buffers.
			cut := rng.IntN(n + 1)
			if err := cli.WriteBuffers([][]byte{b[:cut], b[cut:]}); err != nil {
				wrote <- err
				return
			}
			pause(rng)
		}
		wrote <- nil
	}()

	rng = rand.New(rand.NewPCG(5, 6))
	buf := make([]byte, 2*MinRing)
	for at := 0; at < total; {
		n, err := srv.Read(buf[:1+rng.IntN(len(buf))])
		if err != nil {
			t.Fatalf("read at byte %d of %d: %v", at, total, err)
		}
		for i, c := range buf[:n] {
			if c != pattern(at+i) {
				t.Fatalf("byte %d is %#x, want %#x", at+i, c, pattern(at+i))
			}
		}
		at += n
		pause(rng)
	}
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	if sleeps[0].Load() == 0 || sleeps[1].Load() == 0 {
		t.Fatalf("the consumer slept %d times, the producer %d: the test did not test both wake-ups", sleeps[0].Load(), sleeps[1].Load())
	}
	t.Logf("%d bytes in %d writes; the consumer slept %d times, the producer %d", total, writes, sleeps[0].Load(), sleeps[1].Load())
}

// pattern is the stress test's byte at position i of the stream: not
// periodic in the ring size, so a byte read from the wrong place shows.
func pattern(i int) byte { return byte(i ^ i>>8 ^ i>>17) }
