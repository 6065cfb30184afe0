package fuzz_test

import (
	"slices"
	"testing"
	"time"

	"github.com/ternmq/mqtt/internal/pace"
)

// FuzzPacer drives the read pacer that the client and the broker share
// with an arbitrary sequence of reads on a clock of its own: when each
// read is ready, what the previous one brought, how long it waits for its
// data. It checks after every read:
//   - nothing panics;
//   - a read waits only if the pacer said it was pausing before it, never
//     with a delay of zero or less, never after a packet somebody waits
//     for (Answer) or a drained window (Drained);
//   - a wait is longer than zero and no longer than the delay, and the
//     read starts when the wait ends.
func FuzzPacer(f *testing.F) {
	for _, seed := range pacerSeeds() {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 2 {
			return
		}
		// The delay in microseconds, from two bytes; the high bit makes it
		// negative.
		delay := time.Duration(uint16(data[0]&0x7f)<<8|uint16(data[1])) * time.Microsecond
		if data[0]&0x80 != 0 {
			delay = -delay
		}
		clock := time.Unix(1000, 0)
		var slept time.Duration
		p := pace.NewClock(delay,
			func() time.Time { return clock },
			func(d time.Duration) { slept += d; clock = clock.Add(d) })
		data = data[2:]
		// Each read: the gap before it is ready (byte: µs, scaled), the
		// kind and packet count of the read before it (byte: low 2 bits
		// the kind, the rest the count), how long it then waits for data
		// (byte: µs, scaled).
		kinds := []pace.Kind{pace.Stream, pace.Stream, pace.Drained, pace.Answer}
		for i := 0; len(data) >= 4; i++ {
			gap := time.Duration(data[0]) * time.Duration(data[1]>>4+1) * time.Microsecond
			kind := kinds[data[1]&3]
			packets := int(data[2])
			wait := time.Duration(data[3]) * time.Microsecond
			data = data[4:]

			clock = clock.Add(gap)
			pausing := p.Pausing()
			slept = 0
			start := p.Wait(kind, packets)
			switch {
			case slept < 0 || slept > max(delay, 0):
				t.Fatalf("read %d: waited %v with a delay of %v", i, slept, delay)
			case slept > 0 && !pausing:
				t.Fatalf("read %d: waited %v without pausing before", i, slept)
			case slept > 0 && (kind == pace.Answer || kind == pace.Drained):
				t.Fatalf("read %d: waited %v after a read of kind %d", i, slept, kind)
			case !start.Equal(clock):
				t.Fatalf("read %d: starts at %v, the clock says %v", i, start.Sub(clock), clock)
			}
			clock = clock.Add(wait)
			p.Read(start)
		}
	})
}

// pacerRead is one read of FuzzPacer's program.
type pacerRead struct {
	gap     byte // µs before the reader is ready
	kind    byte // low bits: 0 or 1 Stream, 2 Drained, 3 Answer; high nibble: gap scale - 1
	packets byte // what the read before brought
	wait    byte // µs the read waits for data
}

func pacerProgram(delayMicros uint16, reads ...pacerRead) []byte {
	b := []byte{byte(delayMicros >> 8), byte(delayMicros)}
	for _, r := range reads {
		b = append(b, r.gap, r.kind, r.packets, r.wait)
	}
	return b
}

// pacerSeeds: a fast stream that the pacer pauses, ended by a drained
// window, an answer, a stream that slows; a window that every pause
// fills; no delay, and a negative one.
func pacerSeeds() [][]byte {
	// Reads ready every 300 µs with 100 packets each: quick, and the
	// pauses (to 500 µs) keep the rate over half.
	fast := slices.Repeat([]pacerRead{{gap: 150, kind: 0x10, packets: 100}}, 40)
	var seeds [][]byte
	for _, end := range [][]pacerRead{
		{{gap: 5, kind: 2, packets: 20}, {gap: 5, packets: 1}},
		{{gap: 5, kind: 3, packets: 1}, {gap: 5, packets: 1}},
		{{gap: 5, packets: 1, wait: 255}, {gap: 255, packets: 1, wait: 255}},
		slices.Repeat([]pacerRead{{gap: 250, packets: 20}}, 40),
	} {
		seeds = append(seeds, pacerProgram(500, append(fast, end...)...))
	}
	seeds = append(seeds, pacerProgram(0, fast...), pacerProgram(0x8000|500, fast...))
	return seeds
}
