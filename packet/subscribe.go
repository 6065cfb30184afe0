package packet

import "bytes"

// Subscription is one topic filter of a SUBSCRIBE and the maximum QoS asked for it.
type Subscription struct {
	Filter []byte
	QoS    byte
}

// Subscribe asks for one or more subscriptions (section 3.8).
type Subscribe struct {
	PacketID      uint16
	Subscriptions []Subscription // at least one
}

// SubackFailure is the SUBACK return code of a refused subscription.
const SubackFailure = 0x80

// Suback answers a SUBSCRIBE with one return code per filter, in order
// (section 3.9): the granted QoS 0, 1 or 2, or SubackFailure.
type Suback struct {
	PacketID    uint16
	ReturnCodes []byte
}

// Unsubscribe removes one or more subscriptions (section 3.10).
type Unsubscribe struct {
	PacketID uint16
	Filters  [][]byte // at least one
}

// Type returns SUBSCRIBE.
func (*Subscribe) Type() Type { return SUBSCRIBE }

// Type returns SUBACK.
func (*Suback) Type() Type { return SUBACK }

// Type returns UNSUBSCRIBE.
func (*Unsubscribe) Type() Type { return UNSUBSCRIBE }

func (p *Subscribe) remaining() int {
	n := 2
	for _, s := range p.Subscriptions {
		n += 3 + len(s.Filter)
	}
	return n
}

// Size returns the encoded length of the packet, fixed header included.
func (p *Subscribe) Size() int {
	n := p.remaining()
	return 1 + lengthSize(n) + n
}

func (p *Subscribe) validate() error {
	if p.PacketID == 0 {
		return malformed(SUBSCRIBE, "MQTT-2.3.1-1", "packet identifier 0")
	}
	if len(p.Subscriptions) == 0 {
		return violation(SUBSCRIBE, "MQTT-3.8.3-3", "no topic filter")
	}
	for _, s := range p.Subscriptions {
		if err := checkFilter(SUBSCRIBE, s.Filter); err != nil { // [MQTT-3.8.3-1]
			return err
		}
		if s.QoS > 2 {
			return malformed(SUBSCRIBE, "MQTT-3.8.3-4", "requested QoS over 2")
		}
	}
	return nil
}

// Append validates the packet and appends its wire form to dst (see Packet).
func (p *Subscribe) Append(dst []byte) ([]byte, error) {
	if out, ok := p.appendFast(dst); ok {
		return out, nil
	}
	return appendAgain(p, dst)
}

// appendFast is Append in one pass over the subscriptions, for a packet it
// can decide and a dst with the room; it reports false otherwise. It
// checks each filter as it copies it into dst's spare capacity from the
// fifth byte on, before it knows the remaining length: the two bytes left
// before the packet identifier take the fixed header when that is under
// 128, as it is in most SUBSCRIBEs; longHeader makes room otherwise.
func (p *Subscribe) appendFast(dst []byte) ([]byte, bool) {
	b := dst[len(dst):cap(dst)]
	if p.PacketID == 0 || len(p.Subscriptions) == 0 || len(b) < 4 {
		return nil, false
	}
	b[2], b[3] = byte(p.PacketID>>8), byte(p.PacketID)
	rest := b[4:]
	for _, s := range p.Subscriptions {
		f := s.Filter
		if len(f) > maxString || s.QoS > 2 || len(f) >= len(rest)-2 || !copyFilter(rest[2:], f) {
			return nil, false
		}
		rest[0], rest[1] = byte(len(f)>>8), byte(len(f))
		rest[2+len(f)] = s.QoS
		rest = rest[3+len(f):]
	}
	n := len(b) - len(rest) - 2
	if n < 128 {
		b[0], b[1] = byte(SUBSCRIBE)<<4|2, byte(n)
		return dst[:len(dst)+2+n], true
	}
	return longHeader(dst, b, n, byte(SUBSCRIBE)<<4|2)
}

// appendChecked is Append without the fast path.
func (p *Subscribe) appendChecked(dst []byte) ([]byte, error) {
	if err := p.validate(); err != nil {
		return dst, err
	}
	n := p.remaining()
	if err := tooLarge(SUBSCRIBE, n); err != nil {
		return dst, err
	}
	dst = appendHeader(dst, byte(SUBSCRIBE)<<4|2, n)
	dst = appendUint16(dst, p.PacketID)
	for _, s := range p.Subscriptions {
		dst = appendBytes(dst, s.Filter)
		dst = append(dst, s.QoS)
	}
	return dst, nil
}

// Decode fills p from b, reusing the capacity of p.Subscriptions.
func (p *Subscribe) Decode(b []byte) error {
	_, rest, err := body(b, SUBSCRIBE)
	if err != nil {
		return err
	}
	d := decoder{b: rest, t: SUBSCRIBE}
	p.PacketID = d.uint16("packet identifier")
	p.Subscriptions = p.Subscriptions[:0]
	for d.err == nil && len(d.b) > 0 {
		filter := d.bytes("topic filter")
		qos := d.byte("requested QoS")
		if d.err == nil && qos&^3 != 0 {
			return malformed(SUBSCRIBE, "MQTT-3.8.3-4", "reserved bits set in requested QoS")
		}
		p.Subscriptions = append(p.Subscriptions, Subscription{Filter: filter, QoS: qos})
	}
	if d.err != nil {
		return d.err
	}
	return p.validate()
}

// Clone returns a deep copy of p that shares no memory with it.
func (p *Subscribe) Clone() *Subscribe {
	n := 0
	for _, s := range p.Subscriptions {
		n += len(s.Filter)
	}
	c := &Subscribe{PacketID: p.PacketID, Subscriptions: make([]Subscription, len(p.Subscriptions))}
	buf := make([]byte, 0, n)
	for i, s := range p.Subscriptions {
		c.Subscriptions[i].QoS = s.QoS
		c.Subscriptions[i].Filter, buf = clip(buf, s.Filter)
	}
	return c
}

func (p *Suback) remaining() int { return 2 + len(p.ReturnCodes) }

// Size returns the encoded length of the packet, fixed header included.
func (p *Suback) Size() int {
	n := p.remaining()
	return 1 + lengthSize(n) + n
}

func (p *Suback) validate() error {
	if p.PacketID == 0 {
		return malformed(SUBACK, "MQTT-2.3.1-1", "packet identifier 0")
	}
	if len(p.ReturnCodes) == 0 {
		// One code per filter, and a SUBSCRIBE has at least one [MQTT-3.8.4-5].
		return violation(SUBACK, "MQTT-3.8.4-5", "no return code")
	}
	for _, c := range p.ReturnCodes {
		if c > 2 && c != SubackFailure {
			return malformed(SUBACK, "MQTT-3.9.3-2", "reserved return code")
		}
	}
	return nil
}

// Append validates the packet and appends its wire form to dst (see Packet).
func (p *Suback) Append(dst []byte) ([]byte, error) {
	if err := p.validate(); err != nil {
		return dst, err
	}
	n := p.remaining()
	if err := tooLarge(SUBACK, n); err != nil {
		return dst, err
	}
	dst = appendHeader(dst, byte(SUBACK)<<4, n)
	dst = appendUint16(dst, p.PacketID)
	return append(dst, p.ReturnCodes...), nil
}

// Decode fills the packet from b, one complete SUBACK packet (see Packet).
func (p *Suback) Decode(b []byte) error {
	_, rest, err := body(b, SUBACK)
	if err != nil {
		return err
	}
	d := decoder{b: rest, t: SUBACK}
	p.PacketID = d.uint16("packet identifier")
	if d.err != nil {
		return d.err
	}
	p.ReturnCodes = d.b[:len(d.b):len(d.b)]
	return p.validate()
}

// Clone returns a deep copy of p that shares no memory with it.
func (p *Suback) Clone() *Suback {
	return &Suback{PacketID: p.PacketID, ReturnCodes: append([]byte(nil), p.ReturnCodes...)}
}

func (p *Unsubscribe) remaining() int {
	n := 2
	for _, f := range p.Filters {
		n += 2 + len(f)
	}
	return n
}

// Size returns the encoded length of the packet, fixed header included.
func (p *Unsubscribe) Size() int {
	n := p.remaining()
	return 1 + lengthSize(n) + n
}

func (p *Unsubscribe) validate() error {
	if p.PacketID == 0 {
		return malformed(UNSUBSCRIBE, "MQTT-2.3.1-1", "packet identifier 0")
	}
	if len(p.Filters) == 0 {
		return violation(UNSUBSCRIBE, "MQTT-3.10.3-2", "no topic filter")
	}
	for _, f := range p.Filters {
		if err := checkFilter(UNSUBSCRIBE, f); err != nil { // [MQTT-3.10.3-1]
			return err
		}
	}
	return nil
}

// Append validates the packet and appends its wire form to dst (see Packet).
func (p *Unsubscribe) Append(dst []byte) ([]byte, error) {
	if out, ok := p.appendFast(dst); ok {
		return out, nil
	}
	return appendAgain(p, dst)
}

// appendFast is Subscribe's, with filters alone.
func (p *Unsubscribe) appendFast(dst []byte) ([]byte, bool) {
	b := dst[len(dst):cap(dst)]
	if p.PacketID == 0 || len(p.Filters) == 0 || len(b) < 4 {
		return nil, false
	}
	b[2], b[3] = byte(p.PacketID>>8), byte(p.PacketID)
	rest := b[4:]
	for _, f := range p.Filters {
		if len(f) > maxString || len(f) > len(rest)-2 || !copyFilter(rest[2:], f) {
			return nil, false
		}
		rest[0], rest[1] = byte(len(f)>>8), byte(len(f))
		rest = rest[2+len(f):]
	}
	n := len(b) - len(rest) - 2
	if n < 128 {
		b[0], b[1] = byte(UNSUBSCRIBE)<<4|2, byte(n)
		return dst[:len(dst)+2+n], true
	}
	return longHeader(dst, b, n, byte(UNSUBSCRIBE)<<4|2)
}

// appendChecked is Append without the fast path.
func (p *Unsubscribe) appendChecked(dst []byte) ([]byte, error) {
	if err := p.validate(); err != nil {
		return dst, err
	}
	n := p.remaining()
	if err := tooLarge(UNSUBSCRIBE, n); err != nil {
		return dst, err
	}
	dst = appendHeader(dst, byte(UNSUBSCRIBE)<<4|2, n)
	dst = appendUint16(dst, p.PacketID)
	for _, f := range p.Filters {
		dst = appendBytes(dst, f)
	}
	return dst, nil
}

// Decode fills p from b, reusing the capacity of p.Filters.
func (p *Unsubscribe) Decode(b []byte) error {
	_, rest, err := body(b, UNSUBSCRIBE)
	if err != nil {
		return err
	}
	d := decoder{b: rest, t: UNSUBSCRIBE}
	p.PacketID = d.uint16("packet identifier")
	p.Filters = p.Filters[:0]
	for d.err == nil && len(d.b) > 0 {
		f := d.bytes("topic filter")
		p.Filters = append(p.Filters, f)
	}
	if d.err != nil {
		return d.err
	}
	return p.validate()
}

// Clone returns a deep copy of p that shares no memory with it.
func (p *Unsubscribe) Clone() *Unsubscribe {
	n := 0
	for _, f := range p.Filters {
		n += len(f)
	}
	c := &Unsubscribe{PacketID: p.PacketID, Filters: make([][]byte, len(p.Filters))}
	buf := make([]byte, 0, n)
	for i, f := range p.Filters {
		c.Filters[i], buf = clip(buf, f)
	}
	return c
}

// checkFilter checks a topic filter of a SUBSCRIBE or UNSUBSCRIBE: a valid
// string of at most 65535 bytes, not empty [MQTT-4.7.3-1], with '#' only as
// the whole last level [MQTT-4.7.1-2] and '+' only as a whole level
// [MQTT-4.7.1-3]. A filter breaking these is a protocol violation, which
// closes the connection [MQTT-4.8.0-1]. Bytes of a multi-byte UTF-8
// character are never '/', '+' or '#', so one pass over the bytes does.
func checkFilter(t Type, f []byte) error {
	if len(f) <= maxString && copyFilter(nil, f) {
		return nil // plain ASCII, wildcards in place
	}
	if err := topicError(t, "topic filter", f); err != nil {
		return err
	}
	switch filterShape(f) {
	case "MQTT-4.7.3-1":
		return violation(t, "MQTT-4.7.3-1", "empty topic filter")
	case "MQTT-4.7.1-3":
		return violation(t, "MQTT-4.7.1-3", "'+' not the whole of its level")
	case "MQTT-4.7.1-2":
		return violation(t, "MQTT-4.7.1-2", "'#' not the whole of the last level")
	}
	return nil
}

// filterShape returns the rule that f's length or wildcards break, or "",
// the first in f when it breaks both. It looks only where the wildcards
// are, found by bytes.IndexByte, rather than at every byte.
func filterShape(f []byte) string {
	if len(f) == 0 {
		return "MQTT-4.7.3-1"
	}
	// '#' is the whole of the last level: the only one, last, after '/'.
	hash := bytes.IndexByte(f, '#')
	if hash == len(f)-1 && (hash == 0 || f[hash-1] == '/') {
		hash = -1 // where it belongs
	}
	// '+' is the whole of its level.
	for k := 0; hash < 0 || k < hash; k++ {
		i := bytes.IndexByte(f[k:], '+')
		if i < 0 {
			break
		}
		k += i
		if hash >= 0 && k > hash {
			break
		}
		if k > 0 && f[k-1] != '/' || k+1 < len(f) && f[k+1] != '/' {
			return "MQTT-4.7.1-3"
		}
	}
	if hash >= 0 {
		return "MQTT-4.7.1-2"
	}
	return ""
}
