package packet

// Puback acknowledges a QoS 1 PUBLISH (section 3.4).
type Puback struct{ PacketID uint16 }

// Pubrec acknowledges a QoS 2 PUBLISH, the first step (section 3.5).
type Pubrec struct{ PacketID uint16 }

// Pubrel releases a QoS 2 PUBLISH, the second step (section 3.6).
type Pubrel struct{ PacketID uint16 }

// Pubcomp completes a QoS 2 exchange, the third step (section 3.7).
type Pubcomp struct{ PacketID uint16 }

// Unsuback acknowledges an UNSUBSCRIBE (section 3.11).
type Unsuback struct{ PacketID uint16 }

// The five acknowledgements share one wire form: a fixed header, remaining
// length 2 and the packet identifier of the packet they answer.

func appendAck(dst []byte, t Type, id uint16) ([]byte, error) {
	if id == 0 {
		return dst, malformed(t, "MQTT-2.3.1-1", "packet identifier 0")
	}
	first := byte(t) << 4
	if t == PUBREL {
		first |= 2 // [MQTT-3.6.1-1]
	}
	return append(dst, first, 2, byte(id>>8), byte(id)), nil
}

func decodeAck(b []byte, t Type) (uint16, error) {
	_, rest, err := body(b, t)
	if err != nil {
		return 0, err
	}
	if len(rest) != 2 {
		return 0, malformed(t, "2.2.3", "remaining length not 2")
	}
	id := uint16(rest[0])<<8 | uint16(rest[1])
	if id == 0 {
		// It repeats the identifier of a packet that cannot have 0 [MQTT-2.3.1-1] [MQTT-2.3.1-6].
		return 0, malformed(t, "MQTT-2.3.1-1", "packet identifier 0")
	}
	return id, nil
}

// Type returns PUBACK.
func (*Puback) Type() Type { return PUBACK }

// Type returns PUBREC.
func (*Pubrec) Type() Type { return PUBREC }

// Type returns PUBREL.
func (*Pubrel) Type() Type { return PUBREL }

// Type returns PUBCOMP.
func (*Pubcomp) Type() Type { return PUBCOMP }

// Type returns UNSUBACK.
func (*Unsuback) Type() Type { return UNSUBACK }

// Size returns the encoded length of the packet, fixed header included.
func (*Puback) Size() int { return 4 }

// Size returns the encoded length of the packet, fixed header included.
func (*Pubrec) Size() int { return 4 }

// Size returns the encoded length of the packet, fixed header included.
func (*Pubrel) Size() int { return 4 }

// Size returns the encoded length of the packet, fixed header included.
func (*Pubcomp) Size() int { return 4 }

// Size returns the encoded length of the packet, fixed header included.
func (*Unsuback) Size() int { return 4 }

// Append validates the packet and appends its wire form to dst (see Packet).
func (p *Puback) Append(dst []byte) ([]byte, error) { return appendAck(dst, PUBACK, p.PacketID) }

// Append validates the packet and appends its wire form to dst (see Packet).
func (p *Pubrec) Append(dst []byte) ([]byte, error) { return appendAck(dst, PUBREC, p.PacketID) }

// Append validates the packet and appends its wire form to dst (see Packet).
func (p *Pubrel) Append(dst []byte) ([]byte, error) { return appendAck(dst, PUBREL, p.PacketID) }

// Append validates the packet and appends its wire form to dst (see Packet).
func (p *Pubcomp) Append(dst []byte) ([]byte, error) { return appendAck(dst, PUBCOMP, p.PacketID) }

// Append validates the packet and appends its wire form to dst (see Packet).
func (p *Unsuback) Append(dst []byte) ([]byte, error) { return appendAck(dst, UNSUBACK, p.PacketID) }

// Decode fills the packet from b, one complete PUBACK packet (see Packet).
func (p *Puback) Decode(b []byte) (err error) { p.PacketID, err = decodeAck(b, PUBACK); return }

// Decode fills the packet from b, one complete PUBREC packet (see Packet).
func (p *Pubrec) Decode(b []byte) (err error) { p.PacketID, err = decodeAck(b, PUBREC); return }

// Decode fills the packet from b, one complete PUBREL packet (see Packet).
func (p *Pubrel) Decode(b []byte) (err error) { p.PacketID, err = decodeAck(b, PUBREL); return }

// Decode fills the packet from b, one complete PUBCOMP packet (see Packet).
func (p *Pubcomp) Decode(b []byte) (err error) { p.PacketID, err = decodeAck(b, PUBCOMP); return }

// Decode fills the packet from b, one complete UNSUBACK packet (see Packet).
func (p *Unsuback) Decode(b []byte) (err error) { p.PacketID, err = decodeAck(b, UNSUBACK); return }
