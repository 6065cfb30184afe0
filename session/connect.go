package session

import (
	"time"

	"github.com/ternmq/mqtt/packet"
)

// A connection of the session: CONNECT and CONNACK, resuming or starting
// clean, and its end.

// Connect starts a client connection: it queues c, which must be the first
// packet on the connection [MQTT-3.1.0-1], and takes the keepalive period
// from it. The caller sets c's fields (client id, will, credentials); the
// session copies what it needs. Nothing else is sent before the CONNACK.
//
// With c.CleanSession set, the previous session ends [MQTT-3.1.2-6]:
// incoming QoS 2 state is dropped, and outgoing messages not yet complete
// go back to the head of the queue, to be sent in the new session as new
// messages with new packet identifiers (so QoS 1 keeps its at-least-once
// promise); a QoS 2 message whose PUBLISH had left is given up
// (EventDropped, with ErrSessionEnded): the receiver may have it or not,
// sent again it could arrive twice, and reported complete it could be lost.
func (s *Session) Connect(c *packet.Connect, now time.Time) error {
	if s.role != Client || s.state != offline {
		return ErrState
	}
	s.clearOutbox()
	x := s.spares()
	b, err := c.Append(x.slab)
	if err != nil {
		return err
	}
	if c.CleanSession {
		if err := s.cleanStart(); err != nil {
			return err
		}
	}
	x.slab = b
	s.state = connecting
	s.pushOut(outItem{t: packet.CONNECT, end: len(b)})
	s.clean = c.CleanSession
	s.startKeepAlive(c.KeepAlive, now)
	return nil
}

// cleanStart ends the client's previous session for a CleanSession
// connection: QoS 1 messages in flight and every message not yet sent go
// again, as new ones; QoS 2 messages whose PUBLISH left are given up
// (EventDropped, ErrSessionEnded).
func (s *Session) cleanStart() error {
	if err := s.dropAllIncoming(); err != nil {
		return err
	}
	// Given up first, oldest first: tokens complete in order.
	for m := s.inflight.head; m != nil; {
		next := m.next
		if m.qos == 2 && (m.state == StateReleased || m.everSent) {
			// Exactly once does not outlive the session: the receiver
			// may have the message, delivered (on PUBLISH) or held
			// until a PUBREL that will never come, or not have it.
			// Sent again it may arrive twice, reported done it may be
			// lost: it is given up, and the caller told.
			if s.store != nil {
				if err := s.store.DeleteMessage(m.h); err != nil {
					return err
				}
				s.dirty = true
			}
			s.dropItems(m)
			s.inflight.remove(m)
			delete(s.byID, m.id)
			s.releaseID(m.id)
			s.emit(Event{Kind: EventDropped, Handle: m.h, PacketID: m.id, Err: ErrSessionEnded})
			s.freeMessage(m)
		}
		m = next
	}
	for m := s.inflight.tail; m != nil; {
		prev := m.prev
		if s.store != nil {
			if err := s.store.UpdateMessage(m.h, 0, StateQueued); err != nil {
				return err
			}
			s.dirty = true
		}
		s.inflight.remove(m)
		delete(s.byID, m.id)
		s.releaseID(m.id)
		m.id, m.state, m.sent, m.everSent = 0, StateQueued, false, false
		s.queue.pushFront(m)
		m = prev
	}
	return nil
}

// dropAllIncoming forgets every incoming exchange.
func (s *Session) dropAllIncoming() error {
	for id := range s.in {
		if s.store != nil {
			if err := s.store.DeleteIncoming(id); err != nil {
				return err
			}
			s.dirty = true
		}
		delete(s.in, id)
	}
	clear(s.inQ1)
	s.clearAcks()
	return nil
}

func (s *Session) startKeepAlive(seconds uint16, now time.Time) {
	s.keepAlive = seconds
	s.lastSent, s.lastRecv = stamp(now), stamp(now)
	s.pingOut, s.pingQd = false, false
}

// Accept starts a server connection for a CONNECT the caller has read and
// accepted: it queues the CONNACK (return code 0) [MQTT-3.1.4-4], then the
// resends of the kept session [MQTT-4.4.0-1] and the queued messages, and
// takes the keepalive period from c [MQTT-3.1.2-24].
//
// sessionPresent says whether the caller kept state for the client id
// (subscriptions, this Session); it is sent as the CONNACK's Session
// Present flag [MQTT-3.2.2-2] [MQTT-3.2.2-3]. With c.CleanSession set the
// session is Reset first and the flag is 0 [MQTT-3.1.2-6] [MQTT-3.2.2-1].
func (s *Session) Accept(c *packet.Connect, sessionPresent bool, now time.Time) error {
	if s.role != Server || s.state != offline {
		return ErrState
	}
	if c.CleanSession {
		if err := s.Reset(); err != nil {
			return err
		}
		sessionPresent = false
	}
	s.clearOutbox()
	s.state = online
	s.startKeepAlive(c.KeepAlive, now)
	s.pushOut(outItem{t: packet.CONNACK, flag: sessionPresent})
	return s.resume()
}

// resume queues the resends of the inflight messages, in their original
// order [MQTT-4.4.0-1] [MQTT-4.6.0-1], then fills the window from the queue.
func (s *Session) resume() error {
	s.awaitResends()
	s.releaseAcks() // given while disconnected
	for m := s.inflight.head; m != nil; m = m.next {
		m.sent = false
		if m.state == StatePublished {
			// DUP if it may have reached the peer already [MQTT-3.3.1-1].
			s.pushOut(outItem{t: packet.PUBLISH, id: m.id, flag: m.everSent, m: m})
		} else {
			s.pushOut(outItem{t: packet.PUBREL, id: m.id, m: m})
		}
	}
	return s.fill()
}

// Disconnect queues a DISCONNECT, the last packet of a client's connection
// [MQTT-3.14.4-2]: nothing is queued after it. The caller closes the
// connection once it is written [MQTT-3.14.4-1], then calls Disconnected.
func (s *Session) Disconnect() error {
	if s.role != Client || s.state != online {
		return ErrState
	}
	s.pushOut(outItem{t: packet.DISCONNECT})
	s.state = closing
	return nil
}

// Disconnected tells the session that its network connection is gone. The
// packets not yet handed out are dropped (inflight messages will be resent
// on the next connection, control packets and acknowledgements are not
// part of the session); SUBSCRIBE and UNSUBSCRIBE requests still awaiting
// their answer end with EventDropped, and their packet ids are freed. The
// session state is kept, for the next connection [MQTT-3.1.2-4].
func (s *Session) Disconnected() {
	s.state = offline
	s.clearOutbox()
	for id, r := range s.subs {
		delete(s.subs, id)
		s.releaseID(id)
		s.emit(Event{Kind: EventDropped, Handle: r.h, PacketID: id})
	}
	for m := s.inflight.head; m != nil; m = m.next {
		m.sent = false
	}
	s.pingOut, s.pingQd = false, false
}

// Reset discards the whole session state [MQTT-3.1.2-6]: queued and
// inflight messages (each reported by EventDropped), pending requests,
// incoming exchanges, the packets not yet handed out, and the Store's
// contents. Handles and tags are not reused afterwards. Accept calls it for
// a CleanSession connection; call it between connections.
func (s *Session) Reset() error {
	if s.store != nil {
		if err := s.store.Clear(); err != nil {
			return err
		}
		s.dirty = true
	}
	s.clearOutbox()
	for m := s.inflight.head; m != nil; m = s.inflight.head {
		s.inflight.remove(m)
		delete(s.byID, m.id)
		s.releaseID(m.id)
		s.emit(Event{Kind: EventDropped, Handle: m.h, PacketID: m.id})
		s.freeMessage(m)
	}
	for m := s.queue.head; m != nil; m = s.queue.head {
		s.queue.remove(m)
		if m.qos > 0 {
			s.emit(Event{Kind: EventDropped, Handle: m.h})
		}
		s.freeMessage(m)
	}
	for id, r := range s.subs {
		delete(s.subs, id)
		s.releaseID(id)
		s.emit(Event{Kind: EventDropped, Handle: r.h, PacketID: id})
	}
	clear(s.in)
	clear(s.inQ1)
	s.clearAcks()
	return nil
}
