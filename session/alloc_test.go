package session

import (
	"bytes"
	"testing"

	"github.com/ternmq/mqtt/packet"
)

// wire carries the bytes of one session to another the way a connection
// would, decoding into reused packet values so that it allocates nothing.
type wire struct {
	buf []byte
	r   struct {
		publish packet.Publish
		puback  packet.Puback
		pubrec  packet.Pubrec
		pubrel  packet.Pubrel
		pubcomp packet.Pubcomp
		connack packet.Connack
	}
	delivered int
}

func (w *wire) pass(tb testing.TB, from, to *Session) {
	var err error
	w.buf, err = from.AppendOutgoing(w.buf[:0], t0)
	if err != nil {
		tb.Fatal(err)
	}
	b := w.buf
	for len(b) > 0 {
		// The test's packets are short: a one-byte remaining length.
		n := 2 + int(b[1])
		var p packet.Packet
		switch packet.Type(b[0] >> 4) {
		case packet.PUBLISH:
			p = &w.r.publish
		case packet.PUBACK:
			p = &w.r.puback
		case packet.PUBREC:
			p = &w.r.pubrec
		case packet.PUBREL:
			p = &w.r.pubrel
		case packet.PUBCOMP:
			p = &w.r.pubcomp
		case packet.CONNACK:
			p = &w.r.connack
		default:
			tb.Fatalf("unexpected packet % x", b[:n])
		}
		if err := p.Decode(b[:n]); err != nil {
			tb.Fatal(err)
		}
		if err := to.Receive(p, t0); err != nil {
			tb.Fatal(err)
		}
		for e, ok := to.NextEvent(); ok; e, ok = to.NextEvent() {
			if e.Kind == EventMessage {
				w.delivered++
			}
		}
		b = b[n:]
	}
}

// pair returns a client and a server session with a connection up.
func pair(tb testing.TB, cs, ss Store) (c, s *Session, w *wire) {
	c, err := New(Config{Role: Client, Store: cs})
	if err != nil {
		tb.Fatal(err)
	}
	s, err = New(Config{Role: Server, Store: ss})
	if err != nil {
		tb.Fatal(err)
	}
	conn := &packet.Connect{ClientID: []byte("c")}
	c.Connect(conn, t0)
	c.AppendOutgoing(nil, t0)
	s.Accept(conn, false, t0)
	w = &wire{buf: make([]byte, 0, 4096)}
	w.pass(tb, s, c)
	return c, s, w
}

// cycle runs one complete QoS flow from one session to the other.
func cycle(tb testing.TB, from, to *Session, w *wire, p *packet.Publish) {
	if _, err := from.Publish(p); err != nil {
		tb.Fatal(err)
	}
	w.pass(tb, from, to) // PUBLISH
	w.pass(tb, to, from) // PUBACK or PUBREC
	if p.QoS == 2 {
		w.pass(tb, from, to) // PUBREL
		w.pass(tb, to, from) // PUBCOMP
	}
	for _, ok := from.NextEvent(); ok; _, ok = from.NextEvent() {
	}
}

func TestAllocs(t *testing.T) {
	p := &packet.Publish{Topic: []byte("sensors/1/temperature"), Payload: make([]byte, 64)}
	for _, st := range []struct {
		name string
		new  func() Store
	}{
		{"none", func() Store { return nil }},
		{"memory", func() Store { return NewMemoryStore() }},
		{"file", func() Store {
			fs, err := OpenFileStore(t.TempDir(), FileStoreOptions{Sync: SyncNever})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { fs.Close() })
			return fs
		}},
	} {
		if testing.Short() && st.name == "file" {
			continue
		}
		c, s, w := pair(t, st.new(), st.new())
		for _, qos := range []byte{1, 2} {
			for _, dir := range []struct {
				name     string
				from, to *Session
			}{{"client to server", c, s}, {"server to client", s, c}} {
				p.QoS = qos
				for i := 0; i < 100; i++ { // warm up: buffers and maps grow
					cycle(t, dir.from, dir.to, w, p)
				}
				before := w.delivered
				allocs := testing.AllocsPerRun(1000, func() { cycle(t, dir.from, dir.to, w, p) })
				if allocs != 0 {
					t.Errorf("store %s, QoS %d %s: %v allocations per cycle, want 0", st.name, qos, dir.name, allocs)
				}
				if w.delivered-before != 1001 {
					t.Fatalf("%d messages delivered, want 1001", w.delivered-before)
				}
				if dir.from.Inflight() != 0 {
					t.Fatalf("%d messages left in flight", dir.from.Inflight())
				}
			}
		}
	}
}

// A server shrinks the session of a connection that only receives after
// each batch written to it (broker's park_linux.go). The outbox it lets go
// of goes to a pool, where the next batch, of this session or another,
// takes it: a busy subscriber allocates nothing per batch, and a session
// that takes an outbox finds nothing of its last owner's in it.
func TestShrinkPoolsOutbox(t *testing.T) {
	c, s, w := pair(t, nil, nil)
	p := &packet.Publish{Topic: []byte("sensors/1/temperature"), Payload: make([]byte, 64)}
	batch := func() {
		for range 50 {
			if _, err := s.Publish(p); err != nil {
				t.Fatal(err)
			}
		}
		before := w.delivered
		w.pass(t, s, c)
		if got := w.delivered - before; got != 50 {
			t.Fatalf("%d messages delivered, want 50", got)
		}
		s.Shrink()
	}
	batch()
	// The race detector makes sync.Pool drop a quarter of what it is given.
	if n := testing.AllocsPerRun(100, batch); n != 0 && !raceEnabled {
		t.Errorf("%v allocations per batch of 50 QoS 0 messages and Shrink, want 0", n)
	}

	// A QoS 0 message leaves the slab's room behind, a QoS 1 one a
	// reusable message; Shrink keeps the room of the outbox, slab, events
	// and topic check, and nothing else.
	if _, err := s.Publish(p); err != nil {
		t.Fatal(err)
	}
	w.pass(t, s, c)
	p.QoS = 1
	cycle(t, s, c, w, p)
	x := s.spare
	if x == nil || len(x.free) == 0 || cap(x.slab) == 0 {
		t.Fatalf("spare before Shrink: %+v, want reusable messages and a slab", x)
	}
	s.Shrink()
	if s.spare != nil {
		t.Fatal("Shrink kept the spare of a session with nothing waiting")
	}
	if len(x.out) != 0 || len(x.slab) != 0 || len(x.events) != 0 || x.free != nil || x.sp != nil || x.bits != nil || x.storeMsg != nil || x.pendQ0 != 0 || len(x.check) != 0 || cap(x.slab) == 0 {
		t.Errorf("spare given to the pool: %+v, want only the room of out, slab, events and check", x)
	}

	// Another session writes only its own bytes, whichever outbox it takes:
	// a QoS 0 PUBLISH of topic "b" and payload "y" (section 3.3), 6 bytes.
	_, s2, _ := pair(t, nil, nil)
	if _, err := s.Publish(&packet.Publish{Topic: []byte("a/long/topic/name"), Payload: make([]byte, 300)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AppendOutgoing(nil, t0); err != nil {
		t.Fatal(err)
	}
	s.Shrink()
	if _, err := s2.Publish(&packet.Publish{Topic: []byte("b"), Payload: []byte("y")}); err != nil {
		t.Fatal(err)
	}
	if q := s2.QueuedBytes(); q != QueuedOverhead+6 {
		t.Errorf("QueuedBytes %d with one 6-byte QoS 0 message waiting, want %d", q, QueuedOverhead+6)
	}
	got, err := s2.AppendOutgoing(nil, t0)
	if want := []byte{0x30, 4, 0, 1, 'b', 'y'}; err != nil || !bytes.Equal(got, want) {
		t.Errorf("AppendOutgoing: % x, %v; want % x", got, err, want)
	}
}
