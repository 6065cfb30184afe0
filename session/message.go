package session

import "github.com/ternmq/mqtt/packet"

// Messages: how the session holds one, the lists it keeps them in, their
// tags and handles, and their end.

// message is an outgoing message held by the session, queued or in flight.
type message struct {
	h          Handle
	id         uint16
	state      State
	qos        byte
	retain     bool
	sent       bool // the packet of its current stage has been handed out on this connection
	everSent   bool // the packet of its current stage has been handed out, on some connection (or perhaps before a restart)
	shared     bool // buf is the caller's (PublishShared), not to be reused
	topicLen   int
	buf        []byte // topic then payload
	prev, next *message
}

func (m *message) topic() []byte { return m.buf[:m.topicLen:m.topicLen] }

func (m *message) payload() []byte { return m.buf[m.topicLen:] }

// list is an intrusive doubly linked list of messages, oldest first.
type list struct {
	head, tail *message
	n          int
	bytes      int // sum of len(buf) of the messages
}

func (l *list) pushBack(m *message) {
	m.prev, m.next = l.tail, nil
	if l.tail != nil {
		l.tail.next = m
	} else {
		l.head = m
	}
	l.tail = m
	l.n++
	l.bytes += len(m.buf)
}

func (l *list) pushFront(m *message) {
	m.prev, m.next = nil, l.head
	if l.head != nil {
		l.head.prev = m
	} else {
		l.tail = m
	}
	l.head = m
	l.n++
	l.bytes += len(m.buf)
}

func (l *list) remove(m *message) {
	if m.prev != nil {
		m.prev.next = m.next
	} else {
		l.head = m.next
	}
	if m.next != nil {
		m.next.prev = m.prev
	} else {
		l.tail = m.prev
	}
	m.prev, m.next = nil, nil
	l.n--
	l.bytes -= len(m.buf)
}

// tagBlock is the number of tags reserved in the Store at a time.
const tagBlock = 1024

// newTag hands out the next tag. With a MarkStore, tags are reserved in
// blocks, durably before the first of a block is handed out, so that none
// is handed out again after a restart.
func (s *Session) newTag() (Tag, error) {
	if s.lastTag >= s.tagLimit && s.store != nil {
		if ms, ok := s.store.(MarkStore); ok {
			limit := s.lastTag + tagBlock
			if err := ms.SaveMarks(s.lastHandle, limit); err != nil {
				return 0, err
			}
			if err := s.store.Sync(); err != nil {
				return 0, err
			}
			s.dirty = false
			s.tagLimit = limit
		}
	}
	s.lastTag++
	return s.lastTag, nil
}

func (s *Session) newMessage(h Handle, qos byte, retain bool, topic, payload []byte) *message {
	var m *message
	if sp := s.spare; sp != nil && len(sp.free) > 0 {
		n := len(sp.free)
		m = sp.free[n-1]
		sp.free[n-1] = nil
		sp.free = sp.free[:n-1]
	} else {
		m = new(message)
	}
	buf := append(m.buf[:0], topic...)
	buf = append(buf, payload...)
	*m = message{h: h, qos: qos, retain: retain, topicLen: len(topic), buf: buf}
	return m
}

// newShared is newMessage for p at QoS 1 or 2, keeping shared as its buffer
// if not nil (see PublishShared).
func (s *Session) newShared(h Handle, p *packet.Publish, shared []byte) *message {
	if shared == nil {
		return s.newMessage(h, p.QoS, p.Retain, p.Topic, p.Payload)
	}
	m := s.newMessage(h, p.QoS, p.Retain, nil, nil)
	m.buf, m.topicLen, m.shared = shared[:len(shared):len(shared)], len(p.Topic), true
	return m
}

// maxKeptBuffer is the largest message buffer kept for reuse; larger ones
// are left to the garbage collector, so that one big message does not pin
// its memory for the session's lifetime.
const maxKeptBuffer = 64 << 10

func (s *Session) freeMessage(m *message) {
	buf := m.buf[:0]
	if cap(buf) > maxKeptBuffer || m.shared {
		buf = nil
	}
	*m = message{buf: buf}
	if sp := s.spares(); len(sp.free) < int(s.maxInflight)+64 {
		sp.free = append(sp.free, m)
	}
}

// complete ends an inflight message: PUBACK or PUBCOMP arrived.
func (s *Session) complete(m *message) error {
	if s.store != nil {
		if err := s.store.DeleteMessage(m.h); err != nil {
			return err
		}
		s.dirty = true
	}
	if !m.sent {
		// Acknowledged for a packet of an earlier connection while its
		// resend waits in the outbox.
		s.dropItems(m)
	}
	s.inflight.remove(m)
	delete(s.byID, m.id)
	s.releaseID(m.id) // [MQTT-2.3.1-3]
	s.emit(Event{Kind: EventPublished, Handle: m.h, PacketID: m.id})
	s.freeMessage(m)
	return nil
}

// dropItems removes m's packets from the outbox: an acknowledgement made
// them needless (a PUBLISH must not follow its PUBREC [MQTT-4.3.3-1]), and m
// is about to change or be reused.
func (s *Session) dropItems(m *message) {
	x := s.spare
	if x == nil {
		return
	}
	for i := x.outHead; i < len(x.out); i++ {
		if x.out[i].m == m {
			x.out[i] = outItem{}
		}
	}
}
