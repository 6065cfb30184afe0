package broker

import (
	"context"
	"net"
	"strings"
	"sync"

	"github.com/ternmq/mqtt/packet"
	"github.com/ternmq/mqtt/session"
	"github.com/ternmq/mqtt/store"
)

// bridgeStore returns the session store of bridge name's client: in the
// Server's store as session "$bridge/NAME", or nil (in memory) without one.
func (s *Server) bridgeStore(name string) (*bridgeSession, error) {
	d := s.dur
	if d.st == nil {
		return nil, nil
	}
	id := bridgeIDPrefix + name
	s.mu.Lock()
	st := s.bridgeStores[id]
	delete(s.bridgeStores, id)
	s.mu.Unlock()
	if st == nil {
		var err error
		if st, err = d.st.Session(id); err != nil {
			return nil, d.fail(err)
		}
	}
	return &bridgeSession{storedSession: &storedSession{d: d, st: st}}, nil
}

// reservedID reports whether a client may not use id: with a store, the
// ids of bridges' queues are kept for them.
func (s *Server) reservedID(id string) bool {
	return s.dur.st != nil && strings.HasPrefix(id, bridgeIDPrefix)
}

// bridgeIDPrefix starts the store's session id of a bridge's queue.
const bridgeIDPrefix = "$bridge/"

// bridgeSession is a bridge's client session in the Server's store. Its
// writes are counted like a client session's, so that a local publisher's
// acknowledgement waits until the message is durable in the bridge's
// queue. Its Sync, which the bridge's client calls under its lock, does
// nothing, as a client session's: the client writes to the remote broker
// through a syncedConn, which syncs first, outside that lock.
//
// An incoming QoS 2 exchange is written only once its message is published
// locally, with the local copies (published), and marked acknowledged: a
// resend after a crash is then answered, not published again; a crash
// before leaves neither, and the resend is published. (Written before, as
// the client's session asks, a crash in between would lose the message.)
type bridgeSession struct {
	*storedSession

	mu   sync.Mutex
	held []session.Incoming // exchanges of messages not yet published, in arrival order
}

// SaveIncoming holds the exchange until published.
func (b *bridgeSession) SaveIncoming(in session.Incoming) error {
	if err := b.d.err(); err != nil {
		return err
	}
	if in.Acked {
		// The client's Ack of an exchange held or written already: each
		// is written acknowledged (see published).
		return nil
	}
	in.Acked = true
	b.mu.Lock()
	b.held = append(b.held, in)
	b.mu.Unlock()
	return nil
}

// published writes the exchange of the oldest QoS 2 message handed to the
// bridge: the client delivers them in the order the session took them.
func (b *bridgeSession) published() {
	b.mu.Lock()
	if len(b.held) == 0 {
		b.mu.Unlock()
		return
	}
	in := b.held[0]
	b.held = append(b.held[:0], b.held[1:]...)
	b.mu.Unlock()
	b.wrote(b.st.SaveIncoming(in))
}

// Clear forgets the exchanges held too.
func (b *bridgeSession) Clear() error {
	b.mu.Lock()
	b.held = b.held[:0]
	b.mu.Unlock()
	return b.storedSession.Clear()
}

// syncedConn is the bridge client's connection to the remote broker when
// the Server has a store: each write first makes the bridge's writes
// durable, as a connection's writer does for its client (see durable).
// The packets it carries depend on them: a PUBLISH on the message being
// in the queue, a PUBREL on the PUBREC being recorded. A Sync made by the
// client under its lock could not wait for the groups of the routings
// under way (a routing may wait for that lock to queue its message here,
// see forward), and a crash cuts every write made after the beginning of
// a group that did not end: a PUBLISH sent before its routing's group
// ended, or a PUBREL whose record was cut, then arrives twice at the
// remote once the bridge sends the message again.
type syncedConn struct {
	net.Conn
	s *bridgeSession
}

func (c *syncedConn) Write(p []byte) (int, error) {
	if err := c.s.d.syncTo(c.s.last.Load()); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}

// NetConn returns the connection under c, for the transport's options.
func (c *syncedConn) NetConn() net.Conn { return c.Conn }

// dial opens the raw connection of a bridge's client to the remote broker.
func (b *bridgeSession) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &syncedConn{Conn: nc, s: b}, nil
}

// bridgeSession keeps the stored session of a bridge's queue found while
// the store is restored, for the bridge to take, and reports whether id is
// a bridge's. s.mu is held.
func (s *Server) bridgeSession(id string, st store.Session) bool {
	if !strings.HasPrefix(id, bridgeIDPrefix) {
		return false
	}
	if s.bridgeStores == nil {
		s.bridgeStores = make(map[string]store.Session)
	}
	s.bridgeStores[id] = st
	configured := false
	for _, b := range s.opts.Bridges {
		configured = configured || bridgeIDPrefix+b.Name == id
	}
	if !configured {
		s.log.Warn("stored queue of a bridge that is not configured: kept, not sent", "bridge", id[len(bridgeIDPrefix):])
	}
	return true
}

// readConnect reads the first packet of a connection, with the bridge mark
// accepted when Options.AllowBridges is set.
func (s *Server) readConnect(r *packet.Reader) (packet.Packet, error) {
	if !s.opts.AllowBridges {
		return r.ReadPacket()
	}
	b, err := r.Next()
	if err != nil {
		return nil, err
	}
	if packet.Type(b[0]>>4) != packet.CONNECT {
		return packet.Decode(b)
	}
	cp := new(packet.Connect)
	return cp, cp.DecodeBridge(b)
}

// echoFilter remembers the latest messages a bridge forwarded without the
// bridge mark, so that their echoes from the remote broker are dropped.
type echoFilter struct {
	mu    sync.Mutex
	ring  [echoSize]uint64
	next  int
	count map[uint64]int
}

const echoSize = 4096

func echoKey(topic string, payload []byte) uint64 {
	// FNV-1a of topic, a separator that cannot be in a topic, payload.
	h := uint64(14695981039346656037)
	for i := 0; i < len(topic); i++ {
		h = (h ^ uint64(topic[i])) * 1099511628211
	}
	h = (h ^ 0) * 1099511628211
	for _, c := range payload {
		h = (h ^ uint64(c)) * 1099511628211
	}
	return h | 1 // never 0, the empty slot
}

func (f *echoFilter) add(topic string, payload []byte) {
	k := echoKey(topic, payload)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.count == nil {
		f.count = make(map[uint64]int)
	}
	if old := f.ring[f.next]; old != 0 {
		f.forget(old)
	}
	f.ring[f.next] = k
	f.next = (f.next + 1) % echoSize
	f.count[k]++
}

func (f *echoFilter) forget(k uint64) {
	if f.count[k] <= 1 {
		delete(f.count, k)
	} else {
		f.count[k]--
	}
}

// take reports whether topic and payload are an echo, and forgets one.
func (f *echoFilter) take(topic string, payload []byte) bool {
	k := echoKey(topic, payload)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.count[k] == 0 {
		return false
	}
	f.forget(k)
	// Its slot in the ring stays; forget of a key gone is harmless.
	return true
}
