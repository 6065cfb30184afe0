package broker

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ternmq/mqtt/internal/pace"
	"github.com/ternmq/mqtt/internal/rawio"
	"github.com/ternmq/mqtt/packet"
	"github.com/ternmq/mqtt/session"
	"github.com/ternmq/mqtt/topic"
)

// sub is the value the subscription tree holds: a client and the QoS granted
// to it for one filter.
type sub struct {
	c   *client
	qos byte
}

// client is the session of one client identifier: its session state machine,
// its subscriptions, and the connection that serves it, if any. It outlives
// its connections when the client asked for a persistent session.
type client struct {
	id string

	mu    sync.Mutex
	sess  *session.Session
	conn  *conn           // the connection serving the session; nil while offline
	subs  subscriptionSet // filter -> granted QoS, mirrored in Server.subs
	info  *Client         // of the last connection, for EventDrop
	drops atomic.Int64    // messages dropped because the queue was full
	nsub  atomic.Int32    // len(subs), read by routers without mu
	on    atomic.Bool     // conn != nil, read by routers without mu
	// bridge: served by a connection with the bridge mark, RETAIN as
	// published. Next to on, where the struct has room.
	bridge atomic.Bool
	// away is set while the persistent session has no connection, since
	// when its last one ended (a time.Duration since the Server started,
	// to keep the client small: 8 bytes, not time.Time's 24), for
	// Options.SessionExpiry.
	away  bool
	since time.Duration
	// stored is the session's durable state with Options.Store, nil for
	// clean sessions.
	stored *storedSession
	sink   *bridge // a bridge's local subscriber: messages go to the bridge, sess is nil
	// ret: retained messages matched by a SUBSCRIBE, waiting for room in
	// sess's queue; nil when none wait.
	ret *retainedBacklog
}

func newClient(s *Server, id string, st session.Store) (*client, error) {
	sess, err := session.New(session.Config{
		Role:           session.Server,
		MaxInflight:    s.opts.MaxInflight,
		MaxQueued:      s.sessionQueued(),
		MaxQueuedBytes: s.opts.MaxQueuedBytes,
		Store:          st,
	})
	if err != nil {
		return nil, err
	}
	return &client{id: id, sess: sess}, nil
}

// MaxTopicLevels is the most levels a topic name or filter may have in the
// broker, as in mosquitto: a SUBSCRIBE to a deeper filter gets the failure
// code for it, and a PUBLISH or will to a deeper topic closes the
// connection. The subscription tree and the retained messages keep a node
// per level, so that without a bound one packet of 64 KiB filters (32,767
// levels each) made the broker hold 50 times its size.
const MaxTopicLevels = 200

var errTooDeep = fmt.Errorf("broker: topic of more than %d levels", MaxTopicLevels)

// tooDeep reports whether a topic name or filter has more than
// MaxTopicLevels levels.
func tooDeep(t []byte) bool {
	return len(t) >= MaxTopicLevels && bytes.Count(t, slash) >= MaxTopicLevels
}

var slash = []byte{'/'}

// retainedMsg is a retained message as the Server keeps it: one buffer,
// never modified, which the sessions it is sent to share (see
// session.PublishShared).
type retainedMsg struct {
	buf []byte // the topic, then the payload
	n   int    // the topic's length
	qos byte
}

func newRetainedMsg(topic, payload []byte, qos byte) *retainedMsg {
	buf := make([]byte, len(topic)+len(payload))
	n := copy(buf, topic)
	copy(buf[n:], payload)
	return &retainedMsg{buf: buf, n: n, qos: qos}
}

func (m *retainedMsg) topic() []byte   { return m.buf[:m.n:m.n] }
func (m *retainedMsg) payload() []byte { return m.buf[m.n:] }

// router holds the scratch slices of routing, reused from message to message
// so that routing does not allocate.
type router struct {
	subs   []sub
	groups []topic.Group[sub]
	rets   []*retainedMsg
	out    packet.Publish
	wakes  []*conn // writers to wake at the end of the batch

	// A connection's reader keeps its other scratch here too, so that a
	// parked connection holds none of it.
	idle    [64]byte // where an idle connection's next bytes land
	pending []byte   // bytes read into idle, not yet taken by the packet reader
	readErr error    // the error that came with the pending bytes
	// lingering: the read deadline is the end of a linger (see linger),
	// not the keepalive's; lingered: the last linger ended without bytes.
	lingering, lingered bool
	lingerUntil         time.Time       // the end of the linger under way
	evs                 []session.Event // events of the packet being handled
	codes               []byte          // SUBACK return codes

	// The read pacer of the connection (see Options.BatchDelay), made
	// when it first reads with this router, and what its packets since
	// the last read from the network were.
	pace      pace.Reader
	paceOn    bool
	paceBatch pace.Batch // what the last read from the network brought
	// readAcks: waits in a row that ran out with less than two
	// acknowledgements come, and the reads still to make without waiting
	// after the last one.
	ackMisses, ackSkip int
	raw                rawio.Reader

	// src is the message being routed, for bridges (RETAIN as published).
	src *packet.Publish
	// share: the message being routed is large enough that its sessions
	// hold one copy of it, shared (made when first needed) rather than one
	// each (see shareMin).
	share  bool
	shared []byte
	// noLocal is the publisher's session when it is a bridge's: a bridge's
	// own messages are not sent back to it, as mosquitto does.
	noLocal *client
}

// later records that c's writer has something to send. Writers are woken
// when the reader is about to wait for the network (flushWakes), not after
// every message: a writer woken once sends the whole batch with one write,
// and a busy broker switches goroutines per batch rather than per message.
func (r *router) later(c *conn) {
	if !c.wakePending.Load() && c.wakePending.CompareAndSwap(false, true) {
		r.wakes = append(r.wakes, c)
	}
}

// flushWakes wakes the writers recorded by later. The writer of self, the
// connection whose reader calls (nil for none), runs on the caller's
// goroutine, after the others are woken: the reader is about to wait for the
// network anyway, and a goroutine started per batch of acknowledgements costs
// more than the write itself.
func (r *router) flushWakes(self *conn) {
	here := false
	for _, c := range r.wakes {
		c.wakePending.Store(false)
		if c == self {
			here = true
			continue
		}
		c.wake()
	}
	clear(r.wakes)
	r.wakes = r.wakes[:0]
	if here {
		self.writeHere()
	}
}

var routerPool = sync.Pool{New: func() any { return new(router) }}

func getRouter() *router { return routerPool.Get().(*router) }
func putRouter(r *router) {
	r.paceOn, r.paceBatch = false, pace.Batch{}
	r.ackMisses, r.ackSkip = 0, 0
	routerPool.Put(r)
}

// route stores p if it is retained and hands it to the session of every
// client with a matching subscription [MQTT-4.5.0-1], once per client at the
// highest QoS of its matching subscriptions [MQTT-3.3.5-1], downgraded to
// that QoS [MQTT-3.8.4-6], with RETAIN cleared [MQTT-3.3.1-9], and to one
// member of each matching shared subscription group. It returns the number of
// sessions that took the message. The caller calls flushWakes after it.
func (r *router) route(s *Server, p *packet.Publish) int {
	if p.Retain {
		s.retain(p)
	}
	r.subs = s.subs.Match(p.Topic, r.subs[:0])
	// Duplicates come only from clients with several subscriptions;
	// checking first spares the merge in the common case.
	for _, sb := range r.subs {
		if sb.c.nsub.Load() > 1 {
			r.subs = topic.Dedupe(r.subs,
				func(sb sub) *client { return sb.c },
				func(a, b sub) sub { a.qos = max(a.qos, b.qos); return a })
			break
		}
	}
	out := &r.out
	*out = packet.Publish{Topic: p.Topic, Payload: p.Payload}
	r.src = p
	r.share = len(p.Payload) >= shareMin
	n := 0
	for _, sb := range r.subs {
		if !r.mayTake(s, sb) {
			continue
		}
		r.shape(out, sb)
		if s.deliver(r, sb.c, out) {
			n++
		}
	}
	clear(r.subs) // drop the client pointers until the next message
	r.groups = s.subs.MatchShared(p.Topic, r.groups[:0])
	for _, g := range r.groups {
		sb, ok := r.pickMember(s, g)
		if !ok {
			continue // no member may take it
		}
		r.shape(out, sb)
		if s.deliverShared(r, g, sb, out) {
			n++
		}
	}
	clear(r.groups)
	*out = packet.Publish{}
	r.src = nil
	r.share, r.shared = false, nil // the sessions keep it
	if n > 0 {
		s.delivered.Add(int64(n))
	}
	return n
}

// mayTake reports whether sb may get the message being routed: it is not
// the bridge that brought it (noLocal), and may read it.
func (r *router) mayTake(s *Server, sb sub) bool {
	return sb.c != r.noLocal && (s.opts.AuthorizeRead == nil || sb.c.sink != nil || s.mayRead(sb.c, r.src.Topic))
}

// shape sets q's QoS and RETAIN for sb: the lower of the published QoS and
// sb's [MQTT-3.8.4-6]; RETAIN 0 [MQTT-3.3.1-9], except to bridges, which get
// it as published (mosquitto's retain-as-published for bridges).
func (r *router) shape(q *packet.Publish, sb sub) {
	q.QoS = min(r.src.QoS, sb.qos)
	q.Retain = r.src.Retain && sb.c.bridge.Load()
}

// pickMember takes the group's members in turn, skipping those that may not
// take the message being routed (mosquitto gives such a member its turn, and
// the group loses the message) and those whose client is not connected,
// unless none that may take it is. It reports false when no member may.
// With none connected, the first that may take it gets it, and the turn
// moves on past it, so that the members' persistent sessions share the
// messages queued while they are away.
func (r *router) pickMember(s *Server, g topic.Group[sub]) (sub, bool) {
	var away sub
	at := -1
	for i := range len(g.Members) {
		m := g.Pick()
		if !r.mayTake(s, m) {
			continue
		}
		if m.c.on.Load() {
			return m, true
		}
		if at < 0 {
			away, at = m, i
		}
	}
	// A full round brought the turn back to where it started.
	for range at + 1 {
		g.Pick()
	}
	return away, at >= 0
}

// deliverShared delivers p to sb, the member of group g chosen for it; if
// sb's session is full, to the next connected member of the group that has
// room, in turn (p shaped for sb, the copy for another member). Only when every one is
// full is p dropped, counted against sb.
func (s *Server) deliverShared(r *router, g topic.Group[sub], sb sub, p *packet.Publish) bool {
	if sb.c.sink != nil {
		return sb.c.sink.forward(r, p)
	}
	err := s.offer(r, sb.c, p)
	for range len(g.Members) - 1 {
		if !errors.Is(err, session.ErrFull) {
			break
		}
		m := g.Pick()
		if m.c == sb.c || m.c.sink != nil || !m.c.on.Load() || !r.mayTake(s, m) {
			continue
		}
		q := *p
		r.shape(&q, m)
		err = s.offer(r, m.c, &q)
	}
	return s.took(sb.c, p, err)
}

// deliver hands p to cl's session and records its writer in r for waking.
// The session copies the message; a full session drops it, counted.
func (s *Server) deliver(r *router, cl *client, p *packet.Publish) bool {
	if cl.sink != nil {
		return cl.sink.forward(r, p)
	}
	return s.took(cl, p, s.offer(r, cl, p))
}

// shareMin is the least payload that the sessions of the subscribers of a
// QoS 1 or 2 message share, held once rather than copied into each: a large
// message to many subscribers who do not acknowledge it at once (in flight
// and queued for each) made the broker hold it once per session, 4 times
// mosquitto's memory for 8 MiB messages to 5 subscribers. Below it a copy
// per session costs less than an allocation per message.
const shareMin = 16 << 10

// publish hands p to cl's session, shared with the other sessions if it is
// large (see shareMin). cl.mu is held.
func (r *router) publish(cl *client, p *packet.Publish) (session.Handle, error) {
	if !r.share || p.QoS == 0 {
		return cl.sess.Publish(p)
	}
	if r.shared == nil {
		r.shared = make([]byte, len(p.Topic)+len(p.Payload))
		copy(r.shared[copy(r.shared, p.Topic):], p.Payload)
	}
	q := *p
	q.Topic, q.Payload = r.shared[:len(p.Topic)], r.shared[len(p.Topic):]
	return cl.sess.PublishShared(&q, r.shared)
}

// took reports whether offer's err means the message was taken, and
// counts a drop for a full session.
func (s *Server) took(cl *client, p *packet.Publish, err error) bool {
	if err == nil {
		return true
	}
	if errors.Is(err, session.ErrFull) {
		cl.mu.Lock()
		info := cl.info
		cl.mu.Unlock()
		s.drop(cl, info, p)
	}
	// ErrNotConnected: a QoS 0 message for an offline persistent session,
	// which the specification lets the server discard.
	return false
}

// offer hands p to cl's session, and records its writer in r for waking if
// it has something to send.
func (s *Server) offer(r *router, cl *client, p *packet.Publish) error {
	cl.mu.Lock()
	var err error
	if cl.conn == nil && p.QoS > 0 && cl.sess.Queued() >= s.awayQueued() {
		err = session.ErrFull // the bound of a client that is away
	} else {
		_, err = r.publish(cl, p)
		if err == nil && cl.ret != nil {
			cl.ret.forget(p.Topic)
		}
	}
	c := cl.conn
	// A message that only joins the queue, behind a full window of
	// messages in flight, gives the writer nothing to send yet.
	out := cl.sess.HasOutgoing()
	cl.mu.Unlock()
	if err == nil && c != nil && out {
		r.later(c)
	}
	return err
}

func (s *Server) drop(cl *client, info *Client, p *packet.Publish) {
	s.countDrop(cl, p)
	if s.opts.OnEvent != nil {
		s.emit(&Event{Kind: EventDrop, Client: info, Topic: p.Topic, QoS: p.QoS, Retain: p.Retain, PayloadSize: len(p.Payload)})
	}
}

// retain stores p as its topic's retained message [MQTT-3.3.1-5], replacing
// the previous one [MQTT-3.3.1-7], or clears it when the payload is empty
// [MQTT-3.3.1-10] [MQTT-3.3.1-11]. Retained messages are kept apart from
// sessions and outlive them [MQTT-3.1.2-7].
func (s *Server) retain(p *packet.Publish) {
	s.storeRetained(p)
	if len(p.Payload) == 0 {
		s.retained.Delete(string(p.Topic))
		return
	}
	m := newRetainedMsg(p.Topic, p.Payload, p.QoS)
	s.retained.Set(string(m.topic()), m) // the name is valid: the codec checked it
}

// sendRetained hands cl's session the retained messages matching filter, with
// RETAIN set [MQTT-3.3.1-6] [MQTT-3.3.1-8], at most at QoS granted, those
// info may read (Options.AuthorizeRead); those its queue has no room for
// wait in its backlog. cl.mu is not held.
func (s *Server) sendRetained(cl *client, info *Client, r *router, filter string, granted byte) {
	r.rets = s.retained.Match(filter, r.rets[:0])
	if len(filter) > 0 && filter[0] == '$' {
		r.rets = s.sys.retained.Match(filter, r.rets) // [MQTT-4.7.2-1]: only "$..." filters
	}
	if s.opts.AuthorizeRead != nil {
		r.rets = s.readable(info, r.rets)
	}
	cl.mu.Lock()
	// dropped is allocated only when the backlog is full too: rare.
	dropped := s.backlogRetained(cl, r.rets, granted, nil)
	cl.mu.Unlock()
	if s.opts.OnEvent != nil {
		// After cl.mu: the callback may call into the Server.
		for _, i := range dropped {
			m := r.rets[i]
			s.emit(&Event{Kind: EventDrop, Client: info, Topic: m.topic(), QoS: min(m.qos, granted), Retain: true, PayloadSize: len(m.payload())})
		}
	}
	clear(r.rets)
}

// addSub records cl's subscription to filter at qos, replacing one to the
// same filter [MQTT-3.8.4-3]. The new pair enters the tree before the old one
// leaves, so the flow of messages is not interrupted; meanwhile a message
// matches both and is delivered once at the higher QoS. cl.mu is held.
func (s *Server) addSub(cl *client, filter []byte, qos byte) error {
	old, had := cl.subs.get(filter)
	if had && old == qos {
		return nil
	}
	f := string(filter)
	if err := s.storeSubscribe(cl, f, qos); err != nil {
		return err
	}
	if err := s.subs.Add(f, sub{cl, qos}); err != nil {
		return err
	}
	if had {
		s.subs.Remove(f, sub{cl, old})
	} else {
		s.traffic.subs.Add(1)
	}
	cl.subs.set(f, qos)
	cl.nsub.Store(int32(cl.subs.len()))
	if had && cl.ret != nil {
		cl.ret.regrant(&cl.subs)
	}
	return nil
}

// removeSub deletes cl's subscription to filter, compared literally
// [MQTT-3.10.4-1]; no new message is added for it afterwards
// [MQTT-3.10.4-2]. cl.mu is held.
func (s *Server) removeSub(cl *client, filter []byte) {
	qos, ok := cl.subs.get(filter)
	if !ok {
		return
	}
	f := string(filter)
	s.storeUnsubscribe(cl, f)
	s.subs.Remove(f, sub{cl, qos})
	cl.subs.del(f)
	s.traffic.subs.Add(-1)
	cl.nsub.Store(int32(cl.subs.len()))
	if cl.ret != nil {
		cl.ret.regrant(&cl.subs)
	}
}

// removeAllSubs deletes every subscription of cl. cl.mu is held.
func (s *Server) removeAllSubs(cl *client) {
	cl.subs.each(func(f string, qos byte) {
		s.subs.Remove(f, sub{cl, qos})
	})
	s.traffic.subs.Add(-int64(cl.subs.len()))
	cl.subs.clear()
	cl.nsub.Store(0)
	cl.ret = nil
}
