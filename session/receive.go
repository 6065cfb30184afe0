package session

import (
	"time"

	"github.com/ternmq/mqtt/packet"
)

// Receive processes a packet from the peer, read at now. What it implies is
// queued for sending (acknowledgements, PUBREL, PINGRESP, resends, queued
// messages the freed window now admits) and reported as events (NextEvent).
//
// A protocol violation by the peer is returned as an *Error citing the rule;
// the caller closes the connection [MQTT-4.8.0-1]. Receive also returns
// ErrNotConnected when no connection is started (before Connect or Accept),
// and the Store's errors.
//
// Some acknowledgements for packet ids not in use are not violations: a
// PUBACK or PUBCOMP is ignored (it acknowledges nothing; it can follow a
// message the session has discarded, and closing the connection over a
// harmless duplicate would only cause an outage), and a PUBREC is answered
// with PUBREL, so that the peer releases the id rather than take our next
// message with that id for a duplicate. A PUBREL for an unknown id is
// answered with PUBCOMP [MQTT-4.3.3-2]. An acknowledgement of the wrong kind
// for an id in use, or for a packet not yet handed out, is a violation.
func (s *Session) Receive(p packet.Packet, now time.Time) error {
	switch s.state {
	case offline:
		return ErrNotConnected
	case connecting:
		if _, ok := p.(*packet.Connack); !ok {
			return violation(typeOf(p), "MQTT-3.2.0-1", "first packet from the server is not CONNACK")
		}
	case closing:
		if s.role == Server {
			return violation(typeOf(p), "MQTT-3.14.4-2", "packet after DISCONNECT")
		}
	}
	s.lastRecv = stamp(now)
	switch p := p.(type) {
	case *packet.Publish:
		return s.recvPublish(p)
	case *packet.Puback:
		return s.recvPuback(p.PacketID)
	case *packet.Pubrec:
		return s.recvPubrec(p.PacketID)
	case *packet.Pubrel:
		return s.recvPubrel(p.PacketID)
	case *packet.Pubcomp:
		return s.recvPubcomp(p.PacketID)
	case *packet.Subscribe:
		if s.role != Server {
			return violation(packet.SUBSCRIBE, "3.8", "SUBSCRIBE sent to a client")
		}
		s.emit(Event{Kind: EventSubscribe, PacketID: p.PacketID, Subscribe: p})
	case *packet.Unsubscribe:
		if s.role != Server {
			return violation(packet.UNSUBSCRIBE, "3.10", "UNSUBSCRIBE sent to a client")
		}
		s.emit(Event{Kind: EventUnsubscribe, PacketID: p.PacketID, Unsubscribe: p})
	case *packet.Suback:
		return s.recvSuback(p)
	case *packet.Unsuback:
		return s.recvUnsuback(p.PacketID)
	case *packet.Pingreq:
		if s.role != Server {
			return violation(packet.PINGREQ, "3.12", "PINGREQ sent to a client")
		}
		s.push(outItem{t: packet.PINGRESP}) // [MQTT-3.12.4-1]
	case *packet.Pingresp:
		if s.role != Client {
			return violation(packet.PINGRESP, "3.13", "PINGRESP sent to a server")
		}
		s.pingOut = false
	case *packet.Connect:
		if s.role == Server {
			return violation(packet.CONNECT, "MQTT-3.1.0-2", "second CONNECT on a connection")
		}
		return violation(packet.CONNECT, "3.1", "CONNECT sent to a client")
	case *packet.Connack:
		return s.recvConnack(p)
	case *packet.Disconnect:
		if s.role != Server {
			return violation(packet.DISCONNECT, "3.14", "DISCONNECT sent to a client")
		}
		s.state = closing
		s.emit(Event{Kind: EventDisconnect})
	default:
		return violation(0, "2.2.1", "not an MQTT 3.1.1 packet")
	}
	return nil
}

func typeOf(p packet.Packet) packet.Type {
	if p == nil {
		return 0
	}
	return p.Type()
}

func (s *Session) recvConnack(p *packet.Connack) error {
	if s.role != Client {
		return violation(packet.CONNACK, "3.2", "CONNACK sent to a server")
	}
	if s.state != connecting {
		return violation(packet.CONNACK, "3.2", "second CONNACK on a connection")
	}
	if p.ReturnCode != packet.Accepted {
		// The connection is refused; the caller closes it.
		s.state = closing
		s.clearOutbox()
		s.emit(Event{Kind: EventConnack, ReturnCode: p.ReturnCode})
		return nil
	}
	if p.SessionPresent && s.clean {
		return violation(packet.CONNACK, "MQTT-3.2.2-1", "session present on a clean session")
	}
	if !p.SessionPresent && !s.clean {
		// The server has no state for us: it has forgotten the QoS 2
		// exchanges it was sending and will reuse their ids, which must not
		// be taken for duplicates. Our own unfinished messages are sent
		// again all the same: a PUBLISH the server forgot is a new message
		// to it, and a PUBREL it forgot is answered with PUBCOMP.
		if err := s.dropAllIncoming(); err != nil {
			return err
		}
	}
	s.state = online
	s.emit(Event{Kind: EventConnack, SessionPresent: p.SessionPresent, ReturnCode: packet.Accepted})
	return s.resume()
}

func (s *Session) recvPublish(p *packet.Publish) error {
	if p.QoS > 2 {
		return violation(packet.PUBLISH, "MQTT-3.3.1-4", "QoS 3")
	}
	if p.QoS > 0 && p.PacketID == 0 {
		return violation(packet.PUBLISH, "MQTT-2.3.1-1", "packet identifier 0")
	}
	id := p.PacketID
	switch p.QoS {
	case 0:
		s.emit(Event{Kind: EventMessage, Publish: p})
		return nil
	case 1:
		if st, ok := s.in[id]; ok {
			// The peer reuses the id of a QoS 2 exchange it has not
			// released [MQTT-2.3.1-2]: it has forgotten it (a restarted
			// client resuming with fresh ids does this). Closing would not
			// help, since the peer would do the same on the next
			// connection: forget the exchange too.
			if err := s.dropIncoming(id, st); err != nil {
				return err
			}
		}
		if s.manualAck {
			if t, ok := s.inQ1[id]; ok {
				if t != 0 {
					// Sent again before our PUBACK: the application has
					// it, and its Ack answers the resend.
					s.resent(t)
					return nil
				}
				// Acknowledged while the resend was awaited (releaseAcks).
				delete(s.inQ1, id)
				if p.Dup {
					s.answer(1, id)
					return nil
				}
				// Not a resend [MQTT-3.3.1-1]: the peer forgot the message,
				// and this is a new one.
			}
			t, err := s.newTag()
			if err != nil {
				return err
			}
			if s.inQ1 == nil {
				s.inQ1 = make(map[uint16]Tag)
			}
			s.inQ1[id] = t
			s.addAck(pendingAck{tag: t, id: id, qos: 1})
			s.emit(Event{Kind: EventMessage, PacketID: id, Tag: t, Publish: p})
			return nil
		}
		t, err := s.newTag()
		if err != nil {
			return err
		}
		s.push(outItem{t: packet.PUBACK, id: id}) // [MQTT-3.3.4-1] [MQTT-4.3.2-2] [MQTT-4.6.0-2]
		s.emit(Event{Kind: EventMessage, PacketID: id, Tag: t, Publish: p})
		return nil
	}
	if st, ok := s.in[id]; ok {
		// A PUBLISH for an exchange awaiting PUBREC or PUBREL: a duplicate,
		// whatever its DUP flag says [MQTT-4.3.3-2].
		switch {
		case st.acked:
			if st.released {
				// Sent again though our PUBCOMP never left: the exchange
				// goes on (recvPubrel).
				st.released = false
				s.in[id] = st
			}
			s.answer(2, id)
		case st.pending:
			// The application has it; its Ack sends the PUBREC.
			s.resent(st.tag)
		default:
			// Stored before a restart, never acknowledged by the
			// application (ManualAck): deliver it again with its tag.
			if s.manualAck {
				st.pending = true
				s.addAck(pendingAck{tag: st.tag, id: id, qos: 2})
			} else {
				st.acked = true
				s.push(outItem{t: packet.PUBREC, id: id})
			}
			s.in[id] = st
			s.emit(Event{Kind: EventMessage, PacketID: id, Tag: st.tag, Publish: p})
		}
		return nil
	}
	if t, ok := s.inQ1[id]; ok {
		// The peer reused the id of an unacknowledged QoS 1 message.
		delete(s.inQ1, id)
		s.voidAck(t)
	}
	t, err := s.newTag()
	if err != nil {
		return err
	}
	if s.store != nil {
		// Stored, and durable, before the application sees the message or
		// the PUBREC leaves: a duplicate after a crash is then recognised.
		if err := s.store.SaveIncoming(Incoming{PacketID: id, Tag: t, Acked: !s.manualAck}); err != nil {
			return err
		}
		if err := s.store.Sync(); err != nil {
			return err
		}
		s.dirty = false
	}
	if s.manualAck {
		s.mapIn(id, inState{tag: t, pending: true})
		s.addAck(pendingAck{tag: t, id: id, qos: 2})
	} else {
		s.mapIn(id, inState{tag: t, acked: true})
		s.push(outItem{t: packet.PUBREC, id: id}) // [MQTT-3.3.4-1] [MQTT-4.6.0-3]
	}
	s.emit(Event{Kind: EventMessage, PacketID: id, Tag: t, Publish: p})
	return nil
}

// dropIncoming forgets an incoming QoS 2 exchange.
func (s *Session) dropIncoming(id uint16, st inState) error {
	if err := s.endIncoming(id, st); err != nil {
		return err
	}
	delete(s.in, id)
	return nil
}

// endIncoming removes the incoming QoS 2 exchange id from the store and
// from the messages awaiting the application's Ack.
func (s *Session) endIncoming(id uint16, st inState) error {
	if s.store != nil {
		if err := s.store.DeleteIncoming(id); err != nil {
			return err
		}
		s.dirty = true
	}
	if st.pending {
		s.voidAck(st.tag)
	}
	return nil
}

func (s *Session) recvPubrel(id uint16) error {
	if st, ok := s.in[id]; ok && !st.released {
		// Removed from the store, durably before the PUBCOMP leaves: the
		// peer reuses the id once it has the PUBCOMP, and a stale entry
		// restored after a restart would swallow its next message.
		if err := s.endIncoming(id, st); err != nil {
			return err
		}
		// Kept in memory until the PUBCOMP is handed out (completed): if
		// the connection ends before, the peer has no PUBCOMP and may send
		// the PUBLISH again, a duplicate then, not a new message
		// [MQTT-4.3.3-2]. mosquitto 2.0 does so when its resend of the
		// PUBREL fails on a connection that breaks at once.
		s.in[id] = inState{tag: st.tag, acked: true, released: true}
	}
	s.push(outItem{t: packet.PUBCOMP, id: id}) // [MQTT-4.3.3-2], for unknown ids too
	return nil
}

// completed forgets the incoming QoS 2 exchange id as its PUBCOMP is
// handed out: the peer may reuse the id from now on.
func (s *Session) completed(id uint16) {
	if st, ok := s.in[id]; ok && st.released {
		delete(s.in, id)
	}
}

// ackedRequest reports an acknowledgement of a publish flow for the id of a
// SUBSCRIBE or UNSUBSCRIBE.
func (s *Session) ackedRequest(t packet.Type, id uint16) error {
	if _, ok := s.subs[id]; ok {
		return violation(t, "MQTT-2.3.1-6", "acknowledges a SUBSCRIBE or UNSUBSCRIBE")
	}
	return nil
}

func (s *Session) recvPuback(id uint16) error {
	m := s.byID[id]
	if m == nil {
		return s.ackedRequest(packet.PUBACK, id)
	}
	if m.qos != 1 {
		return violation(packet.PUBACK, "MQTT-4.3.3-1", "PUBACK for a QoS 2 message")
	}
	if !m.everSent {
		return violation(packet.PUBACK, "MQTT-2.3.1-6", "PUBACK for a PUBLISH never sent")
	}
	if err := s.complete(m); err != nil { // [MQTT-4.3.2-1]
		return err
	}
	return s.fill()
}

func (s *Session) recvPubrec(id uint16) error {
	m := s.byID[id]
	if m == nil {
		if err := s.ackedRequest(packet.PUBREC, id); err != nil {
			return err
		}
		s.push(outItem{t: packet.PUBREL, id: id})
		return nil
	}
	if m.qos != 2 {
		return violation(packet.PUBREC, "MQTT-4.3.2-1", "PUBREC for a QoS 1 message")
	}
	if m.state == StateReleased {
		// A duplicate PUBREC: answer it again, unless a PUBREL is waiting.
		if m.sent {
			s.push(outItem{t: packet.PUBREL, id: id})
		}
		return nil
	}
	if !m.everSent {
		return violation(packet.PUBREC, "MQTT-2.3.1-6", "PUBREC for a PUBLISH never sent")
	}
	if s.store != nil {
		if err := s.store.UpdateMessage(m.h, id, StateReleased); err != nil {
			return err
		}
		s.dirty = true
	}
	if !m.sent {
		// The PUBREC answers a PUBLISH of an earlier connection, and the
		// resend waits in the outbox: it must not leave [MQTT-4.3.3-1].
		s.dropItems(m)
	}
	m.state, m.sent, m.everSent = StateReleased, false, false
	s.push(outItem{t: packet.PUBREL, id: id, m: m}) // [MQTT-4.3.3-1] [MQTT-4.6.0-4]
	return nil
}

func (s *Session) recvPubcomp(id uint16) error {
	m := s.byID[id]
	if m == nil {
		return s.ackedRequest(packet.PUBCOMP, id)
	}
	if m.qos != 2 {
		return violation(packet.PUBCOMP, "MQTT-4.3.2-1", "PUBCOMP for a QoS 1 message")
	}
	if m.state != StateReleased {
		return violation(packet.PUBCOMP, "MQTT-4.3.3-1", "PUBCOMP before PUBREC")
	}
	if !m.everSent {
		return violation(packet.PUBCOMP, "MQTT-2.3.1-6", "PUBCOMP for a PUBREL never sent")
	}
	if err := s.complete(m); err != nil {
		return err
	}
	return s.fill()
}

func (s *Session) recvSuback(p *packet.Suback) error {
	if s.role != Client {
		return violation(packet.SUBACK, "3.9", "SUBACK sent to a server")
	}
	r, ok := s.subs[p.PacketID]
	if !ok || r.unsub || !r.sent {
		return violation(packet.SUBACK, "MQTT-2.3.1-7", "SUBACK for no SUBSCRIBE sent")
	}
	if len(p.ReturnCodes) != r.n {
		return violation(packet.SUBACK, "MQTT-3.8.4-5", "SUBACK return codes do not match the filters")
	}
	delete(s.subs, p.PacketID)
	s.releaseID(p.PacketID) // [MQTT-2.3.1-3]
	s.emit(Event{Kind: EventSubscribed, Handle: r.h, PacketID: p.PacketID, ReturnCodes: p.ReturnCodes})
	return nil
}

func (s *Session) recvUnsuback(id uint16) error {
	if s.role != Client {
		return violation(packet.UNSUBACK, "3.11", "UNSUBACK sent to a server")
	}
	r, ok := s.subs[id]
	if !ok || !r.unsub || !r.sent {
		return violation(packet.UNSUBACK, "MQTT-2.3.1-7", "UNSUBACK for no UNSUBSCRIBE sent")
	}
	delete(s.subs, id)
	s.releaseID(id) // [MQTT-2.3.1-3]
	s.emit(Event{Kind: EventUnsubscribed, Handle: r.h, PacketID: id})
	return nil
}
