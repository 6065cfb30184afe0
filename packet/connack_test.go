package packet_test

import (
	"testing"

	"github.com/ternmq/mqtt/packet"
)

// CONNACK, section 3.2: fixed header 0x20, remaining length 2, the
// acknowledge flags (bit 0 session present) and the return code.
var connackGoldens = []golden{
	{"accepted", &packet.Connack{}, wire(
		0x20, // CONNACK
		0x02, // remaining length 2
		0x00, // acknowledge flags: no session present
		0x00, // return code 0: accepted
	)},
	{"session present", &packet.Connack{SessionPresent: true}, wire(
		0x20, // CONNACK
		0x02, // remaining length 2
		0x01, // acknowledge flags: session present
		0x00, // return code 0
	)},
	{"unacceptable protocol version", &packet.Connack{ReturnCode: packet.RefusedProtocolVersion}, wire(
		0x20, // CONNACK
		0x02, // remaining length 2
		0x00, // acknowledge flags: 0, as with every refusal [MQTT-3.2.2-4]
		0x01, // return code 1
	)},
	{"identifier rejected", &packet.Connack{ReturnCode: packet.RefusedIdentifierRejected}, wire(
		0x20, // CONNACK
		0x02, // remaining length 2
		0x00, // acknowledge flags
		0x02, // return code 2
	)},
	{"server unavailable", &packet.Connack{ReturnCode: packet.RefusedServerUnavailable}, wire(
		0x20, // CONNACK
		0x02, // remaining length 2
		0x00, // acknowledge flags
		0x03, // return code 3
	)},
	{"bad user name or password", &packet.Connack{ReturnCode: packet.RefusedBadUsernameOrPassword}, wire(
		0x20, // CONNACK
		0x02, // remaining length 2
		0x00, // acknowledge flags
		0x04, // return code 4
	)},
	{"not authorized", &packet.Connack{ReturnCode: packet.RefusedNotAuthorized}, wire(
		0x20, // CONNACK
		0x02, // remaining length 2
		0x00, // acknowledge flags
		0x05, // return code 5
	)},
}

func TestConnackGolden(t *testing.T) { testGolden(t, connackGoldens) }

func TestReturnCodeString(t *testing.T) {
	if s := packet.RefusedNotAuthorized.String(); s != "not authorized" {
		t.Errorf("String() = %q", s)
	}
	if s := packet.ReturnCode(6).String(); s != "reserved return code 6" {
		t.Errorf("String() = %q", s)
	}
}
