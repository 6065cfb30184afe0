package fuzz_test

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/ternmq/mqtt/packet"
	"github.com/ternmq/mqtt/session"
)

// FuzzSession drives one session, of the role the first byte picks, with
// an arbitrary sequence of packets from its peer and calls from its
// application, and checks after every step, from the outside:
//   - nothing panics, and every packet handed out encodes;
//   - a new PUBLISH, SUBSCRIBE or UNSUBSCRIBE never takes a packet id in
//     flight [MQTT-2.3.1-2], a resend (DUP) only one in flight with the
//     same message [MQTT-2.3.1-3];
//   - the PUBLISH packets in flight never exceed the window;
//   - Receive fails only with a protocol violation citing a rule (or
//     ErrNotConnected without a connection);
//   - every completion event names a message published and in flight, once.
func FuzzSession(f *testing.F) {
	for _, seed := range sessionSeeds() {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 2 {
			return
		}
		sessionRun(t, data)
	})
}

// Operations of the fuzz program, one byte each, most followed by an
// argument byte.
const (
	opConnect = iota
	opDisconnected
	opPublish
	opSubscribe
	opUnsubscribe
	opRecvPublish
	opRecvPuback
	opRecvPubrec
	opRecvPubrel
	opRecvPubcomp
	opRecvSuback
	opRecvUnsuback
	opRecvConnack
	opRecvOther
	opDrain
	opTickAck
	opCount
)

type sessionChecker struct {
	t        *testing.T
	s        *session.Session
	cfg      session.Config
	now      time.Time
	window   int
	pubOpen  map[uint16]string // PUBLISH ids handed out and not completed
	reqOpen  map[uint16]bool   // SUBSCRIBE and UNSUBSCRIBE ids awaiting answers
	handles  map[session.Handle]bool
	done     map[session.Handle]bool
	tags     []session.Tag
	payloads int
}

func sessionRun(t *testing.T, data []byte) {
	cfg := session.Config{
		Role:        session.Client,
		MaxInflight: 1 + int(data[0]>>1&7),
		MaxQueued:   int(data[0]>>4&3) - 1, // -1 (none), 1, 2 or 3
		ManualAck:   data[1]&1 != 0,
		QueueQoS0:   data[1]&2 != 0,
	}
	if data[0]&1 != 0 {
		cfg.Role = session.Server
	}
	if cfg.MaxQueued == 0 {
		cfg.MaxQueued = 3
	}
	shrink := data[1]&4 != 0 // Shrink after every step: it must change nothing but memory
	s, err := session.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c := &sessionChecker{t: t, s: s, cfg: cfg, now: time.Unix(1e9, 0), window: cfg.MaxInflight,
		pubOpen: map[uint16]string{}, reqOpen: map[uint16]bool{}, handles: map[session.Handle]bool{}, done: map[session.Handle]bool{}}
	data = data[2:]
	for len(data) > 0 {
		op := data[0] % opCount
		var arg byte
		if len(data) > 1 {
			arg = data[1]
		}
		data = data[min(2, len(data)):]
		c.step(op, arg)
		c.events()
		if shrink {
			s.Shrink()
		}
		if n := s.Inflight(); n > c.window {
			t.Fatalf("%d messages in flight, window %d", n, c.window)
		}
	}
	c.drain()
	c.events()
}

// id picks a packet id: one in flight when arg says so, else a small one,
// so that collisions are common.
func (c *sessionChecker) id(arg byte) uint16 {
	if arg&0x80 != 0 {
		i := int(arg & 0x3f)
		for id := range c.pubOpen {
			if i == 0 {
				return id
			}
			i--
		}
		for id := range c.reqOpen {
			if i == 0 {
				return id
			}
			i--
		}
	}
	return uint16(arg&7) + 1
}

func (c *sessionChecker) step(op, arg byte) {
	s := c.s
	switch op {
	case opConnect:
		conn := &packet.Connect{ClientID: []byte("fuzz"), KeepAlive: uint16(arg >> 4), CleanSession: arg&1 != 0}
		var err error
		if c.cfg.Role == session.Client {
			err = s.Connect(conn, c.now)
		} else {
			err = s.Accept(conn, arg&2 != 0, c.now)
		}
		if err != nil && !errors.Is(err, session.ErrState) {
			c.t.Fatalf("connect: %v", err)
		}
		if err == nil && conn.CleanSession {
			// A new session: the old ids are no longer in flight.
			clear(c.pubOpen)
		}
	case opDisconnected:
		// As a client giving up the message its broker keeps cutting
		// the connection for (arg bit 0), or any message (bit 1).
		if h, _, _, ok := s.OldestSent(); ok && arg&1 != 0 {
			c.abandon(h)
		}
		s.Disconnected()
		if arg&2 != 0 {
			c.abandon(session.Handle(arg >> 2))
		}
	case opPublish:
		c.payloads++
		p := &packet.Publish{QoS: arg % 3, Retain: arg&4 != 0, Topic: []byte("f/t"), Payload: []byte(fmt.Sprint(c.payloads))}
		h, err := s.Publish(p)
		switch {
		case err == nil:
			if p.QoS > 0 {
				if h == 0 || c.handles[h] {
					c.t.Fatalf("Publish returned handle %d, zero or not new", h)
				}
				c.handles[h] = true
			}
		case errors.Is(err, session.ErrFull), errors.Is(err, session.ErrNotConnected):
		default:
			c.t.Fatalf("Publish: %v", err)
		}
	case opSubscribe:
		_, err := s.Subscribe(&packet.Subscribe{Subscriptions: []packet.Subscription{{Filter: []byte("f/#"), QoS: arg % 3}}})
		c.callErr("Subscribe", err)
	case opUnsubscribe:
		_, err := s.Unsubscribe(&packet.Unsubscribe{Filters: [][]byte{[]byte("f/#")}})
		c.callErr("Unsubscribe", err)
	case opRecvPublish:
		qos := arg % 3
		var id uint16
		if qos > 0 {
			id = uint16(arg>>2&7) + 1
		}
		c.recv(&packet.Publish{QoS: qos, Dup: qos > 0 && arg&0x20 != 0, PacketID: id, Topic: []byte("in"), Payload: []byte{arg}})
	case opRecvPuback:
		c.recv(&packet.Puback{PacketID: c.id(arg)})
	case opRecvPubrec:
		c.recv(&packet.Pubrec{PacketID: c.id(arg)})
	case opRecvPubrel:
		c.recv(&packet.Pubrel{PacketID: c.id(arg)})
	case opRecvPubcomp:
		c.recv(&packet.Pubcomp{PacketID: c.id(arg)})
	case opRecvSuback:
		c.recv(&packet.Suback{PacketID: c.id(arg), ReturnCodes: []byte{1, 0, 2, 0x80}[:1+arg>>5&3]})
	case opRecvUnsuback:
		c.recv(&packet.Unsuback{PacketID: c.id(arg)})
	case opRecvConnack:
		c.recv(&packet.Connack{SessionPresent: arg&1 != 0 && arg%6 == 0, ReturnCode: packet.ReturnCode(arg % 6)})
	case opRecvOther:
		ps := []packet.Packet{
			&packet.Pingreq{}, &packet.Pingresp{}, &packet.Disconnect{},
			&packet.Connect{ClientID: []byte("x")},
			&packet.Subscribe{PacketID: c.id(arg), Subscriptions: []packet.Subscription{{Filter: []byte("a")}}},
			&packet.Unsubscribe{PacketID: c.id(arg), Filters: [][]byte{[]byte("a")}},
		}
		c.recv(ps[int(arg)%len(ps)])
	case opDrain:
		c.drain()
	case opTickAck:
		c.now = c.now.Add(time.Duration(arg&15) * time.Second)
		if arg&0x10 != 0 && len(c.tags) > 0 {
			i := int(arg>>5) % len(c.tags)
			if err := s.Ack(c.tags[i]); err != nil {
				c.t.Fatalf("Ack(%d) of a delivered message: %v", c.tags[i], err)
			}
			c.tags = append(c.tags[:i], c.tags[i+1:]...)
			return
		}
		if err := s.Tick(c.now); err != nil {
			if !errors.Is(err, session.ErrTimeout) {
				c.t.Fatalf("Tick: %v", err)
			}
			s.Disconnected()
		}
	}
}

// abandon gives up message h, which must be one published and not
// complete, or be refused.
func (c *sessionChecker) abandon(h session.Handle) {
	err := c.s.Abandon(h)
	switch {
	case err == nil:
		if !c.handles[h] || c.done[h] {
			c.t.Fatalf("Abandon(%d) of a message unknown or complete", h)
		}
	case errors.Is(err, session.ErrUnknownHandle):
	default:
		c.t.Fatalf("Abandon(%d): %v", h, err)
	}
	c.events()
}

func (c *sessionChecker) callErr(what string, err error) {
	if err != nil && !errors.Is(err, session.ErrFull) && !errors.Is(err, session.ErrNotConnected) && !errors.Is(err, session.ErrState) {
		c.t.Fatalf("%s: %v", what, err)
	}
}

// recv hands p to the session; a violation closes the connection, as a
// caller would.
func (c *sessionChecker) recv(p packet.Packet) {
	err := c.s.Receive(p, c.now)
	if err == nil {
		return
	}
	var e *session.Error
	switch {
	case errors.As(err, &e):
		if e.Rule == "" || !errors.Is(err, session.ErrProtocol) {
			c.t.Fatalf("Receive(%v): error without a rule: %v", p, err)
		}
	case errors.Is(err, session.ErrNotConnected):
	default:
		c.t.Fatalf("Receive(%v): %v", p, err)
	}
	c.events()
	c.s.Disconnected()
}

// drain takes every waiting packet and checks it.
func (c *sessionChecker) drain() {
	for {
		p, err := c.s.Next(c.now)
		if err != nil {
			c.t.Fatal(err)
		}
		if p == nil {
			return
		}
		if _, err := p.Append(nil); err != nil {
			c.t.Fatalf("handed out an invalid packet %v: %v", p, err)
		}
		switch p := p.(type) {
		case *packet.Publish:
			if p.QoS == 0 {
				continue
			}
			old, open := c.pubOpen[p.PacketID]
			switch {
			case c.reqOpen[p.PacketID]:
				c.t.Fatalf("PUBLISH with id %d of a pending request [MQTT-2.3.1-2]", p.PacketID)
			case open && !p.Dup:
				c.t.Fatalf("new PUBLISH %s with id %d, in flight for %s [MQTT-2.3.1-2]", p.Payload, p.PacketID, old)
			case open && old != string(p.Payload):
				c.t.Fatalf("resent PUBLISH with id %d carries %s, was %s [MQTT-2.3.1-3]", p.PacketID, p.Payload, old)
			case !open && p.Dup:
				c.t.Fatalf("PUBLISH %s resent with id %d not in flight", p.Payload, p.PacketID)
			}
			c.pubOpen[p.PacketID] = string(p.Payload)
			if len(c.pubOpen) > c.window {
				c.t.Fatalf("%d PUBLISH packets in flight, window %d", len(c.pubOpen), c.window)
			}
		case *packet.Subscribe:
			c.newRequest(p.PacketID)
		case *packet.Unsubscribe:
			c.newRequest(p.PacketID)
		}
	}
}

func (c *sessionChecker) newRequest(id uint16) {
	if _, ok := c.pubOpen[id]; ok || c.reqOpen[id] {
		c.t.Fatalf("request with id %d in flight [MQTT-2.3.1-2]", id)
	}
	c.reqOpen[id] = true
}

func (c *sessionChecker) events() {
	for ev, ok := c.s.NextEvent(); ok; ev, ok = c.s.NextEvent() {
		switch ev.Kind {
		case session.EventMessage:
			if ev.Publish == nil {
				c.t.Fatal("message event without a message")
			}
			if c.cfg.ManualAck && ev.Tag != 0 {
				c.tags = append(c.tags, ev.Tag)
			}
		case session.EventPublished:
			if !c.handles[ev.Handle] || c.done[ev.Handle] {
				c.t.Fatalf("completion of handle %d, unknown or already complete", ev.Handle)
			}
			c.done[ev.Handle] = true
			delete(c.pubOpen, ev.PacketID)
		case session.EventSubscribed, session.EventUnsubscribed:
			if !c.reqOpen[ev.PacketID] {
				c.t.Fatalf("answer for request id %d not sent", ev.PacketID)
			}
			delete(c.reqOpen, ev.PacketID)
		case session.EventDropped:
			// A request cut by a disconnection (its packet may never have
			// been handed out), or a message abandoned.
			if c.handles[ev.Handle] {
				if c.done[ev.Handle] {
					c.t.Fatalf("handle %d dropped after it completed", ev.Handle)
				}
				c.done[ev.Handle] = true
				if ev.PacketID != 0 {
					delete(c.pubOpen, ev.PacketID)
				}
				continue
			}
			delete(c.reqOpen, ev.PacketID)
		}
	}
}

// sessionSeeds are fuzz programs that walk through the main flows.
func sessionSeeds() [][]byte {
	b := func(role byte, ops ...byte) []byte { return append([]byte{role | 0x16, 0}, ops...) }
	return [][]byte{
		// Client: connect, CONNACK, publish QoS 1 and 2, acks, resume.
		b(0, opConnect, 0, opDrain, 0, opRecvConnack, 0, opPublish, 1, opPublish, 2, opDrain, 0,
			opRecvPuback, 0x80, opRecvPubrec, 0x81, opDrain, 0, opRecvPubcomp, 0x80,
			opDisconnected, 0, opConnect, 0, opDrain, 0, opRecvConnack, 1),
		// Server: accept, incoming QoS 2 with duplicates, PUBREL, ping.
		b(1, opConnect, 2, opRecvPublish, 2, opRecvPublish, 0x22, opDrain, 0, opRecvPubrel, 0,
			opRecvOther, 0, opDrain, 0, opPublish, 2, opDrain, 0, opDisconnected, 0, opConnect, 2, opDrain, 0),
		// Client: subscribe, SUBACK, window full, keepalive.
		b(0, opConnect, 0x50, opRecvConnack, 0, opSubscribe, 1, opUnsubscribe, 0, opDrain, 0,
			opRecvSuback, 0x80, opRecvUnsuback, 0x81, opPublish, 1, opPublish, 1, opPublish, 1,
			opPublish, 1, opTickAck, 15, opTickAck, 15, opDrain, 0),
	}
}

// FuzzSessionPair joins a client and a server session by a link that the
// fuzzer controls: which side publishes (and at which QoS), which packet is
// delivered next, when a PUBLISH is duplicated and when the connection is
// cut. After the program, the link becomes reliable until every flow has
// completed; then every QoS 1 message must have been delivered at least
// once [MQTT-4.3.2-1], every QoS 2 message exactly once [MQTT-4.3.3-2],
// none twice at QoS 0, and first deliveries in publishing order
// [MQTT-4.6.0-1]. Throughout, each side answers the QoS 1 and 2 PUBLISH
// packets it receives on a connection once each, in the order they came
// [MQTT-4.6.0-2] [MQTT-4.6.0-3].
func FuzzSessionPair(f *testing.F) {
	f.Add([]byte{0x00, 0x01, 0x02, 0x10, 0x11, 0x20, 0x30, 0x21, 0x31, 0x40, 0x50, 0x20, 0x30, 0x21})
	f.Add([]byte{0x02, 0x02, 0x12, 0x20, 0x21, 0x60, 0x70, 0x20, 0x20, 0x31, 0x31, 0x40, 0x22, 0x32})
	f.Fuzz(func(t *testing.T, data []byte) { runSessionPair(t, data, false) })
}

// FuzzSessionPairAck is FuzzSessionPair with Config.ManualAck on both
// sides, and one more operation: the application acknowledges one of the
// messages it was given, in any order, connected or not. An Ack given
// while disconnected, or before the peer's resend came, answers the
// resend in its turn.
func FuzzSessionPairAck(f *testing.F) {
	f.Add([]byte{0x01, 0x02, 0x20, 0x20, 0x40, 0x60, 0x61, 0x50, 0x30, 0x20, 0x20, 0x30, 0x30})
	f.Add([]byte{0x01, 0x01, 0x02, 0x20, 0x20, 0x20, 0x60, 0x30, 0x40, 0x61, 0x50, 0x30, 0x20, 0x20, 0x62, 0x20})
	f.Fuzz(func(t *testing.T, data []byte) { runSessionPair(t, data, true) })
}

func runSessionPair(t *testing.T, data []byte, manualAck bool) {
	if len(data) > 400 {
		return
	}
	p := newSessionPair(t, manualAck)
	for _, b := range data {
		p.op(b)
	}
	p.settle()
	p.check(0)
	p.check(1)
}

type pairSide struct {
	s         *session.Session
	name      string
	qos       []byte         // QoS of each message published, by number
	delivered map[string]int // deliveries of the peer's messages
	order     []int          // numbers of first deliveries
	unacked   []session.Tag  // ManualAck: messages given and not acknowledged
	// unanswered holds the ids of the QoS 1 and 2 PUBLISH packets received
	// on this connection and not yet answered, in arrival order.
	unanswered []uint16
	extra      map[uint16]int // same-connection retransmissions of those
}

type sessionPairFuzz struct {
	t         *testing.T
	manualAck bool
	side      [2]*pairSide // 0 client, 1 server
	link      [2][][]byte  // 0: client to server
	up        bool
	conns     int
	now       time.Time
}

func newSessionPair(t *testing.T, manualAck bool) *sessionPairFuzz {
	p := &sessionPairFuzz{t: t, manualAck: manualAck, now: time.Unix(1e9, 0)}
	for i, role := range []session.Role{session.Client, session.Server} {
		s, err := session.New(session.Config{Role: role, MaxInflight: 3, MaxQueued: 4, ManualAck: manualAck})
		if err != nil {
			t.Fatal(err)
		}
		p.side[i] = &pairSide{s: s, name: "cs"[i : i+1], delivered: map[string]int{}, extra: map[uint16]int{}}
	}
	return p
}

func (p *sessionPairFuzz) op(b byte) {
	arg := b & 15
	switch b >> 4 % 8 {
	case 0, 1: // publish from side b>>4
		x := p.side[b>>4%2]
		qos := arg % 3
		payload := fmt.Sprintf("%s%d", x.name, len(x.qos))
		_, err := x.s.Publish(&packet.Publish{QoS: qos, Topic: []byte("t"), Payload: []byte(payload)})
		if err == nil {
			x.qos = append(x.qos, qos)
		} else if !errors.Is(err, session.ErrFull) && !errors.Is(err, session.ErrNotConnected) {
			p.t.Fatal(err)
		}
	case 2, 3: // deliver the next packet of a direction, duplicating a PUBLISH when arg says so
		p.flush()
		p.deliver(int(b>>4%2), arg&1 != 0)
	case 4:
		p.cut()
	case 5:
		if !p.up {
			p.connect()
		}
	case 6:
		if p.manualAck { // side arg&1 acknowledges a message of its own
			p.ack(p.side[arg&1], int(arg>>1))
		}
		p.flush()
	case 7: // as 6, after both sessions let go of their spare memory
		p.side[0].s.Shrink()
		p.side[1].s.Shrink()
		p.flush()
	default:
		p.flush()
	}
}

func (p *sessionPairFuzz) connect() {
	p.conns++
	if err := p.side[0].s.Connect(&packet.Connect{ClientID: []byte("pair")}, p.now); err != nil {
		p.t.Fatal(err)
	}
	p.up = true
}

// ack acknowledges x's i-th unacknowledged message (counting round).
func (p *sessionPairFuzz) ack(x *pairSide, i int) {
	if len(x.unacked) == 0 {
		return
	}
	i %= len(x.unacked)
	if err := x.s.Ack(x.unacked[i]); err != nil {
		p.t.Fatalf("%s Ack(%d): %v", x.name, x.unacked[i], err)
	}
	x.unacked = append(x.unacked[:i], x.unacked[i+1:]...)
}

func (p *sessionPairFuzz) cut() {
	p.link[0], p.link[1] = nil, nil
	for _, x := range p.side {
		x.unanswered = nil
		clear(x.extra)
	}
	p.side[0].s.Disconnected()
	p.side[1].s.Disconnected()
	p.up = false
}

func (p *sessionPairFuzz) flush() {
	for dir, x := range p.side {
		for {
			pk, err := x.s.Next(p.now)
			if err != nil {
				p.t.Fatal(err)
			}
			if pk == nil {
				break
			}
			b, err := pk.Append(nil)
			if err != nil {
				p.t.Fatalf("invalid packet %v: %v", pk, err)
			}
			p.answered(x, pk)
			p.link[dir] = append(p.link[dir], b)
		}
	}
}

func (p *sessionPairFuzz) deliver(dir int, dup bool) {
	if len(p.link[dir]) == 0 {
		return
	}
	b := p.link[dir][0]
	p.link[dir] = p.link[dir][1:]
	if dup && packet.Type(b[0]>>4) == packet.PUBLISH && b[0]&6 != 0 {
		d := append([]byte(nil), b...)
		d[0] |= 8 // a retransmission on the same connection
		p.link[dir] = append([][]byte{d}, p.link[dir]...)
	}
	pk, err := packet.Decode(b)
	if err != nil {
		p.t.Fatalf("undecodable % x: %v", b, err)
	}
	from, to := p.side[dir], p.side[1-dir]
	if pub, ok := pk.(*packet.Publish); ok && pub.QoS > 0 {
		if slices.Contains(to.unanswered, pub.PacketID) {
			// A retransmission on the same connection before the answer
			// (which MQTT servers do not do) may have an answer of its own,
			// or share the first one's.
			to.extra[pub.PacketID]++
		} else {
			to.unanswered = append(to.unanswered, pub.PacketID)
		}
	}
	if c, ok := pk.(*packet.Connect); ok {
		err = to.s.Accept(c, p.conns > 1, p.now)
	} else {
		err = to.s.Receive(pk, p.now)
	}
	if err != nil {
		p.t.Fatalf("%s Receive(%v): %v", to.name, pk, err)
	}
	for ev, ok := to.s.NextEvent(); ok; ev, ok = to.s.NextEvent() {
		if ev.Kind != session.EventMessage {
			continue
		}
		payload := string(ev.Publish.Payload)
		var n int
		fmt.Sscanf(payload[1:], "%d", &n)
		if n >= len(from.qos) || from.qos[n] != ev.Publish.QoS {
			p.t.Fatalf("delivered %s at QoS %d, not as published", payload, ev.Publish.QoS)
		}
		to.delivered[payload]++
		if to.delivered[payload] == 1 {
			to.order = append(to.order, n)
		}
		if p.manualAck && ev.Tag != 0 {
			to.unacked = append(to.unacked, ev.Tag)
		}
	}
}

// answered checks that an answer x sends is to the PUBLISH it received
// first among those of this connection it has not answered yet
// [MQTT-4.6.0-2] [MQTT-4.6.0-3].
func (p *sessionPairFuzz) answered(x *pairSide, pk packet.Packet) {
	var id uint16
	switch pk := pk.(type) {
	case *packet.Puback:
		id = pk.PacketID
	case *packet.Pubrec:
		id = pk.PacketID
	default:
		return
	}
	switch {
	case len(x.unanswered) > 0 && x.unanswered[0] == id:
		x.unanswered = x.unanswered[1:]
	case x.extra[id] > 0:
		x.extra[id]--
	default:
		p.t.Fatalf("%s sent %v, awaited answers %v", x.name, pk, x.unanswered)
	}
}

// settle runs a reliable link until every flow has completed.
func (p *sessionPairFuzz) settle() {
	for i := 0; ; i++ {
		if i > 1000 {
			p.t.Fatal("no progress on a reliable link")
		}
		if !p.up {
			p.connect()
		}
		for _, x := range p.side {
			for len(x.unacked) > 0 {
				p.ack(x, 0)
			}
		}
		p.flush()
		p.deliver(0, false)
		p.deliver(1, false)
		c, s := p.side[0].s, p.side[1].s
		if c.Connected() && s.Connected() && len(p.link[0])+len(p.link[1]) == 0 && !c.HasOutgoing() && !s.HasOutgoing() &&
			c.Inflight()+c.Queued()+s.Inflight()+s.Queued() == 0 {
			return
		}
	}
}

func (p *sessionPairFuzz) check(from int) {
	x, to := p.side[from], p.side[1-from]
	for n, qos := range x.qos {
		payload := fmt.Sprintf("%s%d", x.name, n)
		got := to.delivered[payload]
		if qos == 0 && got > 1 || qos == 1 && got < 1 || qos == 2 && got != 1 {
			p.t.Fatalf("QoS %d message %s delivered %d times", qos, payload, got)
		}
	}
	for i := 1; i < len(to.order); i++ {
		if to.order[i] <= to.order[i-1] {
			p.t.Fatalf("%s%d first delivered after %s%d", x.name, to.order[i], x.name, to.order[i-1])
		}
	}
}
