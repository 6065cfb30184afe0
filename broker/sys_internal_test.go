package broker

import (
	"testing"

	"github.com/ternmq/mqtt/packet"
)

// BenchmarkCountOut measures what the counters of Stats cost a writer: one
// walk over the fixed headers of a batch and three atomic additions, here
// for a batch of 64 PUBLISH packets of 64 bytes (the fan benchmarks' size).
// It is an internal benchmark because countOut is not exported; the whole
// broker's cost is in bench/broker_test.go.
func BenchmarkCountOut(b *testing.B) {
	var batch []byte
	p := &packet.Publish{Topic: []byte("bench/topic"), Payload: make([]byte, 64), QoS: 1, PacketID: 1}
	for range 64 {
		batch, _ = p.Append(batch)
	}
	var k ioCounters
	b.SetBytes(int64(len(batch)))
	b.ReportAllocs()
	for b.Loop() {
		k.countOut(batch)
	}
	if k.publishOut.Load() != 64*int64(b.N) {
		b.Fatalf("counted %d PUBLISH, want %d", k.publishOut.Load(), 64*b.N)
	}
}

// TestCountOut checks the walk over the packets of a batch, with remaining
// lengths of 1 to 3 bytes.
func TestCountOut(t *testing.T) {
	var batch []byte
	var want int
	for _, size := range []int{0, 100, 127, 128, 20000} {
		batch, _ = (&packet.Publish{Topic: []byte("t"), Payload: make([]byte, size)}).Append(batch)
		batch, _ = (&packet.Puback{PacketID: 7}).Append(batch)
		want += 2
	}
	batch, _ = (&packet.Pingresp{}).Append(batch)
	var k ioCounters
	k.countOut(batch)
	if k.packetsOut.Load() != int64(want+1) || k.publishOut.Load() != 5 || k.bytesOut.Load() != int64(len(batch)) {
		t.Errorf("counted %d packets, %d PUBLISH, %d bytes; want %d, 5, %d", k.packetsOut.Load(), k.publishOut.Load(), k.bytesOut.Load(), want+1, len(batch))
	}
}
