package session

import (
	"math/bits"
	"time"

	"github.com/ternmq/mqtt/packet"
)

// HasOutgoing reports whether packets are waiting to be handed out by
// AppendOutgoing or Next.
func (s *Session) HasOutgoing() bool {
	x := s.spare
	return x != nil && x.outHead < len(x.out)
}

// Outgoing returns the number of packets waiting to be handed out by
// AppendOutgoing or Next. A server reading from a peer that does not read
// what it is sent can bound it by pausing its reads: every PINGREQ, QoS 1
// or 2 PUBLISH, PUBREL and SUBSCRIBE queues an answer.
func (s *Session) Outgoing() int {
	x := s.spare
	if x == nil {
		return 0
	}
	return len(x.out) - x.outHead
}

// syncStore makes the store's writes durable before packets that depend on
// them leave.
func (s *Session) syncStore() error {
	if s.storeErr != nil {
		return s.storeErr
	}
	if s.dirty && s.store != nil {
		if err := s.store.Sync(); err != nil {
			return err
		}
	}
	s.dirty = false
	return nil
}

// AppendOutgoing appends the wire form of every waiting packet to dst, in
// order, and returns the extended slice; the caller writes it to the
// connection. It allocates only when dst lacks room. now is taken as the
// time the packets are sent, for the keepalive.
//
// It first calls the Store's Sync if anything was stored since the last
// Sync; if that fails, nothing is handed out and the error is returned.
func (s *Session) AppendOutgoing(dst []byte, now time.Time) ([]byte, error) {
	return s.AppendOutgoingMax(dst, 0, now)
}

// AppendOutgoingMax is AppendOutgoing that stops once it has appended max
// bytes or more (one packet at least), the rest waiting for the next call;
// max 0 means no bound. A server that writes its messages to a slow reader
// then holds one bounded batch of them in its write buffer at a time, not
// another copy of all those in flight.
func (s *Session) AppendOutgoingMax(dst []byte, max int, now time.Time) ([]byte, error) {
	if !s.HasOutgoing() {
		return dst, nil
	}
	if err := s.syncStore(); err != nil {
		return dst, err
	}
	x := s.spare
	start := len(dst)
	for x.outHead < len(x.out) && (max <= 0 || len(dst)-start < max) {
		it := &x.out[x.outHead]
		x.outHead++
		var err error
		if dst, err = s.appendItem(dst, it); err != nil {
			s.sent(now)
			return dst, err
		}
	}
	s.sent(now)
	return dst, nil
}

// sent records that packets were handed out at now.
func (s *Session) sent(now time.Time) {
	s.lastSent = stamp(now)
	x := s.spare
	all := x == nil || x.outHead >= len(x.out)
	if s.pingQd && all { // the PINGREQ too, wherever it was
		s.pingQd = false
		s.pingOut = true
	}
	if x != nil && all {
		clear(x.out)
		x.out = x.out[:0]
		x.outHead = 0
		x.slab = x.slab[:0]
		x.pendQ0, x.pendQ0B = 0, 0
	}
}

func ack(dst []byte, t packet.Type, id uint16) []byte {
	first := byte(t) << 4
	if t == packet.PUBREL {
		first |= 2 // [MQTT-3.6.1-1]
	}
	return append(dst, first, 2, byte(id>>8), byte(id))
}

func (s *Session) appendItem(dst []byte, it *outItem) ([]byte, error) {
	switch it.t {
	case packet.PUBLISH:
		if m := it.m; m != nil {
			m.sent, m.everSent = true, true
			p := packet.Publish{Dup: it.flag, QoS: m.qos, Retain: m.retain, Topic: m.topic(), PacketID: m.id, Payload: m.payload()}
			return p.Append(dst)
		}
		if it.q0 {
			s.spare.pendQ0--
			s.spare.pendQ0B -= it.end - it.off
		}
	case packet.PUBREL:
		if it.m != nil {
			it.m.sent, it.m.everSent = true, true
		}
		return ack(dst, packet.PUBREL, it.id), nil
	case 0:
		return dst, nil // dropped by an acknowledgement
	case packet.PUBCOMP:
		s.completed(it.id)
		return ack(dst, it.t, it.id), nil
	case packet.PUBACK, packet.PUBREC, packet.UNSUBACK:
		return ack(dst, it.t, it.id), nil
	case packet.PINGREQ, packet.PINGRESP, packet.DISCONNECT:
		return append(dst, byte(it.t)<<4, 0), nil
	case packet.SUBSCRIBE, packet.UNSUBSCRIBE:
		s.requestSent(it.id)
	case packet.CONNACK:
		var flags byte
		if it.flag {
			flags = 1
		}
		return append(dst, byte(packet.CONNACK)<<4, 2, flags, byte(packet.Accepted)), nil
	}
	return append(dst, s.spare.slab[it.off:it.end]...), nil
}

// Next hands out the next waiting packet, or nil when there is none. The
// packet is owned by the session and valid until the next call on it:
// encode it (packet.Writer.WritePacket) before anything else. now is taken
// as the time it is sent, for the keepalive. Like AppendOutgoing, it first
// calls the Store's Sync if needed.
func (s *Session) Next(now time.Time) (packet.Packet, error) {
	if !s.HasOutgoing() {
		return nil, nil
	}
	if err := s.syncStore(); err != nil {
		return nil, err
	}
	x := s.spare
	for x.outHead < len(x.out) && x.out[x.outHead].t == 0 {
		x.outHead++ // dropped by an acknowledgement
	}
	if x.outHead >= len(x.out) {
		s.sent(now)
		return nil, nil
	}
	it := x.out[x.outHead]
	x.outHead++
	p := s.itemPacket(&it)
	s.sent(now)
	return p, nil
}

func (s *Session) itemPacket(it *outItem) packet.Packet {
	x := s.spares()
	if x.sp == nil {
		x.sp = new(scratchPackets) // only for callers of Next
	}
	sp := x.sp
	switch it.t {
	case packet.PUBLISH:
		if m := it.m; m != nil {
			m.sent, m.everSent = true, true
			sp.publish = packet.Publish{Dup: it.flag, QoS: m.qos, Retain: m.retain, Topic: m.topic(), PacketID: m.id, Payload: m.payload()}
			return &sp.publish
		}
		if it.q0 {
			x.pendQ0--
			x.pendQ0B -= it.end - it.off
		}
		sp.publish.Decode(x.slab[it.off:it.end])
		return &sp.publish
	case packet.PUBREL:
		if it.m != nil {
			it.m.sent, it.m.everSent = true, true
		}
		sp.pubrel.PacketID = it.id
		return &sp.pubrel
	case packet.PUBACK:
		sp.puback.PacketID = it.id
		return &sp.puback
	case packet.PUBREC:
		sp.pubrec.PacketID = it.id
		return &sp.pubrec
	case packet.PUBCOMP:
		s.completed(it.id)
		sp.pubcomp.PacketID = it.id
		return &sp.pubcomp
	case packet.UNSUBACK:
		sp.unsuback.PacketID = it.id
		return &sp.unsuback
	case packet.PINGREQ:
		return &sp.pingreq
	case packet.PINGRESP:
		return &sp.pingresp
	case packet.DISCONNECT:
		return &sp.disconnect
	case packet.CONNACK:
		sp.connack = packet.Connack{SessionPresent: it.flag, ReturnCode: packet.Accepted}
		return &sp.connack
	case packet.CONNECT:
		sp.connect.Decode(x.slab[it.off:it.end])
		return &sp.connect
	case packet.SUBSCRIBE:
		s.requestSent(it.id)
		sp.subscribe.Decode(x.slab[it.off:it.end])
		return &sp.subscribe
	case packet.UNSUBSCRIBE:
		s.requestSent(it.id)
		sp.unsubscribe.Decode(x.slab[it.off:it.end])
		return &sp.unsubscribe
	case packet.SUBACK:
		sp.suback.Decode(x.slab[it.off:it.end])
		return &sp.suback
	}
	return nil
}

// Deadline returns when Tick must be called next, or the zero time if no
// keepalive runs (no connection, or keepalive 0).
func (s *Session) Deadline() time.Time {
	if s.keepAlive == 0 || s.state == offline {
		return time.Time{}
	}
	ka := int64(s.keepAlive) * int64(time.Second)
	d := s.lastRecv + ka*3/2
	if s.role == Client && s.state == online && !s.pingQd {
		d = min(d, s.lastSent+ka)
		if !s.pingOut {
			d = min(d, s.lastRecv+ka)
		}
	}
	return unstamp(d)
}

// Tick runs the keepalive at now. A client queues a PINGREQ when it has
// sent nothing for the keepalive period [MQTT-3.1.2-23], and also when it
// has received nothing for that long, so that a client that only publishes
// QoS 0 still learns that the server is alive. Either side returns an
// *Error of kind ErrTimeout when the peer has sent nothing for one and a
// half times the period (the server's rule [MQTT-3.1.2-24], which a client
// applies to the server too); the caller then closes the connection.
func (s *Session) Tick(now time.Time) error {
	if s.keepAlive == 0 || s.state == offline {
		return nil
	}
	ka, t := int64(s.keepAlive)*int64(time.Second), stamp(now)
	if t-s.lastRecv >= ka*3/2 {
		return &Error{Kind: ErrTimeout, Rule: "MQTT-3.1.2-24", Reason: "nothing received for 1.5 times the keepalive period"}
	}
	if s.role == Client && s.state == online && !s.pingQd {
		if t-s.lastSent >= ka || (!s.pingOut && t-s.lastRecv >= ka) {
			s.pushOut(outItem{t: packet.PINGREQ})
			s.pingQd = true
		}
	}
	return nil
}

// allocID returns a free packet id, marked in use in the bitmap if there is
// one; the caller enters it in byID or subs, or calls releaseID.
// [MQTT-2.3.1-2] [MQTT-2.3.1-4]
func (s *Session) allocID() (uint16, bool) {
	used := len(s.byID) + len(s.subs)
	if used >= 65535 {
		return 0, false
	}
	var b *[1024]uint64
	if s.spare != nil {
		b = s.spare.bits
	}
	if b == nil && used >= bitsThreshold {
		b = s.makeBits()
	}
	if b == nil {
		for {
			s.nextID++
			if s.nextID == 0 {
				s.nextID = 1
			}
			if s.byID[s.nextID] == nil {
				if _, ok := s.subs[s.nextID]; !ok {
					return s.nextID, true
				}
			}
		}
	}
	start := uint32(s.nextID) + 1
	w := start >> 6 & 1023
	free := ^b[w] &^ (1<<(start&63) - 1)
	for i := 0; i <= 1024; i++ {
		if free != 0 {
			id := uint16(w<<6 | uint32(bits.TrailingZeros64(free)))
			b[id>>6] |= 1 << (id & 63)
			s.nextID = id
			return id, true
		}
		w = (w + 1) & 1023
		free = ^b[w]
	}
	return 0, false
}

// makeBits builds the bitmap of ids in use, from byID and subs.
func (s *Session) makeBits() *[1024]uint64 {
	b := new([1024]uint64)
	b[0] = 1 // id 0 is never used
	for id := range s.byID {
		b[id>>6] |= 1 << (id & 63)
	}
	for id := range s.subs {
		b[id>>6] |= 1 << (id & 63)
	}
	s.spares().bits = b
	return b
}

func (s *Session) releaseID(id uint16) {
	if s.spare != nil && s.spare.bits != nil {
		s.spare.bits[id>>6] &^= 1 << (id & 63)
	}
}

// requestSent marks a SUBSCRIBE or UNSUBSCRIBE as handed out: only then may
// its answer come.
func (s *Session) requestSent(id uint16) {
	if r, ok := s.subs[id]; ok {
		r.sent = true
		s.subs[id] = r
	}
}
