package client_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/ternmq/mqtt/client"
	"github.com/ternmq/mqtt/packet"
	"github.com/ternmq/mqtt/transport"
)

// scripted is the server side of the client's connections, played by the
// test packet by packet over net.Pipe.
type scripted struct {
	t     *testing.T
	conns chan net.Conn
}

func newScripted(t *testing.T) (*scripted, *transport.Options) {
	s := &scripted{t: t, conns: make(chan net.Conn, 10)}
	return s, &transport.Options{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, srv := net.Pipe()
		s.conns <- srv
		t.Cleanup(func() { srv.Close() })
		return c, nil
	}}
}

// peer is one connection of the scripted server.
type peer struct {
	t *testing.T
	c net.Conn
	r *packet.Reader
}

// accept returns the next connection the client opened.
func (s *scripted) accept() *peer {
	s.t.Helper()
	select {
	case c := <-s.conns:
		return &peer{t: s.t, c: c, r: packet.NewReader(c, 0)}
	case <-time.After(5 * time.Second):
		s.t.Fatal("the client did not connect")
	}
	return nil
}

// next returns the bytes of the next packet from the client.
func (p *peer) next() []byte {
	p.t.Helper()
	p.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := p.r.Next()
	if err != nil {
		p.t.Fatalf("reading from the client: %v", err)
	}
	return bytes.Clone(b)
}

// expect reads the next packet and checks its type.
func (p *peer) expect(t packet.Type) packet.Packet {
	p.t.Helper()
	b := p.next()
	pk, err := packet.Decode(b)
	if err != nil {
		p.t.Fatalf("decoding % x: %v", b, err)
	}
	if pk.Type() != t {
		p.t.Fatalf("got %v, want %v", pk, t)
	}
	return pk
}

// silent checks that the client sends nothing for d.
func (p *peer) silent(d time.Duration) {
	p.t.Helper()
	p.c.SetReadDeadline(time.Now().Add(d))
	if b, err := p.r.Next(); err == nil {
		p.t.Fatalf("client sent % x, want nothing", b)
	}
	if n := p.r.Buffered(); n > 0 {
		p.t.Fatalf("client sent %d bytes, want nothing", n)
	}
	// A packet.Reader keeps its first read error: start a new one.
	p.r = packet.NewReader(p.c, 0)
}

func (p *peer) send(pks ...packet.Packet) {
	p.t.Helper()
	var b []byte
	for _, pk := range pks {
		var err error
		if b, err = pk.Append(b); err != nil {
			p.t.Fatal(err)
		}
	}
	p.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := p.c.Write(b); err != nil {
		p.t.Fatalf("writing to the client: %v", err)
	}
}

// handshake reads the CONNECT and accepts it.
func (p *peer) handshake(present bool) *packet.Connect {
	p.t.Helper()
	c := p.expect(packet.CONNECT).(*packet.Connect)
	p.send(&packet.Connack{SessionPresent: present})
	return c
}

// startScripted returns a client for opts, its Servers and Transport set to
// a scripted server, and that server's side of the connection, CONNECT
// accepted with no session present. The caller closes the client.
func startScripted(t *testing.T, opts client.Options) (*client.Client, *scripted, *peer) {
	t.Helper()
	s, topts := newScripted(t)
	opts.Servers, opts.Transport = []string{"mqtt://scripted"}, topts
	c, err := client.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	go c.Connect(testCtx(t, 5*time.Second))
	p := s.accept()
	p.handshake(false)
	return c, s, p
}

func TestConnectPacketGolden(t *testing.T) {
	t.Parallel()
	s, topts := newScripted(t)
	c, err := client.New(client.Options{
		Servers:     []string{"mqtt://scripted"},
		ClientID:    "c1",
		KeepSession: true,
		KeepAlive:   30 * time.Second,
		Will:        &client.Will{Topic: "w", Payload: []byte("bye"), QoS: 1, Retain: true},
		Username:    "u",
		Password:    []byte("p"),
		Transport:   topts,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	errc := make(chan error, 1)
	go func() { errc <- c.Connect(testCtx(t, 5*time.Second)) }()
	p := s.accept()
	want := []byte{
		0x10, 28, // CONNECT, remaining length
		0, 4, 'M', 'Q', 'T', 'T', // protocol name [MQTT-3.1.2-1]
		4,     // level 4 [MQTT-3.1.2-2]
		0xEC,  // username, password, will retain, will QoS 1, will flag; CleanSession 0
		0, 30, // keepalive
		0, 2, 'c', '1', // client id [MQTT-3.1.3-3]
		0, 1, 'w', // will topic
		0, 3, 'b', 'y', 'e', // will message
		0, 1, 'u', // username
		0, 1, 'p', // password
	}
	if got := p.next(); !bytes.Equal(got, want) {
		t.Fatalf("CONNECT\n got % x\nwant % x", got, want)
	}
	p.send(&packet.Connack{})
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	// A clean DISCONNECT is the last packet [MQTT-3.14.4-2].
	go c.Disconnect(testCtx(t, 5*time.Second))
	if got := p.next(); !bytes.Equal(got, []byte{0xE0, 0}) {
		t.Fatalf("DISCONNECT = % x", got)
	}
}

func TestOptionsRejected(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		o    client.Options
	}{
		{"no server", client.Options{}},
		{"will topic with wildcard", client.Options{Servers: []string{"mqtt://x"}, Will: &client.Will{Topic: "a/#"}}},
		{"empty will topic", client.Options{Servers: []string{"mqtt://x"}, Will: &client.Will{}}},
		{"will QoS 3", client.Options{Servers: []string{"mqtt://x"}, Will: &client.Will{Topic: "a", QoS: 3}}},
		{"password without username", client.Options{Servers: []string{"mqtt://x"}, Password: []byte("p")}}, // [MQTT-3.1.2-22]
		{"negative inflight", client.Options{Servers: []string{"mqtt://x"}, MaxInflight: -1}},
		{"inflight over 65535", client.Options{Servers: []string{"mqtt://x"}, MaxInflight: 65536}},
		{"batch delay over 100 ms", client.Options{Servers: []string{"mqtt://x"}, BatchDelay: client.MaxBatchDelay + 1}},
		// What the CONNECT could not carry, found before any dial.
		{"will payload over 65535 bytes", client.Options{Servers: []string{"mqtt://x"}, Will: &client.Will{Topic: "a", Payload: make([]byte, 65536)}}}, // section 3.1.3.3: a two-byte length
		{"client id with U+0000", client.Options{Servers: []string{"mqtt://x"}, ClientID: "a\x00b"}},                                                   // [MQTT-1.5.3-2]
		{"client id not UTF-8", client.Options{Servers: []string{"mqtt://x"}, ClientID: "a\xffb"}},                                                     // [MQTT-1.5.3-1]
		{"user name not UTF-8", client.Options{Servers: []string{"mqtt://x"}, Username: "\xc3"}},                                                       // [MQTT-1.5.3-1]
	} {
		if _, err := client.New(tc.o); err == nil {
			t.Errorf("%s: New accepted it", tc.name)
		}
	}
	c, err := client.New(client.Options{Servers: []string{"mqtt://x"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := testCtx(t, time.Second)
	if _, err := c.Subscribe(ctx, client.Subscription{Filter: "a/#/b"}); err == nil {
		t.Error("Subscribe accepted a/#/b") // [MQTT-4.7.1-2]
	}
	if _, err := c.Subscribe(ctx, client.Subscription{Filter: "a", QoS: 3}); err == nil {
		t.Error("Subscribe accepted QoS 3") // [MQTT-3.8.3-4]
	}
	if err := c.Publish(ctx, "a/+", 1, false, nil); err == nil {
		t.Error("Publish accepted a wildcard topic") // [MQTT-3.3.2-2]
	}
	if err := c.Publish(ctx, "a", 0, false, nil); !errors.Is(err, client.ErrNotConnected) {
		t.Errorf("QoS 0 Publish before Connect = %v, want ErrNotConnected", err)
	}
	if _, err := c.Subscribe(ctx, client.Subscription{Filter: "a"}); !errors.Is(err, client.ErrNotConnected) {
		t.Errorf("Subscribe before Connect = %v, want ErrNotConnected", err)
	}
}

func TestResendWithDupAfterReconnect(t *testing.T) {
	t.Parallel()
	c, s, p := startScripted(t, client.Options{ClientID: "r", KeepSession: true, ReconnectMin: time.Millisecond})
	defer c.Close()
	tok := c.PublishAsync(testCtx(t, 5*time.Second), "a", 1, false, []byte("x"))
	first := p.expect(packet.PUBLISH).(*packet.Publish)
	if first.Dup {
		t.Fatal("DUP set on the first transmission") // [MQTT-3.3.1-1]
	}
	p.c.Close() // no PUBACK

	p = s.accept()
	p.handshake(true)
	// [MQTT-4.4.0-1] resent with the same packet id, DUP set [MQTT-3.3.1-1].
	again := p.expect(packet.PUBLISH).(*packet.Publish)
	if diff := cmp.Diff(&packet.Publish{Dup: true, QoS: 1, Topic: []byte("a"), PacketID: first.PacketID, Payload: []byte("x")}, again); diff != "" {
		t.Fatalf("resent PUBLISH (-want +got):\n%s", diff)
	}
	select {
	case <-tok.Done():
		t.Fatal("complete before PUBACK")
	default:
	}
	p.send(&packet.Puback{PacketID: first.PacketID})
	if err := tok.Wait(testCtx(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	if tok.PacketID() != first.PacketID {
		t.Errorf("PacketID() = %d, want %d", tok.PacketID(), first.PacketID)
	}
}

func TestResubscribeWhenSessionLost(t *testing.T) {
	t.Parallel()
	c, s, p := startScripted(t, client.Options{ClientID: "rs", KeepSession: true, ReconnectMin: time.Millisecond})
	defer c.Close()
	done := make(chan error, 1)
	go func() {
		_, err := c.Subscribe(testCtx(t, 5*time.Second), client.Subscription{Filter: "a/#", QoS: 1}, client.Subscription{Filter: "b", QoS: 2}, client.Subscription{Filter: "refused", QoS: 0})
		done <- err
	}()
	sub := p.expect(packet.SUBSCRIBE).(*packet.Subscribe)
	p.send(&packet.Suback{PacketID: sub.PacketID, ReturnCodes: []byte{1, 2, packet.SubackFailure}})
	var se *client.SubscribeError
	if err := <-done; !errors.As(err, &se) || !cmp.Equal(se.Filters, []string{"refused"}) || !errors.Is(err, client.ErrSubscriptionRefused) {
		t.Fatalf("Subscribe = %v, want a refusal of \"refused\"", err)
	}

	// The broker kept the session: nothing to do.
	p.c.Close()
	p = s.accept()
	p.handshake(true)
	p.silent(100 * time.Millisecond)

	// The broker lost it: the granted subscriptions are made again.
	p.c.Close()
	p = s.accept()
	p.handshake(false)
	again := p.expect(packet.SUBSCRIBE).(*packet.Subscribe)
	want := []packet.Subscription{{Filter: []byte("a/#"), QoS: 1}, {Filter: []byte("b"), QoS: 2}}
	if diff := cmp.Diff(want, again.Subscriptions); diff != "" {
		t.Fatalf("resubscription (-want +got):\n%s", diff)
	}
	p.send(&packet.Suback{PacketID: again.PacketID, ReturnCodes: []byte{1, 2}})
}

// A Subscribe whose ctx ends before the SUBACK comes still records what the
// broker granted, when it comes: the broker has the subscription, so a
// broker that loses the session is asked for it again, and one it refuses
// is named in the log. Before, the filter was forgotten, and its messages
// stopped after the next connection with no error or log line.
func TestSubscribeCancelledThenGranted(t *testing.T) {
	t.Parallel()
	var logs syncBuf
	c, s, p := startScripted(t, client.Options{ClientID: "sc", ReconnectMin: time.Millisecond, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	defer c.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := c.Subscribe(ctx, client.Subscription{Filter: "late", QoS: 1}, client.Subscription{Filter: "later", QoS: 0})
		done <- err
	}()
	sub := p.expect(packet.SUBSCRIBE).(*packet.Subscribe)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Subscribe = %v, want context.Canceled", err)
	}
	p.send(&packet.Suback{PacketID: sub.PacketID, ReturnCodes: []byte{1, 0}})
	p.c.Close() // the pipe's Write returned once the client had the SUBACK
	p = s.accept()
	p.handshake(false)
	again := p.expect(packet.SUBSCRIBE).(*packet.Subscribe)
	want := []packet.Subscription{{Filter: []byte("late"), QoS: 1}, {Filter: []byte("later"), QoS: 0}}
	if diff := cmp.Diff(want, again.Subscriptions); diff != "" {
		t.Fatalf("resubscription (-want +got):\n%s", diff)
	}
	p.send(&packet.Suback{PacketID: again.PacketID, ReturnCodes: []byte{1, packet.SubackFailure}})
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), "resubscription refused") {
		if time.Now().After(deadline) {
			t.Fatalf("no log line of the refusal:\n%s", logs.String())
		}
		time.Sleep(time.Millisecond)
	}
	if !strings.Contains(logs.String(), "filter=later") {
		t.Errorf("the log line does not name the filter:\n%s", logs.String())
	}
}

func TestIncomingQoS2Once(t *testing.T) {
	t.Parallel()
	got := make(chan string, 10)
	c, _, p := startScripted(t, client.Options{DefaultHandler: func(m *client.Message) { got <- string(m.Payload) }})
	defer c.Close()
	pub := &packet.Publish{QoS: 2, PacketID: 5, Topic: []byte("q2"), Payload: []byte("once")}
	p.send(pub)
	if rec := p.expect(packet.PUBREC).(*packet.Pubrec); rec.PacketID != 5 {
		t.Fatalf("PUBREC for %d", rec.PacketID)
	}
	// A duplicate before PUBREL is acknowledged again, not delivered
	// again [MQTT-4.3.3-2].
	dup := *pub
	dup.Dup = true
	p.send(&dup)
	if rec := p.expect(packet.PUBREC).(*packet.Pubrec); rec.PacketID != 5 {
		t.Fatalf("PUBREC for %d", rec.PacketID)
	}
	p.send(&packet.Pubrel{PacketID: 5})
	if comp := p.expect(packet.PUBCOMP).(*packet.Pubcomp); comp.PacketID != 5 {
		t.Fatalf("PUBCOMP for %d", comp.PacketID)
	}
	// After PUBCOMP the id is new: the same id is a new message.
	p.send(&packet.Publish{QoS: 2, PacketID: 5, Topic: []byte("q2"), Payload: []byte("next")})
	p.expect(packet.PUBREC)
	for _, want := range []string{"once", "next"} {
		select {
		case g := <-got:
			if g != want {
				t.Fatalf("delivered %q, want %q", g, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%q not delivered", want)
		}
	}
	select {
	case g := <-got:
		t.Fatalf("delivered %q again", g)
	default:
	}
}

func TestManualAckInOrder(t *testing.T) {
	t.Parallel()
	msgs := make(chan *client.Message, 10)
	c, _, p := startScripted(t, client.Options{ManualAck: true, DefaultHandler: func(m *client.Message) { msgs <- m }})
	defer c.Close()
	p.send(&packet.Publish{QoS: 1, PacketID: 1, Topic: []byte("m"), Payload: []byte("1")},
		&packet.Publish{QoS: 2, PacketID: 2, Topic: []byte("m"), Payload: []byte("2")},
		&packet.Publish{QoS: 0, Topic: []byte("m"), Payload: []byte("3")})
	var m [3]*client.Message
	for i := range m {
		select {
		case m[i] = <-msgs:
		case <-time.After(5 * time.Second):
			t.Fatalf("message %d not delivered", i)
		}
	}
	// Not acknowledged until the application says so; the second waits
	// for the first [MQTT-4.6.0-2] [MQTT-4.6.0-3].
	m[1].Ack()
	m[2].Ack() // QoS 0: nothing to acknowledge
	p.silent(100 * time.Millisecond)
	m[0].Ack()
	if a := p.expect(packet.PUBACK).(*packet.Puback); a.PacketID != 1 {
		t.Fatalf("PUBACK for %d", a.PacketID)
	}
	if r := p.expect(packet.PUBREC).(*packet.Pubrec); r.PacketID != 2 {
		t.Fatalf("PUBREC for %d", r.PacketID)
	}
}

func TestQoS0NotConnectedAndQueued(t *testing.T) {
	t.Parallel()
	s, topts := newScripted(t)
	c, err := client.New(client.Options{Servers: []string{"mqtt://scripted"}, Transport: topts, QueueQoS0: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Offline queue: taken before the connection, sent after CONNACK, in
	// order, QoS 0 and 1 alike.
	ctx := testCtx(t, 5*time.Second)
	t0 := c.PublishAsync(ctx, "off", 0, false, []byte("a"))
	t1 := c.PublishAsync(ctx, "off", 1, false, []byte("b"))
	if err := t0.Err(); err != nil {
		t.Fatal(err)
	}
	go c.Connect(ctx)
	p := s.accept()
	p.handshake(false)
	for _, want := range []string{"a", "b"} {
		pub := p.expect(packet.PUBLISH).(*packet.Publish)
		if string(pub.Payload) != want {
			t.Fatalf("sent %q, want %q", pub.Payload, want)
		}
		if pub.QoS == 1 {
			p.send(&packet.Puback{PacketID: pub.PacketID})
		}
	}
	if err := t1.Wait(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestFailWhenFull(t *testing.T) {
	t.Parallel()
	s, topts := newScripted(t)
	c, err := client.New(client.Options{Servers: []string{"mqtt://scripted"}, Transport: topts, MaxInflight: 1, MaxQueued: 1, FailWhenFull: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := testCtx(t, 5*time.Second)
	errc := make(chan error, 1)
	go func() { errc <- c.Connect(ctx) }()
	p := s.accept()
	p.handshake(false)
	if err := <-errc; err != nil { // online: the window, not the offline queue
		t.Fatal(err)
	}
	a := c.PublishAsync(ctx, "f", 1, false, nil) // in flight
	b := c.PublishAsync(ctx, "f", 1, false, nil) // queued
	full := c.PublishAsync(ctx, "f", 1, false, nil)
	if err := full.Wait(ctx); !errors.Is(err, client.ErrFull) {
		t.Fatalf("third message: %v, want ErrFull", err)
	}
	// Without FailWhenFull the call would wait: check on a second client
	// that it waits until its context ends.
	pub := p.expect(packet.PUBLISH).(*packet.Publish)
	p.send(&packet.Puback{PacketID: pub.PacketID})
	pub = p.expect(packet.PUBLISH).(*packet.Publish)
	p.send(&packet.Puback{PacketID: pub.PacketID})
	if a.Wait(ctx) != nil || b.Wait(ctx) != nil {
		t.Fatal(a.Err(), b.Err())
	}

	s2, topts2 := newScripted(t)
	c2, err := client.New(client.Options{Servers: []string{"mqtt://scripted"}, Transport: topts2, MaxInflight: 1, MaxQueued: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	go func() { errc <- c2.Connect(ctx) }()
	p2 := s2.accept()
	p2.handshake(false)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	c2.PublishAsync(ctx, "f", 1, false, nil)
	c2.PublishAsync(ctx, "f", 1, false, nil)
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := c2.Publish(short, "f", 1, false, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Publish on a full window = %v, want to wait for the deadline", err)
	}
}

func TestUnixSocket(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "mqtt.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Skipf("no unix sockets: %v", err)
	}
	defer ln.Close()
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		p := &peer{t: t, c: conn, r: packet.NewReader(conn, 0)}
		p.c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if b, err := p.r.Next(); err != nil || packet.Type(b[0]>>4) != packet.CONNECT {
			return
		}
		conn.Write([]byte{0x20, 2, 0, 0})
		conn.Read(make([]byte, 16))
	}()
	c := connect(t, client.Options{Servers: []string{"unix://" + path}})
	if !c.IsConnected() {
		t.Fatal("not connected")
	}
}

func TestLifecycle(t *testing.T) {
	t.Parallel()
	s, topts := newScripted(t)
	events := make(chan client.Event, 10)
	c, err := client.New(client.Options{Servers: []string{"mqtt://scripted"}, Transport: topts, NoReconnect: true,
		OnEvent: func(e client.Event) { events <- e }})
	if err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t, 5*time.Second)
	msgs := c.Messages()
	go c.Connect(ctx)
	p := s.accept()
	p.handshake(false)
	if e := <-events; e.Kind != client.Connected || e.URL != "mqtt://scripted" {
		t.Fatalf("event %+v", e)
	}
	if err := c.Connect(ctx); !errors.Is(err, client.ErrConnected) {
		t.Errorf("second Connect = %v, want ErrConnected", err)
	}

	// NoReconnect: a lost connection stays lost, and calls say so.
	p.c.Close()
	if e := <-events; e.Kind != client.ConnectionLost || e.Err == nil {
		t.Fatalf("event %+v", e)
	}
	for c.IsConnected() {
		time.Sleep(time.Millisecond)
	}
	if _, err := c.Subscribe(ctx, client.Subscription{Filter: "a"}); !errors.Is(err, client.ErrNotConnected) {
		t.Errorf("Subscribe after the loss = %v, want ErrNotConnected", err)
	}
	// Connect again by hand.
	go c.Connect(ctx)
	p = s.accept()
	p.handshake(false)
	if e := <-events; e.Kind != client.Connected {
		t.Fatalf("event %+v", e)
	}

	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
	if _, ok := <-msgs; ok {
		t.Error("Messages not closed by Close")
	}
	if err := c.Connect(ctx); !errors.Is(err, client.ErrClosed) {
		t.Errorf("Connect after Close = %v, want ErrClosed", err)
	}
	if err := c.Disconnect(ctx); !errors.Is(err, client.ErrClosed) {
		t.Errorf("Disconnect after Close = %v, want ErrClosed", err)
	}
	if tok := c.PublishAsync(ctx, "a", 1, false, nil); !errors.Is(tok.Wait(ctx), client.ErrClosed) {
		t.Errorf("PublishAsync after Close = %v, want ErrClosed", tok.Err())
	}
}

// TestDisconnectFromOnEvent: the callback runs on the connection manager's
// goroutine, which Disconnect must not wait for.
func TestDisconnectFromOnEvent(t *testing.T) {
	t.Parallel()
	s, topts := newScripted(t)
	done := make(chan error, 1)
	var c *client.Client
	c, err := client.New(client.Options{Servers: []string{"mqtt://scripted"}, Transport: topts,
		OnEvent: func(e client.Event) {
			if e.Kind == client.Connected {
				done <- c.Disconnect(testCtx(t, 5*time.Second))
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	go c.Connect(testCtx(t, 5*time.Second))
	p := s.accept()
	p.handshake(false)
	p.expect(packet.DISCONNECT) // [MQTT-3.14.4-2]
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Disconnect in OnEvent: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Disconnect in OnEvent did not return")
	}
}

// A message followed by the first bytes of a large one is delivered and
// acknowledged at once, not when the large one has arrived.
func TestDeliveredBeforeNextPacketCompletes(t *testing.T) {
	t.Parallel()
	got := make(chan string, 10)
	c, _, p := startScripted(t, client.Options{DefaultHandler: func(m *client.Message) { got <- m.Topic }})
	defer c.Close()
	small, err := (&packet.Publish{QoS: 1, PacketID: 1, Topic: []byte("small")}).Append(nil)
	if err != nil {
		t.Fatal(err)
	}
	large, err := (&packet.Publish{QoS: 1, PacketID: 2, Topic: []byte("large"), Payload: make([]byte, 100<<10)}).Append(nil)
	if err != nil {
		t.Fatal(err)
	}
	p.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := p.c.Write(append(small, large[:100]...)); err != nil {
		t.Fatal(err)
	}
	if ack := p.expect(packet.PUBACK).(*packet.Puback); ack.PacketID != 1 {
		t.Fatalf("PUBACK for %d, want 1", ack.PacketID)
	}
	if topic := <-got; topic != "small" {
		t.Fatalf("delivered %q, want small", topic)
	}
	if _, err := p.c.Write(large[100:]); err != nil {
		t.Fatal(err)
	}
	if ack := p.expect(packet.PUBACK).(*packet.Puback); ack.PacketID != 2 {
		t.Fatalf("PUBACK for %d, want 2", ack.PacketID)
	}
	if topic := <-got; topic != "large" {
		t.Fatalf("delivered %q, want large", topic)
	}
}

// A broker that stops reading while a write is under way is found dead
// like one that stops answering: after 1.5 times the keepalive without
// progress [MQTT-3.1.2-24], not never. The pipe takes nothing unless read.
func TestWriteStalledBroker(t *testing.T) {
	t.Parallel()
	lost := make(chan error, 1)
	c, _, p := startScripted(t, client.Options{KeepAlive: time.Second, NoReconnect: true, OnEvent: func(e client.Event) {
		if e.Kind == client.ConnectionLost {
			lost <- e.Err
		}
	}})
	defer c.Close()
	_ = p // connected; it reads nothing from now on
	start := time.Now()
	published := make(chan error, 1)
	go func() { published <- c.Publish(testCtx(t, 10*time.Second), "big", 0, false, make([]byte, 1<<20)) }()
	select {
	case err := <-lost:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("connection lost with %v, want a write timeout", err)
		}
		if d := time.Since(start); d > 4*time.Second {
			t.Errorf("found dead after %v, want about 1.5 s", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a broker that reads nothing was not found dead in 10 s")
	}
	if err := <-published; err == nil {
		t.Errorf("Publish of the message that never left returned nil")
	}
}

// Disconnect tells the caller when what it waited for did not complete:
// the connection lost while a QoS 1 message awaited its PUBACK is an
// error, not nil (tern pub then exits 7, not 0).
func TestDisconnectConnectionLost(t *testing.T) {
	t.Parallel()
	for _, reconnect := range []bool{false, true} {
		c, _, p := startScripted(t, client.Options{NoReconnect: !reconnect})
		tok := c.PublishAsync(testCtx(t, 5*time.Second), "t", 1, false, []byte("x"))
		p.expect(packet.PUBLISH) // and no PUBACK
		done := make(chan error, 1)
		go func() { done <- c.Disconnect(testCtx(t, 5*time.Second)) }()
		time.Sleep(50 * time.Millisecond) // Disconnect waits for the PUBACK
		p.c.Close()                       // Disconnect does not wait for a reconnection
		err := <-done
		if !errors.Is(err, client.ErrConnectionLost) {
			t.Errorf("reconnect %v: Disconnect = %v, want ErrConnectionLost", reconnect, err)
		}
		if err := tok.Wait(testCtx(t, time.Second)); err == nil {
			t.Errorf("reconnect %v: the message's token completed without error", reconnect)
		}
	}
}

// Close ends a Connect whose server accepted the connection and never
// answers: Connect returns ErrClosed at once, not when ConnectTimeout ends.
func TestCloseDuringConnect(t *testing.T) {
	t.Parallel()
	s, topts := newScripted(t)
	c, err := client.New(client.Options{Servers: []string{"mqtt://scripted"}, Transport: topts, ConnectTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	connected := make(chan error, 1)
	go func() { connected <- c.Connect(context.Background()) }()
	p := s.accept()
	p.expect(packet.CONNECT) // and no CONNACK
	start := time.Now()
	c.Close()
	select {
	case err := <-connected:
		if !errors.Is(err, client.ErrClosed) {
			t.Errorf("Connect = %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Connect still waiting 5 s after Close")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Close and Connect took %v", d)
	}
}

// Close does not wait forever for a handler blocked in a Publish that needs
// an acknowledgement: the Publish fails with ErrClosed, and Close returns.
func TestCloseWhileHandlerPublishes(t *testing.T) {
	t.Parallel()
	published := make(chan error, 1)
	var c *client.Client
	c, _, p := startScripted(t, client.Options{DefaultHandler: func(m *client.Message) {
		published <- c.Publish(context.Background(), "reply", 1, false, []byte("r"))
	}})
	p.send(&packet.Publish{Topic: []byte("in"), Payload: []byte("m")})
	p.expect(packet.PUBLISH) // the reply, never acknowledged
	closed := make(chan error, 1)
	go func() { closed <- c.Close() }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close still waiting 5 s later for the handler's Publish")
	}
	if err := <-published; !errors.Is(err, client.ErrClosed) {
		t.Errorf("the handler's Publish = %v, want ErrClosed", err)
	}
}

// OnEvent may call the client's methods [the Options doc]: Close from a
// Reconnecting event of a Connect that retries ends that Connect
// (ErrClosed), instead of each waiting for the other.
func TestCloseFromOnEventDuringConnect(t *testing.T) {
	t.Parallel()
	var c *client.Client
	closed := make(chan error, 1)
	c, err := client.New(client.Options{
		Servers:      []string{"mqtt://scripted"},
		ConnectRetry: true,
		Transport: &transport.Options{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return nil, errors.New("nothing listens")
		}},
		OnEvent: func(e client.Event) {
			if e.Kind == client.Reconnecting {
				closed <- c.Close()
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	connected := make(chan error, 1)
	go func() { connected <- c.Connect(testCtx(t, 10*time.Second)) }()
	select {
	case err := <-connected:
		if !errors.Is(err, client.ErrClosed) {
			t.Errorf("Connect = %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Connect and Close from its OnEvent wait for each other")
	}
	if err := <-closed; err != nil {
		t.Errorf("Close from OnEvent = %v", err)
	}
}

// A Publish that waits for its acknowledgement, or a Subscribe, from
// OnEvent on ConnectionLost would wait for the reconnection its own
// callback holds up: it fails at once (ErrCallbackWait), the message stays
// queued and leaves on the next connection.
func TestCallsFromOnEventWhileDown(t *testing.T) {
	t.Parallel()
	calls := make(chan error, 2)
	var c *client.Client
	c, s, p := startScripted(t, client.Options{OnEvent: func(e client.Event) {
		if e.Kind == client.ConnectionLost {
			calls <- c.Publish(context.Background(), "t", 1, false, []byte("queued"))
			_, err := c.Subscribe(context.Background(), client.Subscription{Filter: "f", QoS: 1})
			calls <- err
		}
	}})
	defer c.Close()
	p.c.Close()
	for range 2 {
		select {
		case err := <-calls:
			if !errors.Is(err, client.ErrCallbackWait) {
				t.Errorf("call from OnEvent while down = %v, want ErrCallbackWait", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("a call from OnEvent while down is still waiting")
		}
	}
	p = s.accept() // the client reconnects
	p.handshake(false)
	if pub := p.expect(packet.PUBLISH).(*packet.Publish); string(pub.Payload) != "queued" {
		t.Errorf("sent %q after the reconnection, want the queued message", pub.Payload)
	}
}

// With KeepSession false, a QoS 2 exchange cut by the loss of the
// connection ends with the broker's session: the message is given up with
// ErrSessionEnded, PUBREC or not, and never sent again (the broker may
// have delivered it, on PUBLISH, and would deliver it twice; or may drop
// it, held for a PUBREL that never comes, while the client said done).
func TestQoS2CleanSessionCut(t *testing.T) {
	t.Parallel()
	c, s, p := startScripted(t, client.Options{})
	defer c.Close()
	ctx := testCtx(t, 5*time.Second)
	t1 := c.PublishAsync(ctx, "t", 2, false, []byte("a"))
	t2 := c.PublishAsync(ctx, "t", 2, false, []byte("b"))
	a := p.expect(packet.PUBLISH).(*packet.Publish)
	p.expect(packet.PUBLISH)
	p.send(&packet.Pubrec{PacketID: a.PacketID})
	p.expect(packet.PUBREL)
	p.c.Close()
	p = s.accept()
	if c := p.handshake(false); !c.CleanSession {
		t.Fatal("the reconnection is not clean")
	}
	for i, tok := range []*client.Token{t1, t2} {
		if err := tok.Wait(ctx); !errors.Is(err, client.ErrSessionEnded) {
			t.Errorf("message %d: %v, want ErrSessionEnded", i+1, err)
		}
	}
	p.silent(200 * time.Millisecond) // neither is sent again
	if n := c.Stats().SessionEnded; n != 2 {
		t.Errorf("Stats.SessionEnded = %d, want 2", n)
	}
}

// A broker that goes silent with a message in flight, connection after
// connection, has not refused it: keepalive and write timeouts are not
// cuts (Options.MaxCuts), and the message is sent again until it is
// acknowledged, not given up with a MessageError.
func TestSilentBrokerNotACut(t *testing.T) {
	t.Parallel()
	c, s, p := startScripted(t, client.Options{KeepAlive: time.Second, ReconnectMin: time.Millisecond, ReconnectMax: 10 * time.Millisecond})
	defer c.Close()
	tok := c.PublishAsync(testCtx(t, 20*time.Second), "t", 1, false, []byte("x"))
	for i := range client.DefaultMaxCuts {
		p.expect(packet.PUBLISH) // then nothing: not even a PINGRESP
		p = s.accept()
		p.handshake(false)
		select {
		case <-tok.Done():
			t.Fatalf("after %d silent connections: %v", i+1, tok.Err())
		default:
		}
	}
	pub := p.expect(packet.PUBLISH).(*packet.Publish)
	p.send(&packet.Puback{PacketID: pub.PacketID})
	if err := tok.Wait(testCtx(t, 5*time.Second)); err != nil {
		t.Errorf("acknowledged after %d silent connections: %v", client.DefaultMaxCuts, err)
	}
}

// The same from OnEvent on Connected (a "birth" message): a Publish that
// waits for its PUBACK, or a Subscribe for its SUBACK, when the connection
// is lost meanwhile fails with ErrCallbackWait rather than hold up the
// handling of that loss for ever; the message leaves on the next
// connection.
func TestCallsFromOnEventConnectedThenLost(t *testing.T) {
	t.Parallel()
	calls := make(chan error, 2)
	var once sync.Once
	handOver := make(chan *client.Client, 1) // the callback runs before startScripted returns
	c, s, p := startScripted(t, client.Options{OnEvent: func(e client.Event) {
		if e.Kind == client.Connected {
			once.Do(func() {
				c := <-handOver
				calls <- c.Publish(context.Background(), "birth", 1, false, []byte("up"))
				_, err := c.Subscribe(context.Background(), client.Subscription{Filter: "f", QoS: 1})
				calls <- err
			})
		}
	}})
	defer c.Close()
	handOver <- c
	p.expect(packet.PUBLISH) // no PUBACK: the connection is lost first
	p.c.Close()
	for range 2 {
		select {
		case err := <-calls:
			if !errors.Is(err, client.ErrCallbackWait) {
				t.Errorf("call from OnEvent(Connected), connection lost = %v, want ErrCallbackWait", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("a call from OnEvent(Connected) still waits after the connection was lost")
		}
	}
	p = s.accept()
	p.handshake(false)
	if pub := p.expect(packet.PUBLISH).(*packet.Publish); string(pub.Payload) != "up" {
		t.Errorf("sent %q after the reconnection, want the birth message", pub.Payload)
	}
}

// With NoReconnect, a call after the connection is lost says why: the
// error wraps ErrNotConnected and the cause of the loss.
func TestNoReconnectCallSaysWhy(t *testing.T) {
	t.Parallel()
	c, _, p := startScripted(t, client.Options{NoReconnect: true})
	defer c.Close()
	p.c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for c.IsConnected() && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	_, err := c.Subscribe(testCtx(t, 5*time.Second), client.Subscription{Filter: "f", QoS: 1})
	if !errors.Is(err, client.ErrNotConnected) || !errors.Is(err, client.ErrConnectionLost) {
		t.Errorf("Subscribe after the loss = %v, want ErrNotConnected and ErrConnectionLost with the cause", err)
	}
}
