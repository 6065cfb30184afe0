package packet_test

import (
	"io"
	"testing"

	"github.com/ternmq/mqtt/packet"
)

// The allocation goals of the design: encoding into a slice with room,
// decoding into a reused value and reading packets in steady state
// allocate nothing.

func TestAllocsAppend(t *testing.T) {
	buf := make([]byte, 0, 1<<22)
	for _, g := range allGoldens() {
		allocs := testing.AllocsPerRun(20, func() {
			var err error
			if buf, err = g.p.Append(buf[:0]); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("%s: Append allocates %.1f times", g.name, allocs)
		}
	}
}

func TestAllocsDecode(t *testing.T) {
	for _, g := range allGoldens() {
		p := packet.New(g.p.Type())
		allocs := testing.AllocsPerRun(20, func() {
			if err := p.Decode(g.wire); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("%s: Decode allocates %.1f times", g.name, allocs)
		}
	}
}

// loopReader serves its bytes again and again.
type loopReader struct {
	b []byte
	i int
}

func (l *loopReader) Read(p []byte) (int, error) {
	n := copy(p, l.b[l.i:])
	l.i = (l.i + n) % len(l.b)
	return n, nil
}

// TestAllocsReader reads a repeating stream of every packet type, with
// reads that cut packets anywhere: once warm, ReadPacket allocates nothing.
func TestAllocsReader(t *testing.T) {
	var stream []byte
	for _, g := range allGoldens() {
		if len(g.wire) < 1<<15 {
			stream = append(stream, g.wire...)
		}
	}
	// The stream's length is no multiple of the Reader's buffer, so reads
	// end at a different place in each lap.
	r := packet.NewReader(&loopReader{b: stream}, 0)
	for range 1000 {
		if _, err := r.ReadPacket(); err != nil {
			t.Fatal(err)
		}
	}
	allocs := testing.AllocsPerRun(1000, func() {
		if _, err := r.ReadPacket(); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("ReadPacket allocates %.2f times per packet", allocs)
	}
}

func TestAllocsWriter(t *testing.T) {
	w := packet.NewWriter(io.Discard)
	var small []packet.Packet
	for _, g := range allGoldens() {
		if len(g.wire) < 1<<10 {
			small = append(small, g.p)
		}
	}
	allocs := testing.AllocsPerRun(100, func() {
		for _, p := range small {
			if err := w.WritePacket(p); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("WritePacket and Flush allocate %.1f times", allocs)
	}
}
