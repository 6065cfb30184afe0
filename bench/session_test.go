package bench_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/ternmq/mqtt/packet"
	"github.com/ternmq/mqtt/session"
)

// sessionWire carries one session's output to another as a connection
// would: encoded by AppendOutgoing, decoded into reused packet values. It is
// what a client or broker does around a session, so the benchmarks include
// the codec's cost.
type sessionWire struct {
	buf     []byte
	publish packet.Publish
	puback  packet.Puback
	pubrec  packet.Pubrec
	pubrel  packet.Pubrel
	pubcomp packet.Pubcomp
	connack packet.Connack
	now     time.Time
}

func (w *sessionWire) pass(b *testing.B, from, to *session.Session) {
	var err error
	w.buf, err = from.AppendOutgoing(w.buf[:0], w.now)
	if err != nil {
		b.Fatal(err)
	}
	for rest := w.buf; len(rest) > 0; {
		n, size := 0, 0
		for i := 1; ; i++ { // the remaining length
			c := rest[i]
			n |= int(c&0x7f) << (7 * (i - 1))
			if c&0x80 == 0 {
				size = i + 1 + n
				break
			}
		}
		var p packet.Packet
		switch packet.Type(rest[0] >> 4) {
		case packet.PUBLISH:
			p = &w.publish
		case packet.PUBACK:
			p = &w.puback
		case packet.PUBREC:
			p = &w.pubrec
		case packet.PUBREL:
			p = &w.pubrel
		case packet.PUBCOMP:
			p = &w.pubcomp
		case packet.CONNACK:
			p = &w.connack
		default:
			b.Fatalf("unexpected packet type %d", rest[0]>>4)
		}
		if err := p.Decode(rest[:size]); err != nil {
			b.Fatal(err)
		}
		if err := to.Receive(p, w.now); err != nil {
			b.Fatal(err)
		}
		for _, ok := to.NextEvent(); ok; _, ok = to.NextEvent() {
		}
		rest = rest[size:]
	}
}

// sessionPair returns a client and a server session with a connection up.
func sessionPair(b *testing.B, cs, ss session.Store, window int) (c, s *session.Session, w *sessionWire) {
	c, err := session.New(session.Config{Role: session.Client, Store: cs, MaxInflight: window})
	if err != nil {
		b.Fatal(err)
	}
	s, err = session.New(session.Config{Role: session.Server, Store: ss, MaxInflight: window})
	if err != nil {
		b.Fatal(err)
	}
	w = &sessionWire{buf: make([]byte, 0, 1<<16), now: time.Unix(1e9, 0)}
	conn := &packet.Connect{ClientID: []byte("bench")}
	if err := c.Connect(conn, w.now); err != nil {
		b.Fatal(err)
	}
	c.AppendOutgoing(nil, w.now)
	if err := s.Accept(conn, false, w.now); err != nil {
		b.Fatal(err)
	}
	w.pass(b, s, c)
	return c, s, w
}

type sessionStore struct {
	name string
	open func(b *testing.B) session.Store
}

func fileStore(sp session.SyncPolicy) func(b *testing.B) session.Store {
	return func(b *testing.B) session.Store {
		fs, err := session.OpenFileStore(b.TempDir(), session.FileStoreOptions{Sync: sp})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { fs.Close() })
		return fs
	}
}

var sessionStores = []sessionStore{
	{"NoStore", func(*testing.B) session.Store { return nil }},
	{"MemoryStore", func(*testing.B) session.Store { return session.NewMemoryStore() }},
	{"FileStoreSyncNever", fileStore(session.SyncNever)},
	{"FileStoreSyncBatch", fileStore(session.SyncBatch)},
	{"FileStoreSyncAlways", fileStore(session.SyncAlways)},
}

// BenchmarkSessionCycle measures one complete QoS 1 flow (PUBLISH, PUBACK)
// or QoS 2 flow (PUBLISH, PUBREC, PUBREL, PUBCOMP) from client to server,
// both sessions with the same kind of store, the codec included. With file
// stores it is the cost of durability: SyncAlways is one fsync per state
// change, SyncBatch one per batch of packets handed out (here every packet).
func BenchmarkSessionCycle(b *testing.B) {
	payload := bytes.Repeat([]byte("x"), 256)
	for _, qos := range []byte{1, 2} {
		for _, st := range sessionStores {
			b.Run("QoS"+string('0'+qos)+"/"+st.name, func(b *testing.B) {
				c, s, w := sessionPair(b, st.open(b), st.open(b), 20)
				p := &packet.Publish{QoS: qos, Topic: []byte("sensors/building-1/floor-2/temperature"), Payload: payload}
				b.SetBytes(int64(len(payload)))
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if _, err := c.Publish(p); err != nil {
						b.Fatal(err)
					}
					w.pass(b, c, s)
					w.pass(b, s, c)
					if qos == 2 {
						w.pass(b, c, s)
						w.pass(b, s, c)
					}
					for _, ok := c.NextEvent(); ok; _, ok = c.NextEvent() {
					}
				}
				if c.Inflight() != 0 {
					b.Fatalf("%d messages left in flight", c.Inflight())
				}
			})
		}
	}
}

// BenchmarkSessionWindow measures a window of 20 QoS 1 messages published
// then acknowledged together, as a busy client does: batches amortise the
// store's syncs.
func BenchmarkSessionWindow(b *testing.B) {
	payload := bytes.Repeat([]byte("x"), 256)
	for _, st := range sessionStores {
		b.Run(st.name, func(b *testing.B) {
			c, s, w := sessionPair(b, st.open(b), st.open(b), 20)
			p := &packet.Publish{QoS: 1, Topic: []byte("sensors/building-1/floor-2/temperature"), Payload: payload}
			b.SetBytes(int64(len(payload)))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i += 20 {
				for j := 0; j < 20; j++ {
					if _, err := c.Publish(p); err != nil {
						b.Fatal(err)
					}
				}
				w.pass(b, c, s)
				w.pass(b, s, c)
				for _, ok := c.NextEvent(); ok; _, ok = c.NextEvent() {
				}
			}
		})
	}
}

// BenchmarkSessionIDNearlyFull measures a QoS 1 cycle when 65,000 of the
// 65,535 packet ids are in use, so that finding a free one means skipping
// over thousands of taken ones.
func BenchmarkSessionIDNearlyFull(b *testing.B) {
	c, s, w := sessionPair(b, nil, nil, 65535)
	p := &packet.Publish{QoS: 1, Topic: []byte("t"), Payload: []byte("x")}
	// 65,000 messages in flight, never acknowledged: the server's answers
	// are thrown away.
	for i := 0; i < 65000; i++ {
		if _, err := c.Publish(p); err != nil {
			b.Fatal(err)
		}
	}
	w.pass(b, c, s)
	s.AppendOutgoing(nil, w.now)
	if c.Inflight() != 65000 {
		b.Fatalf("%d in flight", c.Inflight())
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.Publish(p); err != nil {
			b.Fatal(err)
		}
		w.pass(b, c, s)
		w.pass(b, s, c)
	}
	if c.Inflight() != 65000 {
		b.Fatalf("%d in flight after the benchmark", c.Inflight())
	}
}
