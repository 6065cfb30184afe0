package session

import "github.com/ternmq/mqtt/packet"

// What the application asks the session to send: messages, subscriptions
// and unsubscriptions, and the answers to the latter two.

// request is a SUBSCRIBE or UNSUBSCRIBE awaiting its answer.
type request struct {
	h     Handle
	n     int // number of filters, for the SUBACK's return codes
	unsub bool
	sent  bool // handed out
}

// Publish takes an application message to send. The session copies the
// topic and payload; p's PacketID and Dup are ignored (the session sets
// them), and p may be reused as soon as Publish returns.
//
// A QoS 1 or 2 message gets a Handle, reported again by EventPublished once
// complete. It is sent at once if the session is connected, nothing is
// queued before it and the inflight window has room; otherwise it waits in
// the queue. If the queue is full too, Publish returns ErrFull and keeps
// nothing. With a Store, the message is stored before Publish returns.
//
// A QoS 0 message gets Handle 0 and no event. While disconnected (for a
// client, until the CONNACK) it is queued with Config.QueueQoS0, refused
// with ErrNotConnected without. Once handed out it is gone: a QoS 0
// message waiting in the outbox when the connection ends is lost, as QoS 0
// allows.
func (s *Session) Publish(p *packet.Publish) (Handle, error) {
	return s.publish(p, nil)
}

// PublishShared is Publish for a message held in one buffer, topic then
// payload, that nobody will ever modify: the session keeps buf itself, not a
// copy, so that a server sending one message to many sessions holds it once.
// p.Topic must be buf[:n] and p.Payload buf[n:]; QoS 0 messages are copied
// as by Publish.
func (s *Session) PublishShared(p *packet.Publish, buf []byte) (Handle, error) {
	return s.publish(p, buf)
}

// publish is Publish, keeping shared rather than a copy if not nil.
func (s *Session) publish(p *packet.Publish, shared []byte) (Handle, error) {
	if err := s.checkPublish(p); err != nil {
		return 0, err
	}
	sendable := s.state == online && s.queue.n == 0
	if p.QoS == 0 {
		if sendable {
			if n := s.pendQ0(); n > 0 && (n >= s.maxQueued || s.overBytes(p)) {
				return 0, ErrFull
			}
			s.pushRawPublish(p.Retain, p.Topic, p.Payload)
			return 0, nil
		}
		if s.state != online && !s.queueQoS0 {
			return 0, ErrNotConnected
		}
		if s.queue.n >= s.maxQueued || s.overBytes(p) {
			return 0, ErrFull
		}
		s.queue.pushBack(s.newMessage(0, 0, p.Retain, p.Topic, p.Payload))
		return 0, nil
	}
	h := s.lastHandle + 1
	if sendable && s.inflight.n < int(s.maxInflight) {
		if id, ok := s.allocID(); ok {
			m := s.newShared(h, p, shared)
			m.id, m.state = id, StatePublished
			if err := s.saveMessage(m); err != nil {
				s.releaseID(id)
				s.freeMessage(m)
				return 0, err
			}
			s.lastHandle = h
			s.inflight.pushBack(m)
			s.mapID(id, m)
			s.pushOut(outItem{t: packet.PUBLISH, id: id, m: m}) // [MQTT-4.3.2-1] [MQTT-4.3.3-1]
			return h, nil
		}
	}
	if s.queue.n >= s.maxQueued || s.overBytes(p) {
		return 0, ErrFull
	}
	m := s.newShared(h, p, shared)
	if err := s.saveMessage(m); err != nil {
		s.freeMessage(m)
		return 0, err
	}
	s.lastHandle = h
	s.queue.pushBack(m)
	return h, nil
}

// checkPublish validates an outgoing message now, so that encoding it later
// cannot fail.
func (s *Session) checkPublish(p *packet.Publish) error {
	if p.QoS > 2 {
		return &packet.Error{Kind: packet.ErrMalformed, Type: packet.PUBLISH, Rule: "MQTT-3.3.1-4", Reason: "QoS 3"}
	}
	if 4+len(p.Topic)+len(p.Payload) > packet.MaxRemainingLength {
		return &packet.Error{Kind: packet.ErrTooLarge, Type: packet.PUBLISH, Rule: "2.2.3", Reason: "remaining length over 268435455"}
	}
	// The codec's own checks on a topic-only packet: UTF-8, U+0000, empty,
	// wildcards, length.
	t := packet.Publish{Topic: p.Topic}
	var err error
	sp := s.spares()
	sp.check, err = t.Append(sp.check[:0])
	return err
}

func (s *Session) saveMessage(m *message) error {
	if s.store == nil {
		return nil
	}
	sp := s.spares()
	if sp.storeMsg == nil {
		sp.storeMsg = new(Message)
	}
	*sp.storeMsg = Message{Handle: m.h, PacketID: m.id, State: m.state, QoS: m.qos, Retain: m.retain, Topic: m.topic(), Payload: m.payload()}
	err := s.store.SaveMessage(sp.storeMsg)
	*sp.storeMsg = Message{}
	if err == nil {
		s.dirty = true
	}
	return err
}

// pushRawPublish encodes a QoS 0 PUBLISH into the outbox.
func (s *Session) pushRawPublish(retain bool, topic, payload []byte) {
	p := packet.Publish{Retain: retain, Topic: topic, Payload: payload}
	x := s.spares()
	off := len(x.slab)
	b, err := p.Append(x.slab)
	if err != nil {
		return // checked by checkPublish
	}
	x.slab = b
	x.pendQ0++
	x.pendQ0B += len(b) - off
	x.out = append(x.out, outItem{t: packet.PUBLISH, q0: true, off: off, end: len(b)})
}

// fill moves queued messages into the inflight window while it has room.
func (s *Session) fill() error {
	if s.state != online {
		return nil
	}
	for m := s.queue.head; m != nil; m = s.queue.head {
		if m.qos == 0 {
			s.queue.remove(m)
			s.pushRawPublish(m.retain, m.topic(), m.payload())
			s.freeMessage(m)
			continue
		}
		if s.inflight.n >= int(s.maxInflight) {
			return nil
		}
		id, ok := s.allocID()
		if !ok {
			return nil
		}
		if s.store != nil {
			if err := s.store.UpdateMessage(m.h, id, StatePublished); err != nil {
				s.releaseID(id)
				return err
			}
			s.dirty = true
		}
		s.queue.remove(m)
		m.id, m.state, m.sent = id, StatePublished, false
		s.inflight.pushBack(m)
		s.mapID(id, m)
		s.pushOut(outItem{t: packet.PUBLISH, id: id, m: m})
	}
	return nil
}

// Subscribe sends a SUBSCRIBE for p's subscriptions with a packet id of its
// own choosing [MQTT-2.3.1-2] (p.PacketID is ignored and p is not changed).
// EventSubscribed with the returned Handle reports the SUBACK. It needs a
// client connection after its CONNACK.
func (s *Session) Subscribe(p *packet.Subscribe) (Handle, error) {
	q := packet.Subscribe{Subscriptions: p.Subscriptions}
	return s.request(&q, &q.PacketID, request{n: len(p.Subscriptions)})
}

// Unsubscribe sends an UNSUBSCRIBE for p's filters with a packet id of its
// own choosing (p.PacketID is ignored and p is not changed).
// EventUnsubscribed with the returned Handle reports the UNSUBACK. It needs
// a client connection after its CONNACK.
func (s *Session) Unsubscribe(p *packet.Unsubscribe) (Handle, error) {
	q := packet.Unsubscribe{Filters: p.Filters}
	return s.request(&q, &q.PacketID, request{unsub: true})
}

// request queues q, a SUBSCRIBE or UNSUBSCRIBE, with a packet identifier
// not in use, written to *id, and records r to match its acknowledgement.
func (s *Session) request(q packet.Packet, id *uint16, r request) (Handle, error) {
	if s.role != Client {
		return 0, ErrState
	}
	if s.state != online {
		return 0, ErrNotConnected
	}
	pid, ok := s.allocID()
	if !ok {
		return 0, ErrFull
	}
	*id = pid
	x := s.spares()
	off := len(x.slab)
	b, err := q.Append(x.slab)
	if err != nil {
		s.releaseID(pid)
		return 0, err
	}
	x.slab = b
	s.lastHandle++
	r.h = s.lastHandle
	if s.subs == nil {
		s.subs = make(map[uint16]request)
	}
	s.subs[pid] = r
	s.pushOut(outItem{t: q.Type(), id: pid, off: off, end: len(b)})
	return s.lastHandle, nil
}

// Suback queues the server's SUBACK for the SUBSCRIBE with packetID, with
// one return code per filter in the SUBSCRIBE's order [MQTT-3.8.4-2]
// [MQTT-3.8.4-5] [MQTT-3.9.3-1]. The codes are copied.
func (s *Session) Suback(packetID uint16, returnCodes []byte) error {
	if s.role != Server {
		return ErrState
	}
	if s.state != online {
		return ErrNotConnected
	}
	q := packet.Suback{PacketID: packetID, ReturnCodes: returnCodes}
	x := s.spares()
	off := len(x.slab)
	b, err := q.Append(x.slab)
	if err != nil {
		return err
	}
	x.slab = b
	s.pushOut(outItem{t: packet.SUBACK, id: packetID, off: off, end: len(b)})
	return nil
}

// Unsuback queues the server's UNSUBACK for the UNSUBSCRIBE with packetID
// [MQTT-3.10.4-4], sent even if nothing was unsubscribed [MQTT-3.10.4-5].
func (s *Session) Unsuback(packetID uint16) error {
	if s.role != Server {
		return ErrState
	}
	if s.state != online {
		return ErrNotConnected
	}
	if packetID == 0 {
		return &packet.Error{Kind: packet.ErrMalformed, Type: packet.UNSUBACK, Rule: "MQTT-2.3.1-1", Reason: "packet identifier 0"}
	}
	s.pushOut(outItem{t: packet.UNSUBACK, id: packetID})
	return nil
}
