package session

import (
	"errors"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/ternmq/mqtt/packet"
)

// The model test joins a client and a server session by a lossy link that
// can cut the connection at any packet and duplicate PUBLISH packets, drives
// both with random publishes, acknowledgements, cuts and reconnections, and
// checks what each side delivered: QoS 1 at least once, QoS 2 exactly once,
// QoS 0 at most once, first deliveries in publishing order, and never a
// packet id taken while in flight. Runs are seeded: a failure names its
// seed, and TERN_MODEL_SEED=n runs only that one.

// endpoint is one side of the model: a session, what it published, what it
// delivered, and the ids its PUBLISH packets hold on the wire.
type endpoint struct {
	name      string
	s         *Session
	store     Store
	cfg       Config
	next      int            // number of the next message to publish
	qos       map[int]byte   // QoS of each published message
	delivered map[string]int // deliveries of each message of the peer
	order     []int          // numbers of the peer's messages, first deliveries
	open      map[uint16]string
	tags      []Tag // ManualAck: tags awaiting Ack
	restarted bool  // a message loaded from the store may be resent with DUP
	seen      map[Tag]bool
}

type model struct {
	t      *testing.T
	rng    *rand.Rand
	seed   int64
	c, s   *endpoint
	up     bool        // a connection exists (perhaps not yet accepted)
	link   [2][][]byte // packets in flight: [0] client to server, [1] server to client
	conns  int
	now    time.Time
	steps  int
	trace  []string
	tracer bool
}

func (m *model) fail(format string, args ...any) {
	m.t.Helper()
	msg := fmt.Sprintf(format, args...)
	if m.tracer {
		for _, l := range m.trace {
			m.t.Log(l)
		}
	}
	m.t.Fatalf("seed %d step %d: %s (rerun with TERN_MODEL_SEED=%d)", m.seed, m.steps, msg, m.seed)
}

func (m *model) log(format string, args ...any) {
	if m.tracer {
		m.trace = append(m.trace, fmt.Sprintf(format, args...))
	}
}

func newEndpoint(name string, cfg Config) *endpoint {
	s, err := New(cfg)
	if err != nil {
		panic(err)
	}
	return &endpoint{name: name, s: s, cfg: cfg, qos: map[int]byte{}, delivered: map[string]int{}, open: map[uint16]string{}, seen: map[Tag]bool{}}
}

// publish tries to publish the endpoint's next message.
func (m *model) publish(e *endpoint) {
	qos := byte(m.rng.Intn(3))
	payload := e.name + strconv.Itoa(e.next)
	_, err := e.s.Publish(&packet.Publish{QoS: qos, Topic: []byte("t/" + e.name), Payload: []byte(payload)})
	switch {
	case err == nil:
		e.qos[e.next] = qos
		e.next++
		m.log("%s publish %s q%d", e.name, payload, qos)
	case errors.Is(err, ErrFull), errors.Is(err, ErrNotConnected):
		// Refused, not taken: the application keeps it.
	default:
		m.fail("%s Publish: %v", e.name, err)
	}
}

// flush moves the packets an endpoint has to send onto the link, checking
// the packet ids of its PUBLISH packets [MQTT-2.3.1-2] [MQTT-2.3.1-3].
func (m *model) flush(e *endpoint, dir int) {
	for {
		p, err := e.s.Next(m.now)
		if err != nil {
			m.fail("%s Next: %v", e.name, err)
		}
		if p == nil {
			return
		}
		if pp, ok := p.(*packet.Publish); ok && pp.QoS > 0 {
			if old, ok := e.open[pp.PacketID]; ok {
				if !pp.Dup || old != string(pp.Payload) {
					m.fail("%s sent %s with id %d, in flight for %s [MQTT-2.3.1-2]", e.name, pp.Payload, pp.PacketID, old)
				}
			} else if pp.Dup && !e.restarted {
				m.fail("%s resent %s with id %d, not in flight [MQTT-2.3.1-3]", e.name, pp.Payload, pp.PacketID)
			}
			e.open[pp.PacketID] = string(pp.Payload)
			if len(e.open) > int(e.s.maxInflight) {
				m.fail("%s has %d PUBLISH packets in flight, window %d", e.name, len(e.open), e.s.maxInflight)
			}
		}
		b, err := p.Append(nil)
		if err != nil {
			m.fail("%s handed out an invalid packet %v: %v", e.name, p, err)
		}
		m.link[dir] = append(m.link[dir], b)
		m.log("%s -> %v", e.name, p)
	}
}

// deliver hands the next packet of a direction to its receiver, or cuts the
// connection instead, or duplicates a PUBLISH.
func (m *model) deliver(dir int, cutRate, dupRate float64) {
	if len(m.link[dir]) == 0 {
		return
	}
	if m.rng.Float64() < cutRate {
		m.cut()
		return
	}
	b := m.link[dir][0]
	m.link[dir] = m.link[dir][1:]
	if packet.Type(b[0]>>4) == packet.PUBLISH && b[0]&6 != 0 && m.rng.Float64() < dupRate {
		// A retransmission on the same connection, DUP set.
		d := append([]byte(nil), b...)
		d[0] |= 8
		m.link[dir] = append([][]byte{d}, m.link[dir]...)
	}
	from, to := m.c, m.s
	if dir == 1 {
		from, to = m.s, m.c
	}
	p, err := packet.Decode(b)
	if err != nil {
		m.fail("undecodable packet % x: %v", b, err)
	}
	m.log("%s <- %v", to.name, p)
	if c, ok := p.(*packet.Connect); ok && to.s.Role() == Server {
		if err := to.s.Accept(c, m.conns > 1, m.now); err != nil {
			m.fail("Accept: %v", err)
		}
	} else if err := to.s.Receive(p, m.now); err != nil {
		m.fail("%s Receive(%v): %v", to.name, p, err)
	}
	for ev, ok := to.s.NextEvent(); ok; ev, ok = to.s.NextEvent() {
		switch ev.Kind {
		case EventMessage:
			payload := string(ev.Publish.Payload)
			n, _ := strconv.Atoi(payload[1:])
			if to.cfg.ManualAck && ev.Tag != 0 {
				to.tags = append(to.tags, ev.Tag)
			}
			if ev.Publish.QoS == 2 {
				// The application records the tags of what it processed,
				// durably: a QoS 2 message delivered again after a restart
				// with ManualAck carries a tag it has seen.
				if to.seen[ev.Tag] {
					if !to.cfg.ManualAck || !to.restarted {
						m.fail("%s delivered %s again with tag %d", to.name, payload, ev.Tag)
					}
					continue
				}
				to.seen[ev.Tag] = true
			}
			to.delivered[payload]++
			if to.delivered[payload] == 1 {
				to.order = append(to.order, n)
			}
			if ev.Publish.QoS != from.qos[n] {
				m.fail("%s delivered with QoS %d, published with %d", payload, ev.Publish.QoS, from.qos[n])
			}
		case EventPublished:
			if _, ok := to.open[ev.PacketID]; !ok {
				m.fail("%s completed id %d, not in flight", to.name, ev.PacketID)
			}
			delete(to.open, ev.PacketID)
		case EventConnack, EventDisconnect:
		default:
			m.fail("unexpected event %v", ev.Kind)
		}
	}
}

// cut ends the connection: what is on the link is lost.
func (m *model) cut() {
	m.log("cut")
	m.link[0], m.link[1] = nil, nil
	m.c.s.Disconnected()
	m.s.s.Disconnected()
	m.up = false
}

// reconnect starts a new connection, resuming the session [MQTT-3.1.2-4].
func (m *model) reconnect() {
	m.conns++
	m.log("connect %d", m.conns)
	if err := m.c.s.Connect(&packet.Connect{ClientID: []byte("model"), KeepAlive: 0}, m.now); err != nil {
		m.fail("Connect: %v", err)
	}
	m.up = true
}

// ack acknowledges a random pending message of a ManualAck endpoint.
func (m *model) ack(e *endpoint) {
	if len(e.tags) == 0 {
		return
	}
	i := m.rng.Intn(len(e.tags))
	if err := e.s.Ack(e.tags[i]); err != nil {
		m.fail("%s Ack: %v", e.name, err)
	}
	e.tags = append(e.tags[:i], e.tags[i+1:]...)
}

// restart replaces an endpoint's session by a new one on the same store, as
// after a crash of its process.
func (m *model) restart(e *endpoint) {
	if e.store == nil {
		return
	}
	m.log("restart %s", e.name)
	m.cut()
	if fs, ok := e.cfg.Store.(*FileStore); ok {
		// Read the log again, as a new process would.
		fs.Close()
		fs, err := OpenFileStore(fs.dir, fs.opts)
		if err != nil {
			m.fail("reopening the file store: %v", err)
		}
		e.cfg.Store, e.store = fs, fs
	}
	s, err := New(e.cfg)
	if err != nil {
		m.fail("New after restart: %v", err)
	}
	e.s = s
	stats.restarts++
	e.tags = nil
	e.restarted = true
	// What the dead process had in flight is now the new one's to resend;
	// the wire view of ids in flight stays as it was.
}

func (m *model) checkInvariants(e *endpoint) {
	s := e.s
	n := 0
	for x := s.inflight.head; x != nil; x = x.next {
		n++
		if x.id == 0 || s.byID[x.id] != x {
			m.fail("%s: inflight message %d with id %d not indexed", e.name, x.h, x.id)
		}
		if s.spare != nil && s.spare.bits != nil && s.spare.bits[x.id>>6]&(1<<(x.id&63)) == 0 {
			m.fail("%s: id %d in flight but free in the bitmap", e.name, x.id)
		}
		if x.next != nil && x.next.h <= x.h {
			m.fail("%s: inflight out of order", e.name)
		}
	}
	if n != s.inflight.n || n != len(s.byID) || n > int(s.maxInflight) {
		m.fail("%s: %d inflight, count %d, index %d, window %d", e.name, n, s.inflight.n, len(s.byID), s.maxInflight)
	}
	for x := s.queue.head; x != nil; x = x.next {
		if x.id != 0 {
			m.fail("%s: queued message with id %d", e.name, x.id)
		}
	}
}

// modelStats sums what the runs exercised, so that a change that makes the
// model test vacuous shows.
type modelStats struct {
	published, delivered, conns, restarts int
	byQoS                                 [3]int
}

var stats modelStats

func runModel(t *testing.T, seed int64, trace bool) {
	rng := rand.New(rand.NewSource(seed))
	m := &model{t: t, rng: rng, seed: seed, now: t0, tracer: trace}
	ccfg := Config{Role: Client, MaxInflight: 1 + rng.Intn(4), MaxQueued: 1 + rng.Intn(6), ManualAck: rng.Intn(3) == 0}
	scfg := Config{Role: Server, MaxInflight: 1 + rng.Intn(4), MaxQueued: 1 + rng.Intn(6), ManualAck: rng.Intn(4) == 0}
	withStore := rng.Intn(3) == 0
	fileStore := withStore && rng.Intn(2) == 0
	if withStore {
		ccfg.Store = NewMemoryStore()
		scfg.Store = NewMemoryStore()
	}
	if fileStore {
		// A small log, so that compactions happen during the run.
		opts := FileStoreOptions{Sync: SyncNever, CompactSize: 2048}
		dir := t.TempDir()
		for _, cfg := range []*Config{&ccfg, &scfg} {
			fs, err := OpenFileStore(filepath.Join(dir, cfg.Role.String()), opts)
			if err != nil {
				t.Fatal(err)
			}
			cfg.Store = fs
		}
		defer func() {
			m.c.cfg.Store.(*FileStore).Close()
			m.s.cfg.Store.(*FileStore).Close()
		}()
	}
	m.c = newEndpoint("c", ccfg)
	m.s = newEndpoint("s", scfg)
	m.c.store, m.s.store = ccfg.Store, scfg.Store
	cutRate := []float64{0, 0.01, 0.05, 0.2}[rng.Intn(4)]
	dupRate := []float64{0, 0.05, 0.3}[rng.Intn(3)]
	steps := 100 + rng.Intn(400)
	for m.steps = 0; m.steps < steps; m.steps++ {
		m.now = m.now.Add(time.Millisecond)
		switch k := rng.Intn(20); {
		case k < 3:
			m.publish(m.c)
		case k < 6:
			m.publish(m.s)
		case k < 8:
			m.flush(m.c, 0)
		case k < 10:
			m.flush(m.s, 1)
		case k < 13:
			m.deliver(0, cutRate, dupRate)
		case k < 16:
			m.deliver(1, cutRate, dupRate)
		case k < 17:
			if !m.up {
				m.reconnect()
			}
		case k < 18:
			m.ack(m.c)
			m.ack(m.s)
		case k < 19:
			if rng.Intn(10) == 0 {
				m.cut()
			}
		default:
			if withStore && rng.Intn(20) == 0 {
				if rng.Intn(2) == 0 {
					m.restart(m.c)
				} else {
					m.restart(m.s)
				}
			}
		}
		m.checkInvariants(m.c)
		m.checkInvariants(m.s)
	}
	// Then a reliable link until everything completes.
	for i := 0; ; i++ {
		if i > 10000 {
			m.fail("no progress: client inflight %d queued %d, server inflight %d queued %d",
				m.c.s.Inflight(), m.c.s.Queued(), m.s.s.Inflight(), m.s.s.Queued())
		}
		if !m.up {
			m.reconnect()
		}
		m.ack(m.c)
		m.ack(m.s)
		m.flush(m.c, 0)
		m.flush(m.s, 1)
		m.deliver(0, 0, 0)
		m.deliver(1, 0, 0)
		if m.c.s.Connected() && m.s.s.Connected() && len(m.link[0])+len(m.link[1]) == 0 &&
			!m.c.s.HasOutgoing() && !m.s.s.HasOutgoing() && len(m.c.tags)+len(m.s.tags) == 0 &&
			m.c.s.Inflight()+m.c.s.Queued()+m.s.s.Inflight()+m.s.s.Queued() == 0 {
			break
		}
	}
	m.check(m.c, m.s)
	m.check(m.s, m.c)
	stats.conns += m.conns
	for _, e := range []*endpoint{m.c, m.s} {
		stats.published += e.next
		for _, q := range e.qos {
			stats.byQoS[q]++
		}
		for _, n := range e.delivered {
			stats.delivered += n
		}
	}
}

// check compares what from published with what to delivered.
func (m *model) check(from, to *endpoint) {
	for n := 0; n < from.next; n++ {
		payload := from.name + strconv.Itoa(n)
		got := to.delivered[payload]
		switch from.qos[n] {
		case 0:
			if got > 1 {
				m.fail("QoS 0 message %s delivered %d times", payload, got)
			}
		case 1:
			if got < 1 {
				m.fail("QoS 1 message %s never delivered [MQTT-4.3.2-1]", payload)
			}
		case 2:
			if got != 1 {
				m.fail("QoS 2 message %s delivered %d times [MQTT-4.3.3-2]", payload, got)
			}
		}
	}
	for i := 1; i < len(to.order); i++ {
		if to.order[i] <= to.order[i-1] {
			m.fail("%s delivered %s%d before %s%d for the first time [MQTT-4.6.0-1]", to.name, from.name, to.order[i-1], from.name, to.order[i])
		}
	}
}

func TestModel(t *testing.T) {
	if s := os.Getenv("TERN_MODEL_SEED"); s != "" {
		seed, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		runModel(t, seed, true)
		return
	}
	runs := 2000
	if testing.Short() {
		runs = 100
	}
	stats = modelStats{}
	for seed := int64(1); seed <= int64(runs); seed++ {
		runModel(t, seed, false)
	}
	t.Logf("%d runs: %d messages published (QoS 0/1/2: %v), %d deliveries, %d connections, %d restarts",
		runs, stats.published, stats.byQoS, stats.delivered, stats.conns, stats.restarts)
	if stats.byQoS[2] < runs || stats.conns < 2*runs || stats.restarts < runs/20 {
		t.Fatal("the runs exercised too little")
	}
}
