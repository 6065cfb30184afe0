package broker

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ternmq/mqtt/packet"
	"github.com/ternmq/mqtt/session"
	"github.com/ternmq/mqtt/store"
	"github.com/ternmq/mqtt/topic"
)

// durable is the Server's side of Options.Store: it restores the state at
// start, counts the writes, and syncs the store before any packet that
// depends on them leaves.
//
// The rule it keeps: the broker answers PUBACK or PUBREC to a publisher only
// once the message is durable for every persistent session it was queued for
// (and as retained when it is retained), SUBACK once the subscriptions are
// durable, and sends a PUBLISH or PUBREL to a subscriber only once the state
// they leave behind is durable, so that after a restart it resends a PUBREL,
// never the PUBLISH [MQTT-4.3.3-1].
//
// How: every write is counted (written) after it returns; a connection's
// writer, having taken its batch from the session, syncs the store up to
// the count its batch depends on, outside the session's lock, before it
// writes; the count synced is kept (synced) so that writers whose writes a
// sync has already covered do not sync again, and writers that need a sync
// at the same time share one (group commit). The session's own Sync, which
// it calls under the client's lock, therefore does nothing: an fsync never
// blocks the routers that deliver to that client. A publisher's reader holds
// its connection's gate from the moment the session queues the PUBACK until
// the message is routed, so that the writer cannot take the PUBACK before
// the writes it depends on are made.
//
// The session's Sync before it hands a QoS 2 message to the application
// (the broker's routing) is the one place where a Sync does not do: the
// incoming packet id says that the message was routed, so it must not be
// durable before the copies routed to the persistent sessions are, or a
// crash in between would lose them (the publisher's resend would be taken
// for a duplicate). The broker therefore writes it after the routing
// (storedSession.SaveIncoming holds it), and relies on the store keeping,
// after a crash, the writes made before some instant (a log does). The
// routed copies and the packet id are then written inside one group of the
// store's (store.Store.Begin), which a crash keeps whole or not at all: a
// crash can no longer keep some copies without the packet id, whose resend
// would be routed again, a duplicate for the sessions whose copy was kept.
// The broker calls one Sync at a time (the others wait, and most find their
// writes synced when their turn comes: group commit).
type durable struct {
	st      store.Store
	log     *slog.Logger
	expiry  time.Duration
	syncMu  sync.Mutex    // held by the one caller of the store's Sync
	written atomic.Uint64 // writes returned so far, failed ones too
	synced  atomic.Uint64 // writes known durable
	failed  atomic.Pointer[error]
	expired atomic.Int64

	once    sync.Once
	loadErr error
	stop    chan struct{} // closed by Shutdown and Close: ends the expiry loop
	stopped sync.Once
}

// errStoreFailed wraps the first error of the store: from then on nothing
// that depends on the store is acknowledged.
var errStoreFailed = errors.New("broker: store failed")

func newDurable(opts *Options, log *slog.Logger) *durable {
	return &durable{st: opts.Store, log: log, expiry: opts.SessionExpiry, stop: make(chan struct{})}
}

// fail records the store's first error. A store that failed a write may
// have lost it, and what it had not synced: from then on nothing is
// synced, so that no packet that depends on a write made after the last
// Sync leaves (its writer fails, which closes its connection) and nothing
// acknowledged is lost. The rest goes on: clean sessions depend on no
// write; persistent sessions are refused (CONNACK 0x03).
func (d *durable) fail(err error) error {
	err = fmt.Errorf("%w: %w", errStoreFailed, err)
	if d.failed.CompareAndSwap(nil, &err) {
		d.log.Error("store failed: nothing that depends on it is acknowledged or sent from now on, persistent sessions are refused", "err", err)
	}
	return *d.failed.Load()
}

func (d *durable) err() error {
	if p := d.failed.Load(); p != nil {
		return *p
	}
	return nil
}

// wrote counts a write that returned err and returns its number. A
// failed write gets a number too, which is never synced: whatever depends
// on it never leaves.
func (d *durable) wrote(err error) (uint64, error) {
	if err != nil {
		err = d.fail(err) // before the number, for syncTo
	}
	return d.written.Add(1), err
}

// syncTo makes the writes up to number n durable. Without a store, or with
// n synced already, it costs a load or two; after the store failed, it
// fails for any write not synced before.
func (d *durable) syncTo(n uint64) error {
	if d.st == nil || d.synced.Load() >= n {
		return nil
	}
	if err := d.err(); err != nil {
		return err
	}
	d.syncMu.Lock()
	defer d.syncMu.Unlock()
	if d.synced.Load() >= n {
		return nil // synced by the caller before
	}
	upTo := d.written.Load() // a Sync covers every write returned before it
	if err := d.st.Sync(); err != nil {
		return d.fail(err)
	}
	// A write that failed while Sync ran may be numbered upTo or below.
	if err := d.err(); err != nil {
		return err
	}
	d.synced.Store(upTo) // only the holder of syncMu stores
	return nil
}

// syncAll makes every write so far durable.
func (d *durable) syncAll() error {
	if d.st == nil {
		return nil
	}
	return d.syncTo(d.written.Load())
}

// storedSession is the store.Session of a persistent client as its
// session.Session sees it: writes are counted, Sync is left to the writer
// (see durable), and once the session is deleted, writes do nothing.
// Every method is called with the client's mu held.
type storedSession struct {
	d       *durable
	st      store.Session
	last    atomic.Uint64 // number of this session's last write
	deleted bool
	// incoming holds the SaveIncoming calls of the packet the reader is
	// handling, written once its message is routed (see durable).
	incoming []session.Incoming
}

func (s *storedSession) wrote(err error) error {
	n, err := s.d.wrote(err)
	s.last.Store(n) // a failed write too: the session's packets wait for it forever
	return err
}

func (s *storedSession) Load(msg func(*session.Message) error, in func(session.Incoming) error) (session.Handle, session.Tag, error) {
	return s.st.Load(msg, in)
}

func (s *storedSession) SaveMessage(m *session.Message) error {
	if s.deleted {
		return nil
	}
	return s.wrote(s.st.SaveMessage(m))
}

func (s *storedSession) UpdateMessage(h session.Handle, id uint16, st session.State) error {
	if s.deleted {
		return nil
	}
	return s.wrote(s.st.UpdateMessage(h, id, st))
}

func (s *storedSession) DeleteMessage(h session.Handle) error {
	if s.deleted {
		return nil
	}
	return s.wrote(s.st.DeleteMessage(h))
}

func (s *storedSession) SaveIncoming(in session.Incoming) error {
	if s.deleted {
		return nil
	}
	if err := s.d.err(); err != nil {
		return err
	}
	s.incoming = append(s.incoming, in)
	return nil
}

// writeIncoming writes the SaveIncoming calls held. cl.mu is held.
func (s *storedSession) writeIncoming() {
	for _, in := range s.incoming {
		if !s.deleted {
			s.wrote(s.st.SaveIncoming(in))
		}
	}
	s.incoming = s.incoming[:0]
}

func (s *storedSession) DeleteIncoming(id uint16) error {
	if s.deleted {
		return nil
	}
	return s.wrote(s.st.DeleteIncoming(id))
}

func (s *storedSession) Clear() error {
	if s.deleted {
		return nil
	}
	return s.wrote(s.st.Clear())
}

func (s *storedSession) SaveMarks(h session.Handle, t session.Tag) error {
	if s.deleted {
		return nil
	}
	return s.wrote(s.st.SaveMarks(h, t))
}

// Sync does nothing but report a failed store: the connection's writer
// syncs, outside the client's lock, before it writes (see durable).
func (s *storedSession) Sync() error { return s.d.err() }

// live returns cl's stored session unless it is deleted, or nil. cl.mu is
// held.
func (cl *client) live() *storedSession {
	if ss := cl.stored; ss != nil && !ss.deleted {
		return ss
	}
	return nil
}

// delete removes the session from the store; later writes do nothing.
func (s *storedSession) delete() {
	if s.deleted {
		return
	}
	s.deleted = true
	s.wrote(s.st.Delete())
}

// newSession returns a new client for id: with a stored session when the
// Server has a store and the session is persistent. Clean sessions are
// never written. s.mu is held.
func (s *Server) newSession(id string, clean bool) (*client, error) {
	d := s.dur
	if d.st == nil || clean {
		return newClient(s, id, nil)
	}
	if err := d.err(); err != nil {
		return nil, err
	}
	st, err := d.st.Session(id)
	if err != nil {
		return nil, d.fail(err)
	}
	ss := &storedSession{d: d, st: st}
	cl, err := newClient(s, id, ss)
	if err != nil {
		return nil, err
	}
	cl.stored = ss
	return cl, nil
}

// attached records that cl (persistent, or clean when ending a kept
// session) is served by a connection again. cl.mu is held.
func (s *Server) attached(cl *client, clean bool) error {
	cl.away = false
	ss := cl.live()
	if ss == nil {
		return nil
	}
	if clean {
		// A clean connection ends the kept session [MQTT-3.1.2-6]:
		// deleted now, so that a crash during the clean connection does
		// not bring it back. The session goes on in memory; cl.stored
		// stays, so that the CONNACK waits for the deletion to be
		// durable.
		ss.delete()
		return ss.d.err()
	}
	if err := ss.d.err(); err != nil {
		return err
	}
	return ss.wrote(ss.st.Connected())
}

// detached records that the connection serving the persistent session cl
// ended at now, for the expiry of abandoned sessions. cl.mu is held.
func (s *Server) detached(cl *client, now time.Time) {
	cl.since, cl.away = now.Sub(s.sys.start), true
	if ss := cl.live(); ss != nil {
		ss.wrote(ss.st.Disconnected(now))
	}
}

// storeSubscribe and storeUnsubscribe write a subscription change of a
// persistent session; cl.mu is held.
func (s *Server) storeSubscribe(cl *client, filter string, qos byte) error {
	if ss := cl.live(); ss != nil {
		return ss.wrote(ss.st.Subscribe(filter, qos))
	}
	return nil
}

func (s *Server) storeUnsubscribe(cl *client, filter string) {
	if ss := cl.live(); ss != nil {
		ss.wrote(ss.st.Unsubscribe(filter))
	}
}

// storeRetained writes a retained message, or its removal.
func (s *Server) storeRetained(p *packet.Publish) {
	d := s.dur
	if d.st == nil {
		return
	}
	if len(p.Payload) == 0 {
		d.wrote(d.st.DeleteRetained(p.Topic))
		return
	}
	d.wrote(d.st.SetRetained(&store.Retained{Topic: p.Topic, Payload: p.Payload, QoS: p.QoS}))
}

// ready restores the stored state, once, before the Server serves or
// publishes anything; it returns the error of that restore.
func (d *durable) ready(s *Server) error {
	d.once.Do(func() {
		if d.st != nil {
			d.loadErr = d.restore(s)
		}
		if d.loadErr == nil && d.expiry > 0 {
			s.mu.Lock()
			if !s.closing {
				s.wg.Add(1)
				go d.expireLoop(s)
			}
			s.mu.Unlock()
		}
	})
	return d.loadErr
}

// restore loads the persistent sessions (their subscriptions into the tree;
// their messages and incoming QoS 2 exchanges into session.New) and the
// retained messages. Sessions abandoned for longer than the expiry are
// deleted instead.
func (d *durable) restore(s *Server) error {
	type stored struct {
		id       string
		subs     []store.Subscription
		lastSeen time.Time
	}
	var sessions []stored
	err := d.st.Load(func(id string, subs []store.Subscription, lastSeen time.Time) error {
		sessions = append(sessions, stored{id, slices.Clone(subs), lastSeen})
		return nil
	}, func(r *store.Retained) error {
		if err := topic.ValidName(r.Topic); err != nil || r.QoS > 2 || len(r.Payload) == 0 {
			return fmt.Errorf("broker: stored retained message on %q is not valid", r.Topic)
		}
		m := newRetainedMsg(r.Topic, r.Payload, r.QoS)
		s.retained.Set(string(m.topic()), m)
		return nil
	})
	if err != nil {
		return fmt.Errorf("broker: loading the store: %w", err)
	}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ss := range sessions {
		st, err := d.st.Session(ss.id)
		if err != nil {
			return fmt.Errorf("broker: loading session %q: %w", ss.id, err)
		}
		if s.bridgeSession(ss.id, st) {
			continue // a bridge's outgoing queue, not a client's session
		}
		if d.expiry > 0 && !ss.lastSeen.IsZero() && now.Sub(ss.lastSeen) >= d.expiry {
			if _, err := d.wrote(st.Delete()); err != nil {
				return err
			}
			d.expired.Add(1)
			continue
		}
		cl, err := s.newStored(ss.id, st)
		if err != nil {
			return fmt.Errorf("broker: loading session %q: %w", ss.id, err)
		}
		for _, sb := range ss.subs {
			if sb.QoS > 2 || s.subs.Add(sb.Filter, sub{cl, sb.QoS}) != nil {
				return fmt.Errorf("broker: session %q: stored subscription %q QoS %d is not valid", ss.id, sb.Filter, sb.QoS)
			}
			cl.subs.set(sb.Filter, sb.QoS)
		}
		cl.nsub.Store(int32(cl.subs.len()))
		s.traffic.subs.Add(int64(cl.subs.len()))
		seen := ss.lastSeen
		if seen.IsZero() {
			// Connected when the broker stopped: abandoned from now.
			seen = now
			if _, err := d.wrote(st.Disconnected(now)); err != nil {
				return err
			}
		}
		cl.since, cl.away = seen.Sub(s.sys.start), true
		s.clients[ss.id] = cl
	}
	return d.syncAll()
}

// newStored makes the client of a stored session.
func (s *Server) newStored(id string, st store.Session) (*client, error) {
	ss := &storedSession{d: s.dur, st: st}
	cl, err := newClient(s, id, ss)
	if err != nil {
		return nil, err
	}
	cl.stored = ss
	cl.info = &Client{ID: id} // for events about it before it connects
	return cl, nil
}

// expireLoop deletes the persistent sessions whose connection ended more
// than the expiry ago, until the Server closes.
func (d *durable) expireLoop(s *Server) {
	defer s.wg.Done()
	t := time.NewTicker(min(max(d.expiry/4, 10*time.Millisecond), time.Minute))
	defer t.Stop()
	for {
		select {
		case <-d.stop:
			return
		case now := <-t.C:
			s.expire(now)
		}
	}
}

// expire deletes the persistent sessions abandoned for longer than the
// expiry at now: their subscriptions, their messages, their stored state.
func (s *Server) expire(now time.Time) {
	d := s.dur
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, cl := range s.clients {
		cl.mu.Lock()
		if cl.conn == nil && cl.away && now.Sub(s.sys.start)-cl.since >= d.expiry {
			delete(s.clients, id)
			s.removeAllSubs(cl)
			if ss := cl.live(); ss != nil {
				ss.delete()
			}
			d.expired.Add(1)
			s.log.Debug("session expired", "client", id, "offline since", s.sys.start.Add(cl.since))
		}
		cl.mu.Unlock()
	}
}

// close ends the expiry loop; Shutdown and Close call it.
func (d *durable) close() {
	d.stopped.Do(func() { close(d.stop) })
}

// ackGate keeps a connection's writer from taking the acknowledgement of a
// PUBLISH before the message is routed (see durable). It is used only with a
// store, and made only then: a connection without one stays smaller.
type ackGate struct {
	mu      sync.Mutex
	held    bool          // by the reader; read and written by the reader only
	grouped bool          // a QoS 2 PUBLISH is handled in group
	group   store.Group   // its group of writes
	before  uint64        // writes made when the reader took its packet; reader only
	seq     atomic.Uint64 // writes made when the last packet that made any was handled
}

// holdAcks is called by the reader before it gives packet p to the
// session. A QoS 2 PUBLISH is handled in a group of the store's (see
// durable): its copies and its packet identifier are kept whole or not at
// all by a crash.
func (c *conn) holdAcks(p packet.Packet) {
	if st := c.srv.dur.st; st != nil {
		if pub, ok := p.(*packet.Publish); ok && pub.QoS == 2 {
			c.gate.group, c.gate.grouped = st.Begin(), true
		}
		c.gate.mu.Lock()
		c.gate.held = true
		c.gate.before = c.srv.dur.written.Load()
	}
}

// releaseAcks is called by the reader once the packet's events are handled.
func (c *conn) releaseAcks() {
	if c.gate != nil && c.gate.held {
		if cl := c.cl; cl.stored != nil && len(cl.stored.incoming) > 0 {
			cl.mu.Lock()
			cl.stored.writeIncoming()
			cl.mu.Unlock()
		}
		if c.gate.grouped {
			c.srv.dur.st.End(c.gate.group)
			c.gate.grouped = false
		}
		// A packet during which nothing was written (a QoS 0
		// message for clean sessions, a PINGREQ) adds no dependency:
		// after a failed write elsewhere, its answers still leave.
		if w := c.srv.dur.written.Load(); w != c.gate.before {
			c.gate.seq.Store(w)
		}
		c.gate.held = false
		c.gate.mu.Unlock()
	}
}

// lockOut and unlockOut lock the session for the writer, and keep the
// reader from queueing an acknowledgement meanwhile.
func (c *conn) lockOut() {
	if c.srv.dur.st != nil {
		c.gate.mu.Lock()
	}
	c.cl.mu.Lock()
}

func (c *conn) unlockOut() {
	c.cl.mu.Unlock()
	if c.srv.dur.st != nil {
		c.gate.mu.Unlock()
	}
}

// syncMark returns the number of the last write that the packets the writer
// just took depend on. Called with lockOut held.
func (c *conn) syncMark() uint64 {
	var n uint64
	if c.gate != nil {
		n = c.gate.seq.Load()
	}
	if ss := c.cl.stored; ss != nil {
		n = max(n, ss.last.Load())
	}
	return n
}
