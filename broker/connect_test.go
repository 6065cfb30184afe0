package broker_test

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ternmq/mqtt/broker"
	"github.com/ternmq/mqtt/packet"
)

// [MQTT-3.1.4-4] [MQTT-3.2.0-1] [MQTT-3.2.2-1] A valid CONNECT is answered
// first by CONNACK 0, session present 0 for a clean session.
func TestConnectAccepted(t *testing.T) {
	srv := newServer(t)
	s := dial(t, srv, "c")
	s.send(&packet.Connect{ClientID: []byte("c"), CleanSession: true, KeepAlive: 30})
	s.sendRaw([]byte{0xc0, 0x00}) // PINGREQ right behind, before the CONNACK is read
	s.expect(&packet.Connack{})   // the first packet [MQTT-3.2.0-1]
	s.expect(&packet.Pingresp{})  // [MQTT-3.12.4-1]
	s.disconnect()
}

// [MQTT-3.1.3-5] The server accepts 1 to 23 characters of 0-9a-zA-Z, and the
// protocol level 3 (MQIsdp) as well.
func TestConnectClientIDs(t *testing.T) {
	srv := newServer(t)
	for _, id := range []string{"a", "0123456789abcdefghijklm", "ABCxyz09", strings.Repeat("z", 200), "ü/#+"} {
		s := dial(t, srv, id)
		s.send(&packet.Connect{ClientID: []byte(id), CleanSession: true})
		s.expect(&packet.Connack{})
		s.disconnect()
	}
	s := dial(t, srv, "v3")
	s.send(&packet.Connect{Level: packet.Level31, ClientID: []byte("v3"), CleanSession: true})
	s.expect(&packet.Connack{})
}

// [MQTT-3.1.3-6] An empty client id with CleanSession 1 gets a unique id
// assigned: two such clients coexist (no takeover).
func TestConnectEmptyClientID(t *testing.T) {
	var (
		mu  sync.Mutex // OnEvent runs on each connection's goroutine
		ids []string
	)
	srv := newServer(t, func(o *broker.Options) {
		o.OnEvent = func(e *broker.Event) {
			if e.Kind == broker.EventConnect {
				mu.Lock()
				ids = append(ids, e.Client.ID)
				mu.Unlock()
			}
		}
	})
	a := dial(t, srv, "a")
	a.send(&packet.Connect{CleanSession: true})
	a.expect(&packet.Connack{})
	b := dial(t, srv, "b")
	b.send(&packet.Connect{CleanSession: true})
	b.expect(&packet.Connack{})
	// Both still served: each gets its own PINGRESP.
	a.send(&packet.Pingreq{})
	a.expect(&packet.Pingresp{})
	b.send(&packet.Pingreq{})
	b.expect(&packet.Pingresp{})
	mu.Lock()
	defer mu.Unlock()
	if len(ids) != 2 || ids[0] == "" || ids[0] == ids[1] {
		t.Fatalf("assigned ids %q, want two distinct non-empty ones", ids)
	}
}

// Each refusal with a return code: CONNACK with the code, then the connection
// closes [MQTT-3.2.2-5], and nothing sent after the CONNECT is acted on
// [MQTT-3.1.4-5].
func TestConnectRefused(t *testing.T) {
	auth := func(o *broker.Options) {
		o.Authenticate = func(c *broker.Client, password []byte) packet.ReturnCode {
			switch {
			case c.Username == "bad":
				return packet.RefusedBadUsernameOrPassword
			case c.Username == "denied":
				return packet.RefusedNotAuthorized
			case c.ID == "busy":
				return packet.RefusedServerUnavailable
			}
			return packet.Accepted
		}
	}
	srv := newServer(t, auth)
	watcher := connect(t, srv, "watcher", true, false)
	watcher.subscribe(1, "#", 0)

	tests := []struct {
		name string
		raw  []byte // CONNECT bytes
		code packet.ReturnCode
	}{
		// [MQTT-3.1.2-2] protocol level 5: CONNACK 0x01.
		{"level 5", []byte{0x10, 0x0d, 0, 4, 'M', 'Q', 'T', 'T', 5, 0x02, 0, 0, 0, 1, 'x'}, packet.RefusedProtocolVersion},
		// [MQTT-3.1.3-8] [MQTT-3.1.3-9] empty id, CleanSession 0: 0x02.
		{"empty id persistent", []byte{0x10, 0x0c, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x00, 0, 0, 0, 0}, packet.RefusedIdentifierRejected},
		{"busy", mustConnect(&packet.Connect{ClientID: []byte("busy"), CleanSession: true}), packet.RefusedServerUnavailable},
		{"bad password", mustConnect(&packet.Connect{ClientID: []byte("x"), CleanSession: true, HasUsername: true, Username: []byte("bad")}), packet.RefusedBadUsernameOrPassword},
		{"not authorized", mustConnect(&packet.Connect{ClientID: []byte("x"), CleanSession: true, HasUsername: true, Username: []byte("denied"), HasPassword: true, Password: []byte("p")}), packet.RefusedNotAuthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := dial(t, srv, tt.name)
			// A PUBLISH right behind the CONNECT must not be acted on.
			b := append(tt.raw, mustPublish(pub("leak", "x", 0, 0))...)
			s.sendRaw(b)
			s.expect(&packet.Connack{ReturnCode: tt.code})
			s.expectClose()
		})
	}
	watcher.expectNothing()
	if got := srv.Broker.Stats().Refused; got != int64(len(tests)) {
		t.Errorf("Stats.Refused = %d, want %d", got, len(tests))
	}
}

// [MQTT-3.1.4-1] [MQTT-3.2.2-6] [MQTT-3.1.2-1] A CONNECT that breaks section 3.1
// (or is no CONNECT at all [MQTT-3.1.0-1]) closes the connection without any
// CONNACK.
func TestConnectMalformed(t *testing.T) {
	srv := newServer(t)
	tests := []struct {
		name string
		raw  []byte
	}{
		{"protocol name MQTX", []byte{0x10, 0x0d, 0, 4, 'M', 'Q', 'T', 'X', 4, 0x02, 0, 0, 0, 1, 'x'}}, // [MQTT-3.1.2-1]
		{"reserved flag", []byte{0x10, 0x0d, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x03, 0, 0, 0, 1, 'x'}},
		{"bad fixed header flags", []byte{0x11, 0x0d, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 0, 0, 1, 'x'}},
		{"truncated", []byte{0x10, 0x0d, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 0, 0, 5, 'x'}},
		{"password without user name", []byte{0x10, 0x10, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x42, 0, 0, 0, 1, 'x', 0, 1, 'p'}},
		{"PINGREQ first", []byte{0xc0, 0x00}},
		{"PUBLISH first", mustPublish(pub("a", "b", 0, 0))},
		{"garbage", []byte{0xff, 0xff, 0xff, 0xff, 0xff}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := dial(t, srv, tt.name)
			s.sendRaw(tt.raw)
			s.expectClose()
		})
	}
}

// A connection that sends no CONNECT within Options.ConnectTimeout is closed.
func TestConnectTimeout(t *testing.T) {
	srv := newServer(t, func(o *broker.Options) { o.ConnectTimeout = 100 * time.Millisecond })
	s := dial(t, srv, "silent")
	s.sendRaw([]byte{0x10}) // half a fixed header
	s.expectClose()
}

// [MQTT-3.1.0-2] A second CONNECT is a protocol violation: the connection
// closes, and the will is published since no DISCONNECT came.
func TestSecondConnect(t *testing.T) {
	srv := newServer(t)
	w := connect(t, srv, "w", true, false)
	w.subscribe(1, "will", 0)
	s := dial(t, srv, "c")
	s.send(&packet.Connect{ClientID: []byte("c"), CleanSession: true, Will: true, WillTopic: []byte("will"), WillMessage: []byte("gone")})
	s.expect(&packet.Connack{})
	s.send(&packet.Connect{ClientID: []byte("c"), CleanSession: true})
	s.expectClose()
	checkPublish(t, w.expectPublish(), "will", "gone", 0, false)
}

// Options.MaxConnections: a connection over the limit gets CONNACK 0x03.
func TestMaxConnections(t *testing.T) {
	srv := newServer(t, func(o *broker.Options) { o.MaxConnections = 2 })
	a := connect(t, srv, "a", true, false)
	connect(t, srv, "b", true, false)
	c := dial(t, srv, "c")
	c.send(&packet.Connect{ClientID: []byte("c"), CleanSession: true})
	c.expect(&packet.Connack{ReturnCode: packet.RefusedServerUnavailable})
	c.expectClose()
	a.disconnect()
	waitFor(t, "a's connection to end", func() bool { return srv.Broker.Stats().Connections == 1 })
	connect(t, srv, "d", true, false)
}

// [MQTT-3.1.4-2] A second connection with the id of a connected client takes
// over: the first is closed, and the session goes on with the second.
func TestTakeover(t *testing.T) {
	srv := newServer(t)
	w := connect(t, srv, "w", true, false)
	w.subscribe(1, "will/#", 0)

	first := dial(t, srv, "first")
	first.send(&packet.Connect{ClientID: []byte("dev"), Will: true, WillTopic: []byte("will/dev"), WillMessage: []byte("lost")})
	first.expect(&packet.Connack{})
	first.subscribe(1, "t", 1)

	second := dial(t, srv, "second")
	second.send(&packet.Connect{ClientID: []byte("dev")})
	second.expect(&packet.Connack{SessionPresent: true}) // [MQTT-3.2.2-2]
	first.expectClose()
	// The first connection ended without DISCONNECT: its will goes out.
	checkPublish(t, w.expectPublish(), "will/dev", "lost", 0, false)

	// The subscription made on the first connection serves the second.
	p := connect(t, srv, "p", true, false)
	p.publish(pub("t", "hello", 1, 7))
	got := second.expectPublish()
	checkPublish(t, got, "t", "hello", 1, false)
	second.ack(got)
}

// [MQTT-3.1.2-24] A client silent for one and a half keepalive periods is
// disconnected as if the network failed: its will is published. A client that
// keeps talking within the period is not.
func TestKeepAlive(t *testing.T) {
	srv := newServer(t)
	w := connect(t, srv, "w", true, false)
	w.subscribe(1, "will", 0)

	s := dial(t, srv, "sleepy")
	start := time.Now()
	s.send(&packet.Connect{ClientID: []byte("sleepy"), CleanSession: true, KeepAlive: 1, Will: true, WillTopic: []byte("will"), WillMessage: []byte("timeout")})
	s.expect(&packet.Connack{})
	s.expectClose()
	if d := time.Since(start); d < 1400*time.Millisecond {
		t.Errorf("closed after %v, before 1.5 keepalive periods", d)
	}
	checkPublish(t, w.expectPublish(), "will", "timeout", 0, false)

	// A client pinging every half second stays.
	a := dial(t, srv, "awake")
	a.send(&packet.Connect{ClientID: []byte("awake"), CleanSession: true, KeepAlive: 1})
	a.expect(&packet.Connack{})
	for range 4 {
		time.Sleep(500 * time.Millisecond)
		a.send(&packet.Pingreq{})
		a.expect(&packet.Pingresp{}) // [MQTT-3.12.4-1]
	}
}

func mustConnect(p *packet.Connect) []byte {
	b, err := p.Append(nil)
	if err != nil {
		panic(err)
	}
	return b
}

func mustPublish(p *packet.Publish) []byte {
	b, err := p.Append(nil)
	if err != nil {
		panic(err)
	}
	return b
}

// Options.MaxPacketSize: a larger packet closes the connection, as a lost
// connection (the will is published); smaller ones pass.
func TestMaxPacketSize(t *testing.T) {
	srv := newServer(t, func(o *broker.Options) { o.MaxPacketSize = 100 })
	w := connect(t, srv, "w", true, false)
	w.subscribe(1, "#", 0)
	s := dial(t, srv, "big")
	s.send(&packet.Connect{ClientID: []byte("big"), CleanSession: true, Will: true, WillTopic: []byte("will"), WillMessage: []byte("too big")})
	s.expect(&packet.Connack{})
	s.publish(pub("t", strings.Repeat("x", 90), 0, 0)) // 2+3+90 = 95 bytes
	checkPublish(t, w.expectPublish(), "t", strings.Repeat("x", 90), 0, false)
	s.send(pub("t", strings.Repeat("x", 96), 0, 0)) // 101 bytes
	s.expectClose()
	checkPublish(t, w.expectPublish(), "will", "too big", 0, false)
}
