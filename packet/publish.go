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
	// The common case first: flags that agree with each other, and a
	// topic of plain ASCII without wildcards; check finds what else is
	// valid and why the rest is not.
	if p.plainFlags() && uint(len(p.Topic)-1) < maxString && asciiOK(p.Topic, true) {
		return nil
	}
	return p.check()
}

// check is validate without the fast path.
func (p *Publish) check() error {
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
	n := p.remaining()
	if !p.plainFlags() || uint(len(p.Topic)-1) >= maxString || n > MaxRemainingLength {
		return p.appendChecked(dst)
	}
	// The fast path checks the topic as it copies it, in one pass, and
	// leaves anything it cannot decide to validate. The topic goes last,
	// so that little is live across the call that copies it.
	out, b := grow(dst, 1+lengthSize(n)+n)
	rest := b[putHeader(b, p.first(), n):]
	// rest has the room for what follows; the two tests of it marked
	// "never" let the compiler drop the bounds check of every index.
	topic := p.Topic
	if len(topic) > len(rest)-2 {
		return p.appendChecked(dst) // never
	}
	rest[1], rest[0] = byte(len(topic)), byte(len(topic)>>8)
	name := rest[2 : 2+len(topic)]
	rest = rest[2+len(topic):]
	if p.QoS > 0 {
		if len(rest) < 2 {
			return p.appendChecked(dst) // never
		}
		rest[1], rest[0] = byte(p.PacketID), byte(p.PacketID>>8)
		rest = rest[2:]
	}
	copy(rest, p.Payload)
	if copyName(name, topic) {
		return out, nil
	}
	if err := p.validate(); err != nil {
		return dst, err
	}
	copy(name, topic)
	return out, nil
}

// appendChecked is Append without the fast path.
func (p *Publish) appendChecked(dst []byte) ([]byte, error) {
	n, err := p.head()
	if err != nil {
		return dst, err
	}
	out, b := grow(dst, 1+lengthSize(n)+n)
	copy(b[p.putHead(b, n):], p.Payload)
	return out, nil
}

// plainFlags reports whether QoS, DUP and the packet identifier agree.
func (p *Publish) plainFlags() bool {
	return p.QoS == 0 && !p.Dup && p.PacketID == 0 || p.QoS-1 < 2 && p.PacketID != 0
}

func (p *Publish) first() byte {
	first := byte(PUBLISH)<<4 | p.QoS<<1
	if p.Dup {
		first |= 8
	}
	if p.Retain {
		first |= 1
	}
	return first
}

// appendHead validates p and appends all of it but the payload, so that a
// Writer can send a large payload without copying it.
func (p *Publish) appendHead(dst []byte) ([]byte, error) {
	n, err := p.head()
	if err != nil {
		return dst, err
	}
	out, b := grow(dst, 1+lengthSize(n)+n-len(p.Payload))
	p.putHead(b, n)
	return out, nil
}

// head validates p and returns its remaining length.
func (p *Publish) head() (int, error) {
	if err := p.validate(); err != nil {
		return 0, err
	}
	n := p.remaining()
	return n, tooLarge(PUBLISH, n)
}

// putHead writes all of p but the payload into b, which has room for it,
// given its remaining length n, and returns the length written.
func (p *Publish) putHead(b []byte, n int) int {
	i := putHeader(b, p.first(), n)
	b[i], b[i+1] = byte(len(p.Topic)>>8), byte(len(p.Topic))
	i += 2 + copy(b[i+2:], p.Topic)
	if p.QoS > 0 {
		b[i], b[i+1] = byte(p.PacketID>>8), byte(p.PacketID)
		i += 2
	}
	return i
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
