package packet

// Pingreq is a client's keepalive probe (section 3.12).
type Pingreq struct{}

// Pingresp is the server's answer to PINGREQ (section 3.13).
type Pingresp struct{}

// Disconnect is the last packet a client sends on a connection (section 3.14).
type Disconnect struct{}

// The three empty packets are a fixed header with remaining length 0.

func decodeEmpty(b []byte, t Type) error {
	_, rest, err := body(b, t)
	if err == nil && len(rest) != 0 {
		err = malformed(t, "2.2.3", "remaining length not 0")
	}
	return err
}

// Type returns PINGREQ.
func (*Pingreq) Type() Type { return PINGREQ }

// Type returns PINGRESP.
func (*Pingresp) Type() Type { return PINGRESP }

// Type returns DISCONNECT.
func (*Disconnect) Type() Type { return DISCONNECT }

// Size returns the encoded length of the packet, fixed header included.
func (*Pingreq) Size() int { return 2 }

// Size returns the encoded length of the packet, fixed header included.
func (*Pingresp) Size() int { return 2 }

// Size returns the encoded length of the packet, fixed header included.
func (*Disconnect) Size() int { return 2 }

// Append validates the packet and appends its wire form to dst (see Packet).
func (*Pingreq) Append(dst []byte) ([]byte, error) { return append(dst, byte(PINGREQ)<<4, 0), nil }

// Append validates the packet and appends its wire form to dst (see Packet).
func (*Pingresp) Append(dst []byte) ([]byte, error) { return append(dst, byte(PINGRESP)<<4, 0), nil }

// Append validates the packet and appends its wire form to dst (see Packet).
func (*Disconnect) Append(dst []byte) ([]byte, error) {
	return append(dst, byte(DISCONNECT)<<4, 0), nil
}

// Decode fills the packet from b, one complete PINGREQ packet (see Packet).
func (*Pingreq) Decode(b []byte) error { return decodeEmpty(b, PINGREQ) }

// Decode fills the packet from b, one complete PINGRESP packet (see Packet).
func (*Pingresp) Decode(b []byte) error { return decodeEmpty(b, PINGRESP) }

// Decode fills the packet from b, one complete DISCONNECT packet (see Packet).
func (*Disconnect) Decode(b []byte) error { return decodeEmpty(b, DISCONNECT) }
