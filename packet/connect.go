package packet

import "unicode/utf8"

// Protocol levels.
const (
	Level31  = 3 // MQTT 3.1, protocol name "MQIsdp"
	Level311 = 4 // MQTT 3.1.1, protocol name "MQTT"
)

// Connect is the first packet a client sends (section 3.1).
type Connect struct {
	// Level is the protocol level: Level311, or Level31 for MQTT 3.1. The
	// protocol name on the wire follows from it. Zero encodes as Level311.
	Level byte
	// Bridge is the bridge mark: the protocol level goes on the wire with
	// its top bit set (0x84 for 3.1.1, 0x83 for 3.1), as mosquitto's
	// bridges send it with try_private, to tell a broker that the client
	// is a bridge. It is not MQTT 3.1.1: Decode refuses such a level as
	// unsupported [MQTT-3.1.2-2]; only DecodeBridge accepts it.
	Bridge       bool
	CleanSession bool
	KeepAlive    uint16 // seconds; 0 turns keepalive off
	ClientID     []byte

	Will        bool // a will message is present
	WillQoS     byte
	WillRetain  bool
	WillTopic   []byte
	WillMessage []byte

	HasUsername bool // the user name field is present, possibly empty
	Username    []byte
	HasPassword bool // the password field is present, possibly empty
	Password    []byte
}

const (
	connectReserved     = 0x01
	connectCleanSession = 0x02
	connectWill         = 0x04
	connectWillRetain   = 0x20
	connectPassword     = 0x40
	connectUsername     = 0x80
)

var (
	nameMQTT   = []byte("MQTT")
	nameMQIsdp = []byte("MQIsdp")
)

// Type returns CONNECT.
func (*Connect) Type() Type { return CONNECT }

func (p *Connect) protocolName() []byte {
	if p.Level == Level31 {
		return nameMQIsdp
	}
	return nameMQTT
}

func (p *Connect) remaining() int {
	n := 2 + len(p.protocolName()) + 1 + 1 + 2 + 2 + len(p.ClientID)
	if p.Will {
		n += 4 + len(p.WillTopic) + len(p.WillMessage)
	}
	if p.HasUsername {
		n += 2 + len(p.Username)
	}
	if p.HasPassword {
		n += 2 + len(p.Password)
	}
	return n
}

// Size returns the encoded length of the packet, fixed header included.
func (p *Connect) Size() int {
	n := p.remaining()
	return 1 + lengthSize(n) + n
}

func (p *Connect) flags() byte {
	var f byte
	if p.CleanSession {
		f |= connectCleanSession
	}
	if p.Will {
		f |= connectWill | p.WillQoS<<3
		if p.WillRetain {
			f |= connectWillRetain
		}
	}
	if p.HasUsername {
		f |= connectUsername
	}
	if p.HasPassword {
		f |= connectPassword
	}
	return f
}

// validate checks what Append and Decode both require of the fields.
func (p *Connect) validate() error {
	if p.Level != 0 && p.Level != Level311 && p.Level != Level31 {
		return &Error{Kind: ErrUnsupportedVersion, Type: CONNECT, Rule: "MQTT-3.1.2-2", Reason: "protocol level not 3 or 4"}
	}
	if err := stringError(CONNECT, "client identifier", p.ClientID); err != nil { // [MQTT-3.1.3-4]
		return err
	}
	if p.Will {
		if p.WillQoS > 2 {
			return malformed(CONNECT, "MQTT-3.1.2-14", "will QoS 3")
		}
		if err := checkTopicName(CONNECT, "will topic", p.WillTopic); err != nil { // [MQTT-3.1.3-10]
			return err
		}
		if len(p.WillMessage) > maxString {
			return malformed(CONNECT, "3.1.3.3", "will message longer than 65535 bytes")
		}
	} else {
		// Decode finds the first two in the flags, the last two as bytes
		// after the last field.
		switch {
		case p.WillQoS != 0:
			return malformed(CONNECT, "MQTT-3.1.2-13", "will QoS without the will flag")
		case p.WillRetain:
			return malformed(CONNECT, "MQTT-3.1.2-15", "will retain without the will flag")
		case len(p.WillTopic) != 0 || len(p.WillMessage) != 0:
			return malformed(CONNECT, "MQTT-3.1.2-11", "will topic or message without the will flag")
		}
	}
	if p.HasUsername {
		if err := stringError(CONNECT, "user name", p.Username); err != nil { // [MQTT-3.1.3-11]
			return err
		}
	} else if len(p.Username) != 0 {
		return malformed(CONNECT, "MQTT-3.1.2-18", "user name without the user name flag")
	}
	if p.HasPassword {
		if !p.HasUsername {
			return malformed(CONNECT, "MQTT-3.1.2-22", "password without a user name")
		}
		if len(p.Password) > maxString {
			return malformed(CONNECT, "3.1.3.5", "password longer than 65535 bytes")
		}
	} else if len(p.Password) != 0 {
		return malformed(CONNECT, "MQTT-3.1.2-20", "password without the password flag")
	}
	return nil
}

// emptyID reports an empty client identifier with CleanSession 0, which a
// client must not send [MQTT-3.1.3-7] and a server answers with CONNACK
// code 0x02 [MQTT-3.1.3-8]. It is checked after every other rule, since a
// packet that breaks those gets no CONNACK at all [MQTT-3.1.4-1].
//
// MQTT 3.1 (level 3) asks for 1 to 23 characters whatever CleanSession
// says, and its servers answer any other length with code 0x02 (section
// 3.1 of the 3.1 specification, "Client Identifier").
func (p *Connect) emptyID(rule string) error {
	if len(p.ClientID) == 0 && !p.CleanSession {
		return &Error{Kind: ErrIdentifierRejected, Type: CONNECT, Rule: rule, Reason: "empty client identifier with CleanSession 0"}
	}
	if p.Level == Level31 && (len(p.ClientID) == 0 || utf8.RuneCount(p.ClientID) > 23) {
		return &Error{Kind: ErrIdentifierRejected, Type: CONNECT, Rule: ruleID31, Reason: "MQTT 3.1 client identifier not 1 to 23 characters"}
	}
	return nil
}

// ruleID31 names the MQTT 3.1 rule on client identifiers, which has no
// statement id.
const ruleID31 = "MQTT 3.1 section 3.1"

// Append validates the packet and appends its wire form to dst (see Packet).
func (p *Connect) Append(dst []byte) ([]byte, error) {
	if err := p.validate(); err != nil {
		return dst, err
	}
	if err := p.emptyID("MQTT-3.1.3-7"); err != nil {
		return dst, err
	}
	n := p.remaining()
	dst = appendHeader(dst, byte(CONNECT)<<4, n)
	dst = appendBytes(dst, p.protocolName())
	level := p.Level
	if level == 0 {
		level = Level311
	}
	if p.Bridge {
		level |= bridgeMark
	}
	dst = append(dst, level, p.flags())
	dst = appendUint16(dst, p.KeepAlive)
	dst = appendBytes(dst, p.ClientID)
	if p.Will {
		dst = appendBytes(dst, p.WillTopic)
		dst = appendBytes(dst, p.WillMessage)
	}
	if p.HasUsername {
		dst = appendBytes(dst, p.Username)
	}
	if p.HasPassword {
		dst = appendBytes(dst, p.Password)
	}
	return dst, nil
}

// Decode fills p from b. A CONNECT of an unsupported protocol level fails
// with ErrUnsupportedVersion and leaves Level set, so that a server can
// answer with CONNACK code 0x01 [MQTT-3.1.2-2]; one with an empty client
// identifier and CleanSession 0, or an MQTT 3.1 one with an identifier not
// 1 to 23 characters long, fails with ErrIdentifierRejected, for CONNACK
// code 0x02 [MQTT-3.1.3-8]. Other errors call for closing the
// connection without a CONNACK [MQTT-3.1.4-1].
func (p *Connect) Decode(b []byte) error { return p.decode(b, false) }

// bridgeMark is the bit a bridge sets in the protocol level.
const bridgeMark = 0x80

// DecodeBridge is Decode for a server that lets bridges connect: it also
// accepts the bridge mark (protocol level 0x84 or 0x83), sets Bridge, and
// leaves Level without the mark. Anything else is decoded, and refused, as
// by Decode.
func (p *Connect) DecodeBridge(b []byte) error { return p.decode(b, true) }

func (p *Connect) decode(b []byte, bridge bool) error {
	_, rest, err := body(b, CONNECT)
	if err != nil {
		return err
	}
	*p = Connect{}
	d := decoder{b: rest, t: CONNECT}
	name := d.bytes("protocol name")
	level := d.byte("protocol level")
	flags := d.byte("connect flags")
	p.KeepAlive = d.uint16("keep alive")
	if d.err != nil {
		return d.err
	}
	if bridge && level&bridgeMark != 0 && (level&^bridgeMark == Level311 || level&^bridgeMark == Level31) {
		level &^= bridgeMark
		p.Bridge = true
	}
	p.Level = level
	switch {
	case string(name) == "MQTT":
		if level != Level311 {
			return &Error{Kind: ErrUnsupportedVersion, Type: CONNECT, Rule: "MQTT-3.1.2-2", Reason: "protocol level not 4 with name MQTT"}
		}
	case string(name) == "MQIsdp":
		if level != Level31 {
			return &Error{Kind: ErrUnsupportedVersion, Type: CONNECT, Rule: "MQTT-3.1.2-2", Reason: "protocol level not 3 with name MQIsdp"}
		}
	default:
		return violation(CONNECT, "MQTT-3.1.2-1", "protocol name not MQTT or MQIsdp")
	}
	if flags&connectReserved != 0 {
		return malformed(CONNECT, "MQTT-3.1.2-3", "reserved connect flag set")
	}
	p.CleanSession = flags&connectCleanSession != 0
	p.Will = flags&connectWill != 0
	p.WillQoS = flags >> 3 & 3
	p.WillRetain = flags&connectWillRetain != 0
	p.HasUsername = flags&connectUsername != 0
	p.HasPassword = flags&connectPassword != 0
	if !p.Will && (p.WillQoS != 0 || p.WillRetain) || p.HasPassword && !p.HasUsername {
		return p.validate() // the flags alone break a rule
	}
	// The payload fields come in this order, each present exactly when its
	// flag says [MQTT-3.1.3-1]. Bytes left after the last announced field
	// would be the next field, whose flag is 0: extra is the rule that
	// forbids it.
	d.rule = "MQTT-3.1.3-3"
	p.ClientID = d.bytes("client identifier")
	extra := "MQTT-3.1.2-11"
	if p.Will {
		d.rule = "MQTT-3.1.2-9"
		p.WillTopic = d.bytes("will topic")
		p.WillMessage = d.bytes("will message")
		extra = "MQTT-3.1.2-18"
	}
	if p.HasUsername {
		d.rule = "MQTT-3.1.2-19"
		p.Username = d.bytes("user name")
		extra = "MQTT-3.1.2-20"
	}
	if p.HasPassword {
		d.rule = "MQTT-3.1.2-21"
		p.Password = d.bytes("password")
		extra = "3.1.3"
	}
	if err := d.end(extra); err != nil {
		return err
	}
	if err := p.validate(); err != nil {
		return err
	}
	return p.emptyID("MQTT-3.1.3-8")
}

// Clone returns a deep copy of p that shares no memory with it.
func (p *Connect) Clone() *Connect {
	c := *p
	buf := make([]byte, 0, len(p.ClientID)+len(p.WillTopic)+len(p.WillMessage)+len(p.Username)+len(p.Password))
	c.ClientID, buf = clip(buf, p.ClientID)
	c.WillTopic, buf = clip(buf, p.WillTopic)
	c.WillMessage, buf = clip(buf, p.WillMessage)
	c.Username, buf = clip(buf, p.Username)
	c.Password, _ = clip(buf, p.Password)
	return &c
}

// clip copies s to the end of buf, which has room for it, and returns the
// copy and the grown buf. A nil s stays nil.
func clip(buf, s []byte) ([]byte, []byte) {
	if s == nil {
		return nil, buf
	}
	n := len(buf)
	buf = append(buf, s...)
	return buf[n:len(buf):len(buf)], buf
}
