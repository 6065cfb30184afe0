package session

import (
	"cmp"
	"slices"
	"sync"
)

// State is the stage of an outgoing QoS 1 or 2 message.
type State uint8

// The stages of an outgoing message.
const (
	// StateQueued: taken by Publish, waiting for an inflight slot or a
	// connection; it has no packet identifier yet.
	StateQueued State = iota
	// StatePublished: it has a packet identifier and its PUBLISH is sent, or
	// about to be; awaiting PUBACK (QoS 1) or PUBREC (QoS 2).
	StatePublished
	// StateReleased: QoS 2, PUBREC arrived and PUBREL is sent, or about to
	// be; awaiting PUBCOMP. Its PUBLISH is never sent again [MQTT-4.3.3-1].
	StateReleased
)

func (s State) String() string {
	switch s {
	case StateQueued:
		return "queued"
	case StatePublished:
		return "published"
	case StateReleased:
		return "released"
	}
	return "State(?)"
}

// Message is an outgoing QoS 1 or 2 message as a Store keeps it.
type Message struct {
	Handle   Handle
	PacketID uint16 // 0 while StateQueued
	State    State
	QoS      byte // 1 or 2
	Retain   bool
	Topic    []byte
	Payload  []byte
}

// Incoming is an incoming QoS 2 exchange as a Store keeps it: a PUBLISH
// taken, whose PUBREL has not arrived yet.
type Incoming struct {
	PacketID uint16
	Tag      Tag
	// Acked is set when the message was acknowledged when stored (always,
	// without Config.ManualAck). With ManualAck the exchange is stored
	// again, Acked, when the application acknowledges it. Until then, a
	// duplicate PUBLISH after a restart is delivered again, with Tag.
	Acked bool
}

// Store is the durable part of a session. A Store serves one session.
//
// The Session calls the write methods before it acts on what they record,
// and Sync before any packet that depends on them leaves (AppendOutgoing
// and Next) and before it delivers a QoS 2 message. A Store may therefore
// make writes durable at every call or only at Sync: both are safe for the
// protocol. Writes that fail are returned to the caller of the Session
// method, which then has not changed its state.
//
// The byte slices of a Message passed to a write method are valid only
// during the call: a Store copies what it keeps.
type Store interface {
	// Load calls msg for each stored message, in Handle order, and in for
	// each stored incoming exchange. It returns the largest Handle and Tag
	// ever stored, including those deleted since (a Session never reuses
	// them). The Message passed to msg is valid only during the call.
	Load(msg func(*Message) error, in func(Incoming) error) (lastHandle Handle, lastTag Tag, err error)

	// SaveMessage stores a new message.
	SaveMessage(m *Message) error

	// UpdateMessage records the packet identifier and stage of a stored
	// message.
	UpdateMessage(h Handle, packetID uint16, st State) error

	// DeleteMessage removes a message (it completed or was discarded).
	DeleteMessage(h Handle) error

	// SaveIncoming stores an incoming QoS 2 exchange, replacing any with
	// the same packet identifier.
	SaveIncoming(in Incoming) error

	// DeleteIncoming removes the incoming exchange with packetID, if any.
	DeleteIncoming(packetID uint16) error

	// Clear removes every message and incoming exchange. The largest
	// Handle and Tag stored are still remembered.
	Clear() error

	// Sync makes every write so far durable.
	Sync() error
}

// MarkStore is implemented by Stores that can record the largest Handle
// and Tag handed out without a message or exchange to go with them. The
// Session uses it to reserve tags in blocks, so that the tags of QoS 1
// messages, which are not stored, are never handed out again after a
// restart either. With a Store that lacks it, only the tags of QoS 2
// messages are unique across restarts. MemoryStore and FileStore have it.
type MarkStore interface {
	Store
	// SaveMarks records that handles up to lastHandle and tags up to
	// lastTag may have been handed out: Load returns at least these.
	SaveMarks(lastHandle Handle, lastTag Tag) error
}

// MemoryStore is a Store in memory: the state outlives a Session value
// (a client recreated in the same process can resume its session), not the
// process. It is safe for concurrent use, and it reuses the buffers of
// deleted messages, so that it allocates nothing in steady state.
//
// A Session with no Store keeps the same state with less copying; use
// MemoryStore when the state must pass from one Session to the next.
type MemoryStore struct {
	mu         sync.Mutex
	msgs       map[Handle]*memMessage
	in         map[uint16]Incoming
	free       []*memMessage
	lastHandle Handle
	lastTag    Tag
}

// memMessage is a stored message and the buffer its bytes live in.
type memMessage struct {
	Message
	buf []byte
}

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore() *MemoryStore {
	return &MemoryStore{msgs: make(map[Handle]*memMessage), in: make(map[uint16]Incoming)}
}

// Load implements Store.
func (s *MemoryStore) Load(msg func(*Message) error, in func(Incoming) error) (Handle, Tag, error) {
	s.mu.Lock()
	msgs := make([]*Message, 0, len(s.msgs))
	for _, m := range s.msgs {
		// Copies, so that the callbacks may call the Store.
		c := m.Message
		c.Topic = slices.Clone(m.Topic)
		c.Payload = slices.Clone(m.Payload)
		msgs = append(msgs, &c)
	}
	ins := make([]Incoming, 0, len(s.in))
	for _, i := range s.in {
		ins = append(ins, i)
	}
	lh, lt := s.lastHandle, s.lastTag
	s.mu.Unlock()
	slices.SortFunc(msgs, func(a, b *Message) int { return cmp.Compare(a.Handle, b.Handle) })
	slices.SortFunc(ins, func(a, b Incoming) int { return cmp.Compare(a.Tag, b.Tag) })
	for _, m := range msgs {
		if err := msg(m); err != nil {
			return 0, 0, err
		}
	}
	for _, i := range ins {
		if err := in(i); err != nil {
			return 0, 0, err
		}
	}
	return lh, lt, nil
}

// SaveMessage implements Store.
func (s *MemoryStore) SaveMessage(m *Message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var c *memMessage
	if n := len(s.free); n > 0 {
		c = s.free[n-1]
		s.free = s.free[:n-1]
	} else {
		c = new(memMessage)
	}
	buf := append(c.buf[:0], m.Topic...)
	buf = append(buf, m.Payload...)
	c.Message = *m
	c.buf = buf
	c.Topic = buf[:len(m.Topic):len(m.Topic)]
	c.Payload = buf[len(m.Topic):]
	if old := s.msgs[m.Handle]; old != nil {
		s.release(old)
	}
	s.msgs[m.Handle] = c
	s.lastHandle = max(s.lastHandle, m.Handle)
	return nil
}

// release keeps a deleted message's buffer for reuse, unless it is large.
func (s *MemoryStore) release(m *memMessage) {
	buf := m.buf[:0]
	if cap(buf) > maxKeptBuffer {
		buf = nil
	}
	*m = memMessage{buf: buf}
	if len(s.free) < 1024 {
		s.free = append(s.free, m)
	}
}

// UpdateMessage implements Store.
func (s *MemoryStore) UpdateMessage(h Handle, packetID uint16, st State) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m := s.msgs[h]; m != nil {
		m.PacketID, m.State = packetID, st
	}
	return nil
}

// DeleteMessage implements Store.
func (s *MemoryStore) DeleteMessage(h Handle) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m := s.msgs[h]; m != nil {
		delete(s.msgs, h)
		s.release(m)
	}
	return nil
}

// SaveIncoming implements Store.
func (s *MemoryStore) SaveIncoming(in Incoming) error {
	s.mu.Lock()
	s.in[in.PacketID] = in
	s.lastTag = max(s.lastTag, in.Tag)
	s.mu.Unlock()
	return nil
}

// DeleteIncoming implements Store.
func (s *MemoryStore) DeleteIncoming(packetID uint16) error {
	s.mu.Lock()
	delete(s.in, packetID)
	s.mu.Unlock()
	return nil
}

// Clear implements Store.
func (s *MemoryStore) Clear() error {
	s.mu.Lock()
	for h, m := range s.msgs {
		delete(s.msgs, h)
		s.release(m)
	}
	clear(s.in)
	s.mu.Unlock()
	return nil
}

// SaveMarks implements MarkStore.
func (s *MemoryStore) SaveMarks(lastHandle Handle, lastTag Tag) error {
	s.mu.Lock()
	s.lastHandle = max(s.lastHandle, lastHandle)
	s.lastTag = max(s.lastTag, lastTag)
	s.mu.Unlock()
	return nil
}

// Sync implements Store; memory needs no syncing.
func (s *MemoryStore) Sync() error { return nil }
