package pace

import (
	"testing"

	"github.com/ternmq/mqtt/packet"
)

func TestBatchKind(t *testing.T) {
	pub := func(qos byte) packet.Packet { return &packet.Publish{QoS: qos, PacketID: 1, Topic: []byte("a")} }
	tests := []struct {
		name    string
		packets []packet.Packet
		window  int
		want    Kind
	}{
		{"nothing", nil, 20, Stream},
		{"QoS 0 messages", []packet.Packet{pub(0), pub(0)}, 20, Stream},
		{"a QoS 1 message among them", []packet.Packet{pub(0), pub(1)}, 20, Stream},
		{"QoS 2 handshake", []packet.Packet{&packet.Pubrec{PacketID: 1}, &packet.Pubrel{PacketID: 2}}, 20, Stream},
		{"acknowledgements for under half the window", []packet.Packet{&packet.Puback{PacketID: 1}, &packet.Pubcomp{PacketID: 2}}, 20, Stream},
		{"acknowledgements for half the window", []packet.Packet{&packet.Puback{PacketID: 1}, &packet.Pubcomp{PacketID: 2}}, 4, Drained},
		{"an answer among messages", []packet.Packet{pub(1), &packet.Suback{PacketID: 1, ReturnCodes: []byte{0}}, pub(0)}, 20, Answer},
		{"an answer among drained acknowledgements", []packet.Packet{&packet.Puback{PacketID: 1}, &packet.Pingresp{}}, 1, Answer},
	}
	for _, tt := range tests {
		var b Batch
		for _, p := range tt.packets {
			b.Add(p)
		}
		if got := b.Kind(tt.window); got != tt.want || b.Packets != len(tt.packets) {
			t.Errorf("%s: kind %d, %d packets; want %d, %d", tt.name, got, b.Packets, tt.want, len(tt.packets))
		}
	}
}
