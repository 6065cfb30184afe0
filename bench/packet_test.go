package bench_test

import (
	"bytes"
	"io"
	"testing"

	"github.com/ternmq/mqtt/packet"
)

// benchPackets are typical packets of every type; PUBLISH comes with three
// payload sizes.
func benchPackets() []struct {
	name string
	p    packet.Packet
} {
	return []struct {
		name string
		p    packet.Packet
	}{
		{"Connect", &packet.Connect{Level: packet.Level311, CleanSession: true, KeepAlive: 60,
			ClientID: []byte("tern-bench-client-0001"), Will: true, WillQoS: 1, WillTopic: []byte("clients/tern-bench-client-0001/status"),
			WillMessage: []byte("offline"), HasUsername: true, Username: []byte("device"), HasPassword: true, Password: []byte("s3cr3t-t0k3n")}},
		{"Connack", &packet.Connack{SessionPresent: true}},
		{"Publish16", &packet.Publish{QoS: 1, PacketID: 42, Topic: []byte("sensors/building-1/floor-2/temperature"), Payload: bytes.Repeat([]byte("x"), 16)}},
		{"Publish1K", &packet.Publish{QoS: 1, PacketID: 42, Topic: []byte("sensors/building-1/floor-2/temperature"), Payload: bytes.Repeat([]byte("x"), 1024)}},
		{"Publish64K", &packet.Publish{QoS: 1, PacketID: 42, Topic: []byte("sensors/building-1/floor-2/temperature"), Payload: bytes.Repeat([]byte("x"), 65536)}},
		{"Puback", &packet.Puback{PacketID: 42}},
		{"Pubrec", &packet.Pubrec{PacketID: 42}},
		{"Pubrel", &packet.Pubrel{PacketID: 42}},
		{"Pubcomp", &packet.Pubcomp{PacketID: 42}},
		{"Subscribe", &packet.Subscribe{PacketID: 7, Subscriptions: []packet.Subscription{
			{Filter: []byte("sensors/+/floor-2/#"), QoS: 1}, {Filter: []byte("alerts/#"), QoS: 2}, {Filter: []byte("$SYS/broker/uptime"), QoS: 0}}}},
		{"Suback", &packet.Suback{PacketID: 7, ReturnCodes: []byte{1, 2, packet.SubackFailure}}},
		{"Unsubscribe", &packet.Unsubscribe{PacketID: 8, Filters: [][]byte{[]byte("sensors/+/floor-2/#"), []byte("alerts/#")}}},
		{"Unsuback", &packet.Unsuback{PacketID: 8}},
		{"Pingreq", &packet.Pingreq{}},
		{"Pingresp", &packet.Pingresp{}},
		{"Disconnect", &packet.Disconnect{}},
	}
}

func BenchmarkEncode(b *testing.B) {
	for _, c := range benchPackets() {
		b.Run(c.name, func(b *testing.B) {
			buf := make([]byte, 0, c.p.Size())
			b.SetBytes(int64(c.p.Size()))
			b.ReportAllocs()
			for b.Loop() {
				var err error
				if buf, err = c.p.Append(buf[:0]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkDecode(b *testing.B) {
	for _, c := range benchPackets() {
		b.Run(c.name, func(b *testing.B) {
			wire, err := c.p.Append(nil)
			if err != nil {
				b.Fatal(err)
			}
			p := packet.New(c.p.Type())
			b.SetBytes(int64(len(wire)))
			b.ReportAllocs()
			for b.Loop() {
				if err := p.Decode(wire); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// mixedStream is a plausible stream for a broker: mostly small PUBLISH
// packets and their acknowledgements, some control packets.
func mixedStream(b *testing.B) ([]byte, int) {
	ps := benchPackets()
	byName := map[string]packet.Packet{}
	for _, c := range ps {
		byName[c.name] = c.p
	}
	order := []string{"Connect", "Subscribe", "Publish16", "Puback", "Publish16", "Puback", "Publish1K", "Pubrec",
		"Pubrel", "Pubcomp", "Publish16", "Puback", "Pingreq", "Pingresp", "Unsubscribe", "Unsuback", "Suback", "Connack",
		"Publish16", "Puback", "Disconnect"}
	var stream []byte
	for _, n := range order {
		var err error
		if stream, err = byName[n].Append(stream); err != nil {
			b.Fatal(err)
		}
	}
	return stream, len(order)
}

// loop serves its bytes again and again, as a connection that never ends.
type loop struct {
	b []byte
	i int
}

func (l *loop) Read(p []byte) (int, error) {
	n := copy(p, l.b[l.i:])
	l.i = (l.i + n) % len(l.b)
	return n, nil
}

// BenchmarkReader reads a mixed stream with ReadPacket (framing and
// decoding); bytes/s is the stream's throughput, ns/op is per packet.
func BenchmarkReader(b *testing.B) {
	stream, n := mixedStream(b)
	r := packet.NewReader(&loop{b: stream}, 0)
	b.SetBytes(int64(len(stream) / n))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.ReadPacket(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReaderNext frames the same stream without decoding.
func BenchmarkReaderNext(b *testing.B) {
	stream, n := mixedStream(b)
	r := packet.NewReader(&loop{b: stream}, 0)
	b.SetBytes(int64(len(stream) / n))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Next(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWriter encodes the packets of the mixed stream through a Writer
// to io.Discard, flushing after each stream; ns/op is per packet.
func BenchmarkWriter(b *testing.B) {
	ps := benchPackets()
	var seq []packet.Packet
	size := 0
	for _, c := range ps {
		if c.name != "Publish64K" {
			seq = append(seq, c.p)
			size += c.p.Size()
		}
	}
	w := packet.NewWriter(io.Discard)
	b.SetBytes(int64(size / len(seq)))
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if err := w.WritePacket(seq[i]); err != nil {
			b.Fatal(err)
		}
		if i++; i == len(seq) {
			i = 0
			if err := w.Flush(); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkWriterPublish64K writes large packets, each over the buffer.
func BenchmarkWriterPublish64K(b *testing.B) {
	p := benchPackets()[4].p
	w := packet.NewWriter(io.Discard)
	b.SetBytes(int64(p.Size()))
	b.ReportAllocs()
	for b.Loop() {
		if err := w.WritePacket(p); err != nil {
			b.Fatal(err)
		}
		if err := w.Flush(); err != nil {
			b.Fatal(err)
		}
	}
}
