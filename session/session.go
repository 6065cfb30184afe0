package session

import (
	"errors"
	"fmt"
	"time"

	"github.com/ternmq/mqtt/packet"
)

// Role says which side of the connection a Session is.
type Role uint8

// The two roles. The publish flows are the same for both; they differ in
// which control packets they send and accept.
const (
	Client Role = 1
	Server Role = 2
)

func (r Role) String() string {
	switch r {
	case Client:
		return "client"
	case Server:
		return "server"
	}
	return "Role(?)"
}

// Defaults of Config.
const (
	// DefaultMaxInflight is what a stock mosquitto allows
	// (max_inflight_messages 20).
	DefaultMaxInflight = 20
	// DefaultMaxQueued bounds the messages waiting for a slot or a
	// connection.
	DefaultMaxQueued = 1000
)

// Config configures a Session. Only Role is required.
type Config struct {
	// Role is Client or Server.
	Role Role

	// MaxInflight is the number of outgoing QoS 1 and 2 messages that may
	// await acknowledgement at once: 0 means DefaultMaxInflight, and values
	// over 65535 mean 65535.
	MaxInflight int

	// MaxQueued is the number of messages that may wait for an inflight
	// slot or for a connection: 0 means DefaultMaxQueued and a negative
	// value none. It also bounds the QoS 0 messages taken by Publish and not
	// yet handed out by AppendOutgoing or Next (at least one may always
	// wait there).
	MaxQueued int

	// MaxQueuedBytes bounds the same messages in bytes: their topics and
	// payloads, plus QueuedOverhead each. 0 or less means no bound but
	// MaxQueued. A message that would pass the bound is refused with
	// ErrFull, unless nothing waits: one message, however large, may
	// always wait.
	MaxQueuedBytes int

	// QueueQoS0 makes Publish queue QoS 0 messages while disconnected, to
	// be sent after the next connection is up; without it, Publish returns
	// ErrNotConnected for them. Queued QoS 0 messages are not stored.
	QueueQoS0 bool

	// ManualAck makes the acknowledgement of an incoming QoS 1 or 2 message
	// wait for the application's Ack call, instead of leaving at once.
	// Acknowledgements still leave in the order the messages arrived: an
	// Ack for a later message waits for the earlier ones
	// [MQTT-4.6.0-2] [MQTT-4.6.0-3]. The application must acknowledge every
	// message, also those it chooses not to process [MQTT-4.5.0-2]: one
	// never acknowledged holds back all that arrive after it.
	ManualAck bool

	// Store keeps the session state durable. Nil means the state lives in
	// the Session only.
	Store Store
}

type connState uint8

const (
	offline    connState = iota
	connecting           // client: CONNECT queued, awaiting CONNACK
	online
	closing // client: DISCONNECT queued; server: DISCONNECT received
)

// message is an outgoing message held by the session, queued or in flight.
type message struct {
	h          Handle
	id         uint16
	state      State
	qos        byte
	retain     bool
	sent       bool // the packet of its current stage has been handed out on this connection
	everSent   bool // the packet of its current stage has been handed out, on some connection (or perhaps before a restart)
	topicLen   int
	buf        []byte // topic then payload
	prev, next *message
}

func (m *message) topic() []byte   { return m.buf[:m.topicLen:m.topicLen] }
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

// request is a SUBSCRIBE or UNSUBSCRIBE awaiting its answer.
type request struct {
	h     Handle
	n     int // number of filters, for the SUBACK's return codes
	unsub bool
	sent  bool // handed out
}

// inState is an incoming QoS 2 exchange awaiting PUBREL.
type inState struct {
	tag     Tag
	acked   bool // PUBREC may be sent (queued or sent already)
	pending bool // delivered in this process, awaiting the application's Ack
}

// pendingAck is an incoming QoS 1 or 2 message awaiting the application's
// Ack (Config.ManualAck), in arrival order.
type pendingAck struct {
	tag  Tag
	id   uint16
	qos  byte
	done uint8 // ackWaiting, ackDone or ackVoid
}

const (
	ackWaiting = iota
	ackDone
	ackVoid // the exchange ended without our acknowledgement (PUBREL came, or the id was reused)
)

// outItem is a packet waiting in the outbox.
type outItem struct {
	t        packet.Type
	id       uint16
	flag     bool     // PUBLISH: DUP; CONNACK: session present
	q0       bool     // a QoS 0 PUBLISH counted in pendQ0
	m        *message // PUBLISH and PUBREL of an inflight message
	off, end int      // encoded bytes in slab, for CONNECT, SUBSCRIBE, UNSUBSCRIBE, SUBACK and QoS 0 PUBLISH
}

// Session is the state of one MQTT session. Create it with New.
//
// The small fields sit together, so that the struct packs.
type Session struct {
	_         [0]func() // not comparable; first, where a field of size 0 takes no room
	maxQueued int
	maxBytes  int // Config.MaxQueuedBytes; 0 for no bound
	store     Store
	role      Role
	queueQoS0 bool
	manualAck bool
	dirty     bool // the store was written since its last Sync

	state       connState
	clean       bool   // client: the current connection asked for a clean session
	pingOut     bool   // client: PINGREQ sent, no PINGRESP yet
	pingQd      bool   // client: PINGREQ in the outbox
	nextID      uint16 // the last packet id handed out
	maxInflight uint16
	keepAlive   uint16 // seconds
	lastSent    int64
	lastRecv    int64

	lastHandle Handle
	lastTag    Tag
	tagLimit   Tag // tags up to this are reserved in the Store

	inflight list                // messages with a packet id, in Handle order
	queue    list                // messages waiting for a slot or a connection
	byID     map[uint16]*message // inflight by packet id
	subs     map[uint16]request  // SUBSCRIBE and UNSUBSCRIBE awaiting answers
	in       map[uint16]inState  // incoming QoS 2 exchanges awaiting PUBREL
	inQ1     map[uint16]Tag      // ManualAck: incoming QoS 1 awaiting Ack
	spare    *spare              // made while packets flow, dropped by Shrink
}

// spare is what a session needs only while packets flow: made on first
// use and dropped by Shrink once its queues are empty, so that an idle
// session holds none of it (and a Session fits a smaller size class).
type spare struct {
	out     []outItem     // the outbox
	outHead int           // out[:outHead] are handed out
	slab    []byte        // encoded bytes of the outbox's raw items
	pendQ0  int           // QoS 0 PUBLISH packets in the outbox
	pendQ0B int           // their encoded bytes
	events  []Event       // events not yet returned by NextEvent
	evHead  int           // events[:evHead] are returned
	acks    []pendingAck  // ManualAck: awaiting Ack, in arrival order
	ackHead int           // acks[:ackHead] are gone
	bits    *[1024]uint64 // packet ids in use, made once many are; remade after Shrink

	free     []*message      // reusable messages
	check    []byte          // scratch for validating topics
	storeMsg *Message        // passed to the Store without an allocation per call; made on first use
	sp       *scratchPackets // the values Next returns, made by its first call
}

func (s *Session) spares() *spare {
	if s.spare == nil {
		s.spare = new(spare)
	}
	return s.spare
}

// epoch is the origin of stamps: a session keeps its times (lastSent,
// lastRecv) as durations since epoch (8 bytes, not time.Time's 24), which
// keep the monotonic clock reading of the times they come from.
var epoch = time.Now()

func stamp(t time.Time) int64 { return int64(t.Sub(epoch)) }

func unstamp(d int64) time.Time { return epoch.Add(time.Duration(d)) }

// scratchPackets are the packet values handed out by Next.
type scratchPackets struct {
	connect     packet.Connect
	connack     packet.Connack
	publish     packet.Publish
	puback      packet.Puback
	pubrec      packet.Pubrec
	pubrel      packet.Pubrel
	pubcomp     packet.Pubcomp
	subscribe   packet.Subscribe
	suback      packet.Suback
	unsubscribe packet.Unsubscribe
	unsuback    packet.Unsuback
	pingreq     packet.Pingreq
	pingresp    packet.Pingresp
	disconnect  packet.Disconnect
}

// bitsThreshold is the number of packet ids in use above which the session
// keeps a bitmap of them (8 KB), so that finding a free one stays fast when
// nearly all are taken; below it, probing the maps is cheaper than the memory.
const bitsThreshold = 256

// New returns a disconnected Session. With a Store, it loads the stored
// state: queued and inflight messages (resent on the next connection, all
// of them, even if more than MaxInflight) and incoming QoS 2 exchanges.
func New(cfg Config) (*Session, error) {
	if cfg.Role != Client && cfg.Role != Server {
		return nil, errors.New("session: Config.Role must be Client or Server")
	}
	s := &Session{
		role:      cfg.Role,
		maxQueued: cfg.MaxQueued,
		maxBytes:  max(cfg.MaxQueuedBytes, 0),
		queueQoS0: cfg.QueueQoS0,
		manualAck: cfg.ManualAck,
		store:     cfg.Store,
	}
	s.maxInflight = uint16(min(cfg.MaxInflight, 65535))
	if cfg.MaxInflight <= 0 {
		s.maxInflight = DefaultMaxInflight
	}
	if s.maxQueued == 0 {
		s.maxQueued = DefaultMaxQueued
	}
	s.maxQueued = max(s.maxQueued, 0)
	if s.store != nil {
		if err := s.load(); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func (s *Session) load() error {
	lh, lt, err := s.store.Load(func(m *Message) error {
		if m.QoS != 1 && m.QoS != 2 {
			return fmt.Errorf("session: stored message %d has QoS %d", m.Handle, m.QoS)
		}
		if m.Handle <= s.lastHandle {
			return fmt.Errorf("session: stored message %d out of order", m.Handle)
		}
		s.lastHandle = m.Handle
		x := s.newMessage(m.Handle, m.QoS, m.Retain, m.Topic, m.Payload)
		if m.State == StateQueued {
			s.queue.pushBack(x)
			return nil
		}
		if m.PacketID == 0 || s.byID[m.PacketID] != nil || m.State > StateReleased || (m.State == StateReleased && m.QoS != 2) {
			s.freeMessage(x)
			return fmt.Errorf("session: stored message %d has a bad packet id %d or state %d", m.Handle, m.PacketID, m.State)
		}
		// It may have been sent before the restart: DUP when sent again.
		x.id, x.state, x.everSent = m.PacketID, m.State, true
		s.inflight.pushBack(x)
		s.mapID(x.id, x)
		s.nextID = x.id
		return nil
	}, func(in Incoming) error {
		if in.PacketID == 0 {
			return errors.New("session: stored incoming exchange has packet id 0")
		}
		s.mapIn(in.PacketID, inState{tag: in.Tag, acked: in.Acked})
		s.lastTag = max(s.lastTag, in.Tag)
		return nil
	})
	if err != nil {
		return err
	}
	s.lastHandle = max(s.lastHandle, lh)
	s.lastTag = max(s.lastTag, lt)
	if len(s.byID) >= bitsThreshold {
		s.makeBits()
	}
	return nil
}

// Role returns the session's role.
func (s *Session) Role() Role { return s.role }

// Connected reports whether the session has a connection ready for
// application traffic: a client after an accepting CONNACK, a server after
// Accept, until Disconnected (or, for a client, Disconnect).
func (s *Session) Connected() bool { return s.state == online }

// Inflight returns the number of outgoing QoS 1 and 2 messages holding a
// packet identifier: awaiting PUBACK, PUBREC or PUBCOMP.
func (s *Session) Inflight() int { return s.inflight.n }

// Queued returns the number of messages waiting for an inflight slot or a
// connection.
func (s *Session) Queued() int { return s.queue.n }

// LastHandle returns the largest Handle handed out so far, including those
// loaded from the Store: a restarted publisher can tell from it how far it
// had got.
func (s *Session) LastHandle() Handle { return s.lastHandle }

// Connect starts a client connection: it queues c, which must be the first
// packet on the connection [MQTT-3.1.0-1], and takes the keepalive period
// from it. The caller sets c's fields (client id, will, credentials); the
// session copies what it needs. Nothing else is sent before the CONNACK.
//
// With c.CleanSession set, the previous session ends [MQTT-3.1.2-6]:
// incoming QoS 2 state is dropped, and outgoing messages not yet complete
// go back to the head of the queue, to be sent in the new session as new
// messages with new packet identifiers (so QoS 1 keeps its at-least-once
// promise); a QoS 2 message whose PUBREC had arrived is reported complete
// (EventPublished), since the receiver took ownership of it and sending its
// PUBLISH again is forbidden [MQTT-4.3.3-1].
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
// connection.
func (s *Session) cleanStart() error {
	if err := s.dropAllIncoming(); err != nil {
		return err
	}
	for m := s.inflight.tail; m != nil; {
		prev := m.prev
		if m.state == StateReleased {
			if err := s.complete(m); err != nil {
				return err
			}
		} else {
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
		}
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
			m := s.newMessage(h, p.QoS, p.Retain, p.Topic, p.Payload)
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
	m := s.newMessage(h, p.QoS, p.Retain, p.Topic, p.Payload)
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

// Ack acknowledges the incoming message tag (Config.ManualAck): its PUBACK
// or PUBREC is queued once every message that arrived before it is
// acknowledged too [MQTT-4.6.0-2] [MQTT-4.6.0-3]. Acknowledging twice, or a
// message whose exchange has ended meanwhile, does nothing; ErrUnknownTag
// is for tags the session never handed out. Acknowledgements given while
// disconnected leave after the next CONNACK (client) or Accept (server).
func (s *Session) Ack(t Tag) error {
	i := s.findAck(t)
	if i < 0 {
		if t == 0 || t > s.lastTag {
			return ErrUnknownTag
		}
		return nil // acknowledged already, or its exchange ended
	}
	if a := &s.spare.acks[i]; a.done == ackWaiting {
		a.done = ackDone
		s.releaseAcks()
	}
	return nil
}

func (s *Session) findAck(t Tag) int {
	x := s.spare
	if t == 0 || x == nil || x.ackHead >= len(x.acks) {
		return -1
	}
	// Tags are handed out in arrival order, so the guess is usually right;
	// redeliveries after a restart carry older tags.
	if d := t - x.acks[x.ackHead].tag; d < Tag(len(x.acks)-x.ackHead) {
		if i := x.ackHead + int(d); x.acks[i].tag == t {
			return i
		}
	}
	for i := x.ackHead; i < len(x.acks); i++ {
		if x.acks[i].tag == t {
			return i
		}
	}
	return -1
}

// releaseAcks queues the acknowledgements at the head of the arrival order
// that the application has given. Without a connection they wait for the
// next one.
func (s *Session) releaseAcks() {
	x := s.spare
	if s.state != online || x == nil {
		return
	}
	for x.ackHead < len(x.acks) && x.acks[x.ackHead].done != ackWaiting {
		a := x.acks[x.ackHead]
		x.ackHead++
		if a.done == ackVoid {
			continue
		}
		if a.qos == 1 {
			delete(s.inQ1, a.id)
			s.push(outItem{t: packet.PUBACK, id: a.id}) // [MQTT-4.3.2-2]
		} else if st, ok := s.in[a.id]; ok && st.tag == a.tag {
			st.pending, st.acked = false, true
			s.in[a.id] = st
			s.push(outItem{t: packet.PUBREC, id: a.id}) // [MQTT-4.3.3-2]
		}
	}
	if x.ackHead == len(x.acks) {
		x.acks = x.acks[:0]
		x.ackHead = 0
	} else if x.ackHead >= 64 && x.ackHead*2 >= len(x.acks) {
		n := copy(x.acks, x.acks[x.ackHead:])
		x.acks = x.acks[:n]
		x.ackHead = 0
	}
}

// voidAck ends the wait for the application's Ack of tag without sending it.
func (s *Session) voidAck(t Tag) {
	if i := s.findAck(t); i >= 0 && s.spare.acks[i].done == ackWaiting {
		a := &s.spare.acks[i]
		a.done = ackVoid
		if a.qos == 1 {
			delete(s.inQ1, a.id)
		}
		s.releaseAcks()
	}
}

// addAck records an incoming message awaiting the application's Ack.
func (s *Session) addAck(a pendingAck) {
	x := s.spares()
	x.acks = append(x.acks, a)
}

// clearAcks forgets every message awaiting the application's Ack.
func (s *Session) clearAcks() {
	if x := s.spare; x != nil {
		x.acks = x.acks[:0]
		x.ackHead = 0
	}
}

// push queues a packet if the connection may carry it.
func (s *Session) push(it outItem) {
	if s.state == online {
		s.pushOut(it)
	}
}

// pushOut queues a packet in the outbox.
func (s *Session) pushOut(it outItem) {
	x := s.spares()
	x.out = append(x.out, it)
}

// pendQ0 returns the number of QoS 0 PUBLISH packets in the outbox.
func (s *Session) pendQ0() int {
	if s.spare == nil {
		return 0
	}
	return s.spare.pendQ0
}

func (s *Session) emit(e Event) {
	x := s.spares()
	x.events = append(x.events, e)
}

// NextEvent returns the next event produced by the calls so far, oldest
// first; ok is false when there is none. Drain the events after each
// Receive: those of EventMessage, EventSubscribe, EventUnsubscribe and
// EventSubscribed alias the packet given to Receive.
func (s *Session) NextEvent() (e Event, ok bool) {
	x := s.spare
	if x == nil || x.evHead >= len(x.events) {
		return Event{}, false
	}
	e = x.events[x.evHead]
	x.events[x.evHead] = Event{}
	x.evHead++
	if x.evHead == len(x.events) {
		x.events = x.events[:0]
		x.evHead = 0
	}
	return e, true
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

// maxKeptBuffer is the largest message buffer kept for reuse; larger ones
// are left to the garbage collector, so that one big message does not pin
// its memory for the session's lifetime.
const maxKeptBuffer = 64 << 10

func (s *Session) freeMessage(m *message) {
	buf := m.buf[:0]
	if cap(buf) > maxKeptBuffer {
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

func (s *Session) clearOutbox() {
	if x := s.spare; x != nil {
		clear(x.out)
		x.out = x.out[:0]
		x.outHead = 0
		x.slab = x.slab[:0]
		x.pendQ0, x.pendQ0B = 0, 0
	}
	s.pingQd = false
}
