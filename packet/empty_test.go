package packet_test

import (
	"testing"

	"github.com/ternmq/mqtt/packet"
)

// PINGREQ, PINGRESP and DISCONNECT (sections 3.12 to 3.14): a fixed header
// with remaining length 0 and nothing else.
var emptyGoldens = []golden{
	{"PINGREQ", &packet.Pingreq{}, wire(
		0xc0, // PINGREQ, flags 0000
		0x00, // remaining length 0
	)},
	{"PINGRESP", &packet.Pingresp{}, wire(
		0xd0, // PINGRESP, flags 0000
		0x00, // remaining length 0
	)},
	{"DISCONNECT", &packet.Disconnect{}, wire(
		0xe0, // DISCONNECT, flags 0000 [MQTT-3.14.1-1]
		0x00, // remaining length 0
	)},
}

func TestEmptyGolden(t *testing.T) { testGolden(t, emptyGoldens) }
