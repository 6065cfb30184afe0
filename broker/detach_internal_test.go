//go:build linux

package broker

import (
	"bytes"
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/ternmq/mqtt/packet"
)

// Every test of the package runs with a short detachAfter, so that the
// parked connections of all of them detach and attach again.
func init() { detachAfter = 20 * time.Millisecond }

// detachedConns counts the connections of s parked without a net.Conn.
func (s *Server) detachedConns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for c := range s.conns {
		c.pk.mu.Lock()
		if c.nc == nil && !c.pk.closed {
			n++
		}
		c.pk.mu.Unlock()
	}
	return n
}

func waitDetached(t *testing.T, s *Server, want int) {
	t.Helper()
	var n int
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if n = s.detachedConns(); n >= want {
			return
		}
	}
	s.mu.Lock()
	for c := range s.conns {
		t.Logf("%s nc=%v closed=%v state=%d wrunning=%v added=%v", c.info.ID, c.nc != nil, c.pk.closed, c.pk.state.Load(), c.wrunning, c.pk.added)
	}
	s.mu.Unlock()
	t.Fatalf("%d connections detached, want %d", n, want)
}

func rawConnect(t *testing.T, addr, id string, sub bool) net.Conn {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	b, _ := (&packet.Connect{ClientID: []byte(id), CleanSession: true, KeepAlive: 60}).Append(nil)
	want := []byte{0x20, 0x02, 0x00, 0x00}
	if sub {
		b, _ = (&packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: []byte(id + "/cmd"), QoS: 1}}}).Append(b)
		want = append(want, 0x90, 0x03, 0x00, 0x01, 0x01)
	}
	if _, err := nc.Write(b); err != nil {
		t.Fatal(err)
	}
	expectBytes(t, nc, want)
	return nc
}

func expectBytes(t *testing.T, nc net.Conn, want []byte) {
	t.Helper()
	got := make([]byte, len(want))
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(nc, got); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read % x, %v; want % x", got, err, want)
	}
}

// Idle connections give back their net.Conn, and a detached connection
// still reads (a PINGREQ, a PUBLISH), writes (a message routed to it, its
// PINGRESP), is taken over and ends with Shutdown.
func TestDetachedConnections(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := New(Options{})
	go s.Serve(l)
	defer s.Close()
	addr := l.Addr().String()
	const n = 20
	cs := make([]net.Conn, n)
	for i := range cs {
		cs[i] = rawConnect(t, addr, string(rune('a'+i)), true)
	}
	waitDetached(t, s, n)

	// Read by a detached reader, written by a detached writer.
	for _, nc := range cs {
		nc.Write([]byte{0xc0, 0x00}) // PINGREQ
	}
	for _, nc := range cs {
		expectBytes(t, nc, []byte{0xd0, 0x00}) // PINGRESP [MQTT-3.12.4-1]
	}
	waitDetached(t, s, n)
	pub, _ := (&packet.Publish{Topic: []byte("b/cmd"), Payload: []byte("go"), QoS: 1, PacketID: 7}).Append(nil)
	cs[0].Write(pub)
	expectBytes(t, cs[0], []byte{0x40, 0x02, 0x00, 0x07}) // PUBACK
	p := make([]byte, 2+2+5+2+2)
	cs[1].SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(cs[1], p); err != nil {
		t.Fatal(err)
	}
	if p[0] != 0x32 || !bytes.Equal(p[4:9], []byte("b/cmd")) || !bytes.Equal(p[11:], []byte("go")) {
		t.Fatalf("delivered % x", p)
	}
	// The writer attached it while the reader was parked: the reader
	// still wakes for its bytes.
	cs[1].Write([]byte{0x40, 0x02, p[9], p[10], 0xc0, 0x00}) // PUBACK, PINGREQ
	expectBytes(t, cs[1], []byte{0xd0, 0x00})

	// A connection written to more often than detachAfter stays attached:
	// it does not make a net.Conn per message.
	waitDetached(t, s, n)
	var cl *client
	s.mu.Lock()
	for c := range s.conns {
		if c.info.ID == "d" {
			cl = c.cl
		}
	}
	s.mu.Unlock()
	gen := func() uint32 {
		cl.mu.Lock()
		c := cl.conn
		cl.mu.Unlock()
		c.pk.mu.Lock()
		defer c.pk.mu.Unlock()
		return c.pk.gen
	}
	g0 := gen()
	const stream = 40 // one QoS 0 message every detachAfter/4
	for range stream {
		s.Publish(&packet.Publish{Topic: []byte("d/cmd"), Payload: []byte("x")})
		time.Sleep(detachAfter / 4)
	}
	want := []byte{0x30, 0x08, 0x00, 0x05, 'd', '/', 'c', 'm', 'd', 'x'}
	for range stream {
		expectBytes(t, cs[3], want)
	}
	if g := gen() - g0; g > 4 {
		t.Errorf("a connection written to every %v made %d net.Conns for %d messages", detachAfter/4, g, stream)
	}

	// A detached connection taken over is closed [MQTT-3.1.4-2].
	waitDetached(t, s, n)
	rawConnect(t, addr, "c", false)
	cs[2].SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := cs[2].Read(p); err == nil {
		t.Fatal("taken over connection not closed")
	}

	// Shutdown ends detached connections.
	waitDetached(t, s, n)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	for _, nc := range cs {
		nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := nc.Read(p); err == nil {
			t.Fatal("connection open after Shutdown")
		}
	}
}
