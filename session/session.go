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

// inState is an incoming QoS 2 exchange awaiting PUBREL, or its PUBCOMP.
type inState struct {
	tag      Tag
	acked    bool // PUBREC may be sent (queued or sent already)
	pending  bool // delivered in this process, awaiting the application's Ack
	released bool // PUBREL came and the PUBCOMP is not handed out yet (see recvPubrel)
}

// pendingAck is an incoming QoS 1 or 2 message awaiting the application's
// Ack (Config.ManualAck), in arrival order.
type pendingAck struct {
	tag  Tag // 0 for the answer to a resend (see Session.answer)
	id   uint16
	qos  byte
	done uint8 // ackWaiting, ackDone or ackVoid
	// resend: the message came on an earlier connection and the peer's
	// resend of it has not come yet; the answer waits for the resend.
	resend bool
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
	dirty     bool  // the store was written since its last Sync
	storeErr  error // a store write that failed where no caller could be told (storeAcked)

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
	in       map[uint16]inState  // incoming QoS 2 exchanges awaiting PUBREL or PUBCOMP
	inQ1     map[uint16]Tag      // ManualAck: incoming QoS 1 awaiting Ack, or (tag 0) acknowledged offline and awaiting the resend
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
		if x, ok := sparePool.Get().(*spare); ok {
			s.spare = x
		} else {
			s.spare = new(spare)
		}
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

// PendingQoS0 returns the number of QoS 0 messages waiting to be handed
// out by AppendOutgoing, which Disconnected and Reset drop: QoS 0 messages
// are not part of the session state.
func (s *Session) PendingQoS0() int { return s.pendQ0() }

// LastHandle returns the largest Handle handed out so far, including those
// loaded from the Store: a restarted publisher can tell from it how far it
// had got.
func (s *Session) LastHandle() Handle { return s.lastHandle }

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
