package session

import (
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
