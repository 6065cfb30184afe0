package packet

import (
	"bytes"
	"unicode/utf8"
)

// Type is the type of a control packet, the high four bits of its first byte.
type Type byte

// The control packet types of MQTT 3.1.1. The values 0 and 15 are reserved.
const (
	CONNECT     Type = 1
	CONNACK     Type = 2
	PUBLISH     Type = 3
	PUBACK      Type = 4
	PUBREC      Type = 5
	PUBREL      Type = 6
	PUBCOMP     Type = 7
	SUBSCRIBE   Type = 8
	SUBACK      Type = 9
	UNSUBSCRIBE Type = 10
	UNSUBACK    Type = 11
	PINGREQ     Type = 12
	PINGRESP    Type = 13
	DISCONNECT  Type = 14
)

var typeNames = [16]string{"RESERVED(0)", "CONNECT", "CONNACK", "PUBLISH", "PUBACK", "PUBREC", "PUBREL", "PUBCOMP",
	"SUBSCRIBE", "SUBACK", "UNSUBSCRIBE", "UNSUBACK", "PINGREQ", "PINGRESP", "DISCONNECT", "RESERVED(15)"}

// String returns the name of the type, such as "PUBLISH".
func (t Type) String() string {
	if t > 15 {
		return "INVALID"
	}
	return typeNames[t]
}

// Packet is implemented by a pointer to each of the fourteen packet structs.
type Packet interface {
	// Type returns the control packet type.
	Type() Type
	// Size returns the length of the encoded packet, fixed header included.
	// It is exact when the packet is valid.
	Size() int
	// Append validates the packet and appends its wire form to dst. It
	// allocates only when dst lacks room. On error dst is returned as it
	// was. It may write into dst's spare capacity (past len(dst)) even
	// when it then allocates or fails, as SUBSCRIBE and UNSUBSCRIBE, which
	// encode in one pass, do when they run out of room.
	Append(dst []byte) ([]byte, error)
	// Decode fills the packet from b, which must hold exactly one complete
	// packet of this type, fixed header included. Byte-slice fields alias b.
	Decode(b []byte) error
	// String describes the packet for logs, with payloads shortened.
	String() string
}

const (
	// MaxRemainingLength is the largest remaining length the four-byte
	// length field can express (section 2.2.3).
	MaxRemainingLength = 268435455

	// MaxSize is the largest possible packet: a maximal remaining length
	// plus the type byte and four length bytes.
	MaxSize = MaxRemainingLength + 5

	maxString = 65535
)

// lengthSize is the number of bytes the remaining length n takes on the wire.
func lengthSize(n int) int {
	switch {
	case n < 128:
		return 1
	case n < 16384:
		return 2
	case n < 2097152:
		return 3
	}
	return 4
}

// appendHeader appends the fixed header: the type and flags byte, then the
// remaining length in base-128, least significant group first.
func appendHeader(dst []byte, first byte, n int) []byte {
	dst = append(dst, first)
	for n >= 128 {
		dst = append(dst, byte(n)|0x80)
		n >>= 7
	}
	return append(dst, byte(n))
}

// parseLength decodes a remaining length at the start of b. It returns the
// value and the number of bytes used; n == 0 with a nil error means b ends
// before the length does.
func parseLength(b []byte) (v, n int, err error) {
	for i := 0; i < 4; i++ {
		if i == len(b) {
			return 0, 0, nil
		}
		c := b[i]
		v |= int(c&0x7f) << (7 * i)
		if c&0x80 == 0 {
			if c == 0 && i > 0 {
				// A final zero group adds nothing: the same value fits in fewer bytes.
				return 0, 0, malformed(0, "2.2.3", "remaining length not in its shortest form")
			}
			return v, i + 1, nil
		}
	}
	return 0, 0, malformed(0, "2.2.3", "remaining length longer than four bytes")
}

// checkFlags checks the low four bits of the first byte, which are reserved
// with a fixed value for every type but PUBLISH [MQTT-2.2.2-1].
func checkFlags(t Type, flags byte) error {
	switch t {
	case PUBLISH:
		qos := flags >> 1 & 3
		if qos == 3 {
			return malformed(t, "MQTT-3.3.1-4", "QoS 3")
		}
		if qos == 0 && flags&8 != 0 {
			return malformed(t, "MQTT-3.3.1-2", "DUP set on a QoS 0 message")
		}
		return nil
	case PUBREL:
		if flags != 2 {
			return malformed(t, "MQTT-3.6.1-1", "reserved flags not 0010")
		}
	case SUBSCRIBE:
		if flags != 2 {
			return malformed(t, "MQTT-3.8.1-1", "reserved flags not 0010")
		}
	case UNSUBSCRIBE:
		if flags != 2 {
			return malformed(t, "MQTT-3.10.1-1", "reserved flags not 0010")
		}
	case DISCONNECT:
		if flags != 0 {
			return malformed(t, "MQTT-3.14.1-1", "reserved flags not 0000")
		}
	case 0, 15:
		return malformed(0, "2.2.1", "reserved packet type "+t.String())
	default:
		if flags != 0 {
			return malformed(t, "MQTT-2.2.2-1", "reserved flags not 0000")
		}
	}
	return nil
}

// body checks that b holds exactly one packet of type t with valid fixed
// header flags, and returns the flags and the bytes after the fixed header.
func body(b []byte, t Type) (flags byte, rest []byte, err error) {
	if len(b) < 2 {
		return 0, nil, malformed(t, "2.2", "packet shorter than a fixed header")
	}
	flags = b[0] & 0x0f
	if b[0]>>4 != byte(t) || flags != fixedFlags[t] && t != PUBLISH {
		return 0, nil, headerError(b[0], t)
	}
	if t == PUBLISH {
		if err := checkFlags(t, flags); err != nil {
			return 0, nil, err
		}
	}
	var n int
	if c := b[1]; c < 0x80 {
		// Most packets are under 128 bytes: a one-byte length.
		n, rest = int(c), b[2:]
	} else {
		var used int
		n, used, err = parseLength(b[1:])
		if err != nil {
			err.(*Error).Type = t
			return 0, nil, err
		}
		if used == 0 {
			return 0, nil, malformed(t, "2.2.3", "truncated remaining length")
		}
		rest = b[1+used:]
	}
	if len(rest) != n {
		if len(rest) < n {
			return 0, nil, malformed(t, "2.2.3", "packet shorter than its remaining length")
		}
		return 0, nil, malformed(t, "2.2.3", "bytes after the end of the packet")
	}
	return flags, rest, nil
}

// fixedFlags holds the only valid flags of each type but PUBLISH (Table 2.2).
var fixedFlags = [16]byte{PUBREL: 2, SUBSCRIBE: 2, UNSUBSCRIBE: 2}

// headerError explains why first is not a valid first byte for type t.
func headerError(first byte, t Type) error {
	if got := Type(first >> 4); got != t {
		return malformed(t, "2.2.1", "bytes hold a "+got.String()+" packet")
	}
	return checkFlags(t, first&0x0f)
}

// decoder reads the fields of a packet's variable header and payload.
// The first failure sticks; later reads return zero values.
type decoder struct {
	b    []byte
	t    Type
	rule string // the rule a missing field breaks; "" means 2.2.3
	err  error
}

func (d *decoder) fail(reason string) {
	if d.err == nil {
		rule := d.rule
		if rule == "" {
			rule = "2.2.3"
		}
		d.err = malformed(d.t, rule, reason)
	}
	d.b = nil
}

func (d *decoder) byte(what string) byte {
	if len(d.b) < 1 {
		d.fail("truncated " + what)
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) uint16(what string) uint16 {
	if len(d.b) < 2 {
		d.fail("truncated " + what)
		return 0
	}
	v := uint16(d.b[0])<<8 | uint16(d.b[1])
	d.b = d.b[2:]
	return v
}

// bytes reads a field with a two-byte length prefix: a string or binary data.
// It is small enough to inline; the failures are in truncated.
func (d *decoder) bytes(what string) []byte {
	if b := d.b; len(b) >= 2 {
		if n, rest := int(b[0])<<8|int(b[1]), b[2:]; len(rest) >= n {
			d.b = rest[n:]
			return rest[:n:n]
		}
	}
	d.truncated(what)
	return nil
}

// truncated records why bytes failed.
func (d *decoder) truncated(what string) {
	if len(d.b) < 2 {
		d.fail("truncated " + what + " length")
	} else {
		d.fail("truncated " + what)
	}
}

// string reads a UTF-8 encoded string and checks it [MQTT-1.5.3-1] [MQTT-1.5.3-2].
func (d *decoder) string(what string) []byte {
	s := d.bytes(what)
	if d.err == nil {
		if rule := checkString(s); rule != "" {
			d.err = malformed(d.t, rule, what+": "+stringProblem(rule))
		}
	}
	return s
}

// end reports trailing bytes after the last field, as a breach of rule.
func (d *decoder) end(rule string) error {
	if d.err == nil && len(d.b) != 0 {
		d.err = malformed(d.t, rule, "bytes after the last field")
	}
	return d.err
}

const (
	lsb = 0x0101010101010101 // the low bit of each byte of a word
	msb = 0x8080808080808080 // the high bit of each byte of a word

	ruleUTF8     = "MQTT-1.5.3-1"
	ruleNUL      = "MQTT-1.5.3-2"
	ruleWildcard = "MQTT-3.3.2-2"
)

// checkString returns the rule s breaks as an MQTT UTF-8 encoded string,
// or "" if it is valid: well-formed UTF-8 with no surrogates
// [MQTT-1.5.3-1] and no U+0000 [MQTT-1.5.3-2]. U+FEFF is kept as it is
// [MQTT-1.5.3-3]. Go's decoder rejects encoded surrogates and overlong
// forms, so utf8.Valid covers the first rule.
//
// Most strings are ASCII, which asciiOK checks eight bytes at a time; a
// string it cannot decide goes byte by byte.
func checkString(s []byte) string {
	if asciiOK(s, false) {
		return ""
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == 0 {
			return ruleNUL
		}
		if c >= utf8.RuneSelf {
			return checkUTF8(s[i:])
		}
	}
	return ""
}

// checkUTF8 is checkString for the part of a string from its first byte
// over 0x7f.
func checkUTF8(s []byte) string {
	if !utf8.Valid(s) {
		return ruleUTF8
	}
	if bytes.IndexByte(s, 0) >= 0 {
		return ruleNUL
	}
	return ""
}

// checkName is checkString for a topic name, which must also be free of
// the wildcards '+' and '#' [MQTT-3.3.2-2]: one pass finds all three
// problems. A string problem wins over a wildcard.
func checkName(s []byte) string {
	if asciiOK(s, true) {
		return ""
	}
	wild := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == 0:
			return ruleNUL
		case c >= utf8.RuneSelf:
			if rule := checkUTF8(s[i:]); rule != "" {
				return rule
			}
			if wild || bytes.IndexByte(s[i:], '+') >= 0 || bytes.IndexByte(s[i:], '#') >= 0 {
				return ruleWildcard
			}
			return ""
		case c == '+' || c == '#':
			wild = true
		}
	}
	if wild {
		return ruleWildcard
	}
	return ""
}

func stringProblem(rule string) string {
	if rule == "MQTT-1.5.3-2" {
		return "contains U+0000"
	}
	return "not well-formed UTF-8"
}

// stringError checks a string field before encoding.
func stringError(t Type, what string, s []byte) error {
	if len(s) > maxString {
		return malformed(t, "1.5.3", what+" longer than 65535 bytes")
	}
	if rule := checkString(s); rule != "" {
		return malformed(t, rule, what+": "+stringProblem(rule))
	}
	return nil
}

// topicError checks a topic name or filter before encoding: at most 65535
// bytes [MQTT-4.7.3-3], then a valid string.
func topicError(t Type, what string, s []byte) error {
	if len(s) > maxString {
		return malformed(t, "MQTT-4.7.3-3", what+" longer than 65535 bytes")
	}
	if rule := checkString(s); rule != "" {
		return malformed(t, rule, what+": "+stringProblem(rule))
	}
	return nil
}

// checkTopicName checks a topic name as used in PUBLISH and in a will: a
// valid string [MQTT-1.5.3-1] [MQTT-1.5.3-2] of at most 65535 bytes
// [MQTT-4.7.3-3], non-empty [MQTT-4.7.3-1] and free of wildcards
// [MQTT-3.3.2-2].
func checkTopicName(t Type, what string, s []byte) error {
	if len(s) > maxString {
		return malformed(t, "MQTT-4.7.3-3", what+" longer than 65535 bytes")
	}
	if len(s) == 0 {
		return violation(t, "MQTT-4.7.3-1", what+" is empty")
	}
	switch rule := checkName(s); rule {
	case "":
		return nil
	case ruleWildcard:
		return violation(t, rule, what+" contains a wildcard")
	default:
		return malformed(t, rule, what+": "+stringProblem(rule))
	}
}

func appendUint16(dst []byte, v uint16) []byte {
	return append(dst, byte(v>>8), byte(v))
}

func appendBytes(dst, s []byte) []byte {
	dst = appendUint16(dst, uint16(len(s)))
	return append(dst, s...)
}

// tooLarge reports a remaining length the protocol cannot express.
func tooLarge(t Type, n int) error {
	if n > MaxRemainingLength {
		return &Error{Kind: ErrTooLarge, Type: t, Rule: "2.2.3", Reason: "remaining length over 268435455"}
	}
	return nil
}

// New returns a new zero packet of type t, or nil if t is reserved.
func New(t Type) Packet {
	switch t {
	case CONNECT:
		return new(Connect)
	case CONNACK:
		return new(Connack)
	case PUBLISH:
		return new(Publish)
	case PUBACK:
		return new(Puback)
	case PUBREC:
		return new(Pubrec)
	case PUBREL:
		return new(Pubrel)
	case PUBCOMP:
		return new(Pubcomp)
	case SUBSCRIBE:
		return new(Subscribe)
	case SUBACK:
		return new(Suback)
	case UNSUBSCRIBE:
		return new(Unsubscribe)
	case UNSUBACK:
		return new(Unsuback)
	case PINGREQ:
		return new(Pingreq)
	case PINGRESP:
		return new(Pingresp)
	case DISCONNECT:
		return new(Disconnect)
	}
	return nil
}

// Decode decodes the one complete packet in b into a new value of its type.
// Byte-slice fields alias b. It allocates; a Reader or a Decode method on a
// reused value does not.
func Decode(b []byte) (Packet, error) {
	if len(b) == 0 {
		return nil, malformed(0, "2.2", "no bytes")
	}
	p := New(Type(b[0] >> 4))
	if p == nil {
		return nil, malformed(0, "2.2.1", "reserved packet type "+Type(b[0]>>4).String())
	}
	if err := p.Decode(b); err != nil {
		return nil, err
	}
	return p, nil
}
