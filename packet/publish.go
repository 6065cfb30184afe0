package packet

// Publish carries an application message (section 3.3).
type Publish struct {
	Dup      bool // a retransmission; never set with QoS 0 [MQTT-3.3.1-2]
	QoS      byte // 0, 1 or 2
	Retain   bool
	Topic    []byte // a topic name: non-empty, no wildcards
	PacketID uint16 // non-zero for QoS 1 and 2, absent for QoS 0
	Payload  []byte // application data, any bytes, possibly empty
}

// Type returns PUBLISH.
func (*Publish) Type() Type { return PUBLISH }

func (p *Publish) remaining() int {
	n := 2 + len(p.Topic) + len(p.Payload)
	if p.QoS > 0 {
		n += 2
	}
	return n
}

// Size returns the encoded length of the packet, fixed header included.
func (p *Publish) Size() int {
	n := p.remaining()
	return 1 + lengthSize(n) + n
}

func (p *Publish) validate() error {
	if p.QoS > 2 {
		return malformed(PUBLISH, "MQTT-3.3.1-4", "QoS 3")
	}
	if p.QoS == 0 {
		if p.Dup {
			return malformed(PUBLISH, "MQTT-3.3.1-2", "DUP set on a QoS 0 message")
		}
		if p.PacketID != 0 {
			return malformed(PUBLISH, "MQTT-2.3.1-5", "packet identifier on a QoS 0 message")
		}
	} else if p.PacketID == 0 {
		return malformed(PUBLISH, "MQTT-2.3.1-1", "packet identifier 0")
	}
	return checkTopicName(PUBLISH, "topic name", p.Topic) // [MQTT-3.3.2-1]
}

// Append validates the packet and appends its wire form to dst (see Packet).
func (p *Publish) Append(dst []byte) ([]byte, error) {
	dst, err := p.appendHead(dst)
	if err != nil {
		return dst, err
	}
	return append(dst, p.Payload...), nil
}

// appendHead validates p and appends all of it but the payload, so that a
// Writer can send a large payload without copying it.
func (p *Publish) appendHead(dst []byte) ([]byte, error) {
	if err := p.validate(); err != nil {
		return dst, err
	}
	n := p.remaining()
	if err := tooLarge(PUBLISH, n); err != nil {
		return dst, err
	}
	first := byte(PUBLISH)<<4 | p.QoS<<1
	if p.Dup {
		first |= 8
	}
	if p.Retain {
		first |= 1
	}
	dst = appendHeader(dst, first, n)
	dst = appendBytes(dst, p.Topic)
	if p.QoS > 0 {
		dst = appendUint16(dst, p.PacketID)
	}
	return dst, nil
}

// Decode fills the packet from b, one complete PUBLISH packet (see Packet).
func (p *Publish) Decode(b []byte) error {
	flags, rest, err := body(b, PUBLISH)
	if err != nil {
		return err
	}
	d := decoder{b: rest, t: PUBLISH, rule: "MQTT-3.3.2-1"}
	p.Dup = flags&8 != 0
	p.QoS = flags >> 1 & 3
	p.Retain = flags&1 != 0
	p.Topic = d.bytes("topic name")
	p.PacketID = 0
	if p.QoS > 0 {
		d.rule = "MQTT-2.3.1-1"
		p.PacketID = d.uint16("packet identifier")
	}
	if d.err != nil {
		return d.err
	}
	p.Payload = d.b[:len(d.b):len(d.b)] // an append to it must not write past the packet
	return p.validate()
}

// Clone returns a deep copy of p that shares no memory with it.
func (p *Publish) Clone() *Publish {
	c := *p
	buf := make([]byte, 0, len(p.Topic)+len(p.Payload))
	c.Topic, buf = clip(buf, p.Topic)
	c.Payload, _ = clip(buf, p.Payload)
	return &c
}
