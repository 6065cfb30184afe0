package packet_test

import (
	"testing"

	"github.com/ternmq/mqtt/packet"
)

// PUBACK, PUBREC, PUBREL, PUBCOMP and UNSUBACK (sections 3.4 to 3.7 and
// 3.11): a fixed header, remaining length 2 and a packet identifier.
var ackGoldens = []golden{
	{"PUBACK", &packet.Puback{PacketID: 1}, wire(
		0x40,       // PUBACK, flags 0000
		0x02,       // remaining length 2
		0x00, 0x01, // packet identifier 1
	)},
	{"PUBREC", &packet.Pubrec{PacketID: 0x1234}, wire(
		0x50,       // PUBREC, flags 0000
		0x02,       // remaining length 2
		0x12, 0x34, // packet identifier 4660, most significant byte first
	)},
	{"PUBREL", &packet.Pubrel{PacketID: 0xffff}, wire(
		0x62,       // PUBREL, flags 0010 [MQTT-3.6.1-1]
		0x02,       // remaining length 2
		0xff, 0xff, // packet identifier 65535
	)},
	{"PUBCOMP", &packet.Pubcomp{PacketID: 7}, wire(
		0x70,       // PUBCOMP, flags 0000
		0x02,       // remaining length 2
		0x00, 0x07, // packet identifier 7
	)},
	{"UNSUBACK", &packet.Unsuback{PacketID: 0x0100}, wire(
		0xb0,       // UNSUBACK, flags 0000
		0x02,       // remaining length 2
		0x01, 0x00, // packet identifier 256
	)},
}

func TestAckGolden(t *testing.T) { testGolden(t, ackGoldens) }

// TestAckTypeMismatch checks that each acknowledgement refuses the bytes of
// the others, which share its layout.
func TestAckTypeMismatch(t *testing.T) {
	for _, g := range ackGoldens {
		for _, h := range ackGoldens {
			if g.p.Type() == h.p.Type() {
				continue
			}
			if err := packet.New(g.p.Type()).Decode(h.wire); err == nil {
				t.Errorf("%v decodes the bytes of %v", g.p.Type(), h.p.Type())
			}
		}
	}
}
