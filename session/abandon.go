package session

import "errors"

// ErrUnknownHandle means Abandon was given a handle the session does not
// hold, or one it may no longer drop.
var ErrUnknownHandle = errors.New("session: no such message to abandon")

// OldestSent returns the oldest message in flight whose PUBLISH was handed
// out on the current connection and is not acknowledged yet (no PUBACK, no
// PUBREC), with its topic (aliasing the session's copy, valid until the
// next call) and the length of its topic and payload. A client calls it when
// the connection ends, before Disconnected: a broker that closes the
// connection on a message it refuses (one over its maximum packet size,
// say) leaves that message there, connection after connection.
func (s *Session) OldestSent() (h Handle, topic []byte, size int, ok bool) {
	for m := s.inflight.head; m != nil; m = m.next {
		if m.state == StatePublished && m.sent {
			return m.h, m.topic(), len(m.buf), true
		}
	}
	return 0, nil, 0, false
}

// Abandon discards the outgoing message h, queued or in flight awaiting its
// PUBACK or PUBREC, from the session and the Store, and reports it with
// EventDropped. A QoS 2 message whose PUBREC arrived belongs to the
// receiver and cannot be abandoned. The peer may have received it: an
// abandoned message may have been delivered, once or (QoS 1) more.
func (s *Session) Abandon(h Handle) error {
	var m *message
	for q := s.queue.head; q != nil && m == nil; q = q.next {
		if q.h == h && q.qos > 0 {
			m = q
		}
	}
	inQueue := m != nil
	for q := s.inflight.head; q != nil && m == nil; q = q.next {
		if q.h == h && q.state == StatePublished {
			m = q
		}
	}
	if m == nil {
		return ErrUnknownHandle
	}
	if s.store != nil {
		if err := s.store.DeleteMessage(m.h); err != nil {
			return err
		}
		s.dirty = true
	}
	s.dropItems(m)
	id := m.id
	if inQueue {
		s.queue.remove(m)
	} else {
		s.inflight.remove(m)
		delete(s.byID, m.id)
		s.releaseID(m.id)
	}
	s.emit(Event{Kind: EventDropped, Handle: h, PacketID: id})
	s.freeMessage(m)
	return s.fill()
}
