package packet

import "strconv"

// ReturnCode is the CONNACK return code (section 3.2.2.3).
type ReturnCode byte

// The CONNACK return codes of MQTT 3.1.1. Values above 5 are reserved.
const (
	Accepted                     ReturnCode = 0
	RefusedProtocolVersion       ReturnCode = 1
	RefusedIdentifierRejected    ReturnCode = 2
	RefusedServerUnavailable     ReturnCode = 3
	RefusedBadUsernameOrPassword ReturnCode = 4
	RefusedNotAuthorized         ReturnCode = 5
)

var returnCodeNames = [...]string{
	"connection accepted",
	"unacceptable protocol version",
	"identifier rejected",
	"server unavailable",
	"bad user name or password",
	"not authorized",
}

// String describes the code as the specification names it.
func (c ReturnCode) String() string {
	if int(c) < len(returnCodeNames) {
		return returnCodeNames[c]
	}
	return "reserved return code " + strconv.Itoa(int(c))
}

// Connack is the server's answer to CONNECT (section 3.2).
type Connack struct {
	SessionPresent bool
	ReturnCode     ReturnCode
}

// Type returns CONNACK.
func (*Connack) Type() Type { return CONNACK }

// Size returns the encoded length of the packet, fixed header included.
func (*Connack) Size() int { return 4 }

func (p *Connack) validate() error {
	if p.ReturnCode > RefusedNotAuthorized {
		return malformed(CONNACK, "3.2.2.3", "reserved return code")
	}
	if p.SessionPresent && p.ReturnCode != Accepted {
		return malformed(CONNACK, "MQTT-3.2.2-4", "session present with a non-zero return code")
	}
	return nil
}

// Append validates the packet and appends its wire form to dst (see Packet).
func (p *Connack) Append(dst []byte) ([]byte, error) {
	if err := p.validate(); err != nil {
		return dst, err
	}
	var flags byte
	if p.SessionPresent {
		flags = 1
	}
	return append(dst, byte(CONNACK)<<4, 2, flags, byte(p.ReturnCode)), nil
}

// Decode fills the packet from b, one complete CONNACK packet (see Packet).
func (p *Connack) Decode(b []byte) error {
	_, rest, err := body(b, CONNACK)
	if err != nil {
		return err
	}
	if len(rest) != 2 {
		return malformed(CONNACK, "3.2", "remaining length not 2")
	}
	if rest[0]&^1 != 0 {
		return malformed(CONNACK, "3.2.2.1", "reserved acknowledge flags set")
	}
	*p = Connack{SessionPresent: rest[0] == 1, ReturnCode: ReturnCode(rest[1])}
	return p.validate()
}
