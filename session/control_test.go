package session

import (
	"errors"
	"testing"
	"time"

	"github.com/ternmq/mqtt/packet"
)

func TestRoleViolations(t *testing.T) {
	sub := &packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: []byte("a")}}}
	unsub := &packet.Unsubscribe{PacketID: 1, Filters: [][]byte{[]byte("a")}}
	tests := []struct {
		role Role
		p    packet.Packet
		rule string
	}{
		{Server, &packet.Connect{ClientID: []byte("x")}, "MQTT-3.1.0-2"},
		{Server, &packet.Connack{}, "3.2"},
		{Server, &packet.Suback{PacketID: 1, ReturnCodes: []byte{0}}, "3.9"},
		{Server, &packet.Unsuback{PacketID: 1}, "3.11"},
		{Server, &packet.Pingresp{}, "3.13"},
		{Client, &packet.Connect{ClientID: []byte("x")}, "3.1"},
		{Client, &packet.Connack{}, "3.2"}, // a second CONNACK
		{Client, sub, "3.8"},
		{Client, unsub, "3.10"},
		{Client, &packet.Pingreq{}, "3.12"},
		{Client, &packet.Disconnect{}, "3.14"},
		{Client, &packet.Suback{PacketID: 1, ReturnCodes: []byte{0}}, "MQTT-2.3.1-7"},
		{Client, &packet.Unsuback{PacketID: 1}, "MQTT-2.3.1-7"},
	}
	for _, tt := range tests {
		t.Run(tt.role.String()+"/"+tt.p.Type().String(), func(t *testing.T) {
			h := connected(t, Config{Role: tt.role})
			h.violation(tt.p, tt.rule)
		})
	}
}

func TestClientConnect(t *testing.T) {
	h := newHarness(t, Config{Role: Client})
	h.publish(1, "a")
	if _, err := h.s.Subscribe(&packet.Subscribe{Subscriptions: []packet.Subscription{{Filter: []byte("a")}}}); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("Subscribe before CONNACK = %v, want ErrNotConnected", err)
	}
	if err := h.s.Receive(&packet.Pingresp{}, h.now); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("Receive with no connection = %v, want ErrNotConnected", err)
	}
	if err := h.s.Connect(&packet.Connect{ClientID: []byte("c1"), KeepAlive: 10}, h.now); err != nil {
		t.Fatal(err)
	}
	if err := h.s.Connect(&packet.Connect{ClientID: []byte("c1")}, h.now); !errors.Is(err, ErrState) {
		t.Fatalf("second Connect = %v, want ErrState", err)
	}
	// The CONNECT is the first packet, and nothing follows before the
	// CONNACK [MQTT-3.1.0-1].
	eq(t, "sent", h.out(), "CONNECT c1 clean=false")
	h.publish(1, "b")
	eq(t, "sent before CONNACK", h.out())
	// Anything but CONNACK first from the server is a violation [MQTT-3.2.0-1].
	h2 := newHarness(t, Config{Role: Client})
	h2.s.Connect(&packet.Connect{ClientID: []byte("c1")}, h.now)
	h2.violation(pub(0, 0, false, "x"), "MQTT-3.2.0-1")

	evs := h.recv(&packet.Connack{})
	if len(evs) != 1 || evs[0].Kind != EventConnack || evs[0].ReturnCode != packet.Accepted || evs[0].SessionPresent {
		t.Fatalf("events: %+v", evs)
	}
	if !h.s.Connected() {
		t.Fatal("not connected after CONNACK")
	}
	eq(t, "sent after CONNACK", h.out(), "PUBLISH q1 id1 a", "PUBLISH q1 id2 b")
}

func TestClientConnackRefused(t *testing.T) {
	h := newHarness(t, Config{Role: Client})
	h.publish(1, "a")
	h.s.Connect(&packet.Connect{ClientID: []byte("c1")}, h.now)
	h.out()
	evs := h.recv(&packet.Connack{ReturnCode: packet.RefusedNotAuthorized})
	if len(evs) != 1 || evs[0].Kind != EventConnack || evs[0].ReturnCode != packet.RefusedNotAuthorized {
		t.Fatalf("events: %+v", evs)
	}
	if h.s.Connected() {
		t.Fatal("connected after a refusal")
	}
	eq(t, "sent", h.out())
	h.s.Disconnected()
	if h.s.Queued() != 1 {
		t.Fatal("queued message lost by a refusal")
	}
}

func TestClientSubscribe(t *testing.T) {
	h := connected(t, Config{Role: Client})
	subs := []packet.Subscription{{Filter: []byte("a/+"), QoS: 1}, {Filter: []byte("b"), QoS: 2}}
	hs, err := h.s.Subscribe(&packet.Subscribe{PacketID: 77, Subscriptions: subs})
	if err != nil {
		t.Fatal(err)
	}
	hu, _ := h.s.Unsubscribe(&packet.Unsubscribe{Filters: [][]byte{[]byte("c")}})
	if hs == hu || hs == 0 || hu == 0 {
		t.Fatalf("handles %d and %d", hs, hu)
	}
	// The session picks the id; the caller's packet is left as it was.
	eq(t, "sent", h.out(), "SUBSCRIBE 1 a/+", "UNSUBSCRIBE 2 c")
	// A SUBACK must carry one code per filter [MQTT-3.8.4-5].
	h.violation(&packet.Suback{PacketID: 1, ReturnCodes: []byte{1}}, "MQTT-3.8.4-5")
	// An UNSUBACK for the SUBSCRIBE's id, or the reverse, matches nothing [MQTT-2.3.1-7].
	h.violation(&packet.Unsuback{PacketID: 1}, "MQTT-2.3.1-7")
	h.violation(&packet.Suback{PacketID: 2, ReturnCodes: []byte{0}}, "MQTT-2.3.1-7")
	evs := h.recv(&packet.Suback{PacketID: 1, ReturnCodes: []byte{1, packet.SubackFailure}})
	if len(evs) != 1 || evs[0].Kind != EventSubscribed || evs[0].Handle != hs || string(evs[0].ReturnCodes) != "\x01\x80" {
		t.Fatalf("events: %+v", evs)
	}
	evs = h.recv(&packet.Unsuback{PacketID: 2})
	if len(evs) != 1 || evs[0].Kind != EventUnsubscribed || evs[0].Handle != hu {
		t.Fatalf("events: %+v", evs)
	}
	// Answered: the ids are free, and a second answer is a violation.
	h.violation(&packet.Suback{PacketID: 1, ReturnCodes: []byte{1, 1}}, "MQTT-2.3.1-7")
	h.publish(1, "x")
	eq(t, "sent", h.out(), "PUBLISH q1 id3 x")
}

func TestServerControl(t *testing.T) {
	h := connected(t, Config{Role: Server})
	// PINGREQ is answered by the session [MQTT-3.12.4-1].
	h.recv(&packet.Pingreq{})
	eq(t, "sent", h.out(), "PINGRESP")
	// SUBSCRIBE is reported, and the caller's answer carries its id
	// [MQTT-3.8.4-1] [MQTT-3.8.4-2].
	evs := h.recv(&packet.Subscribe{PacketID: 5, Subscriptions: []packet.Subscription{{Filter: []byte("a"), QoS: 2}}})
	if len(evs) != 1 || evs[0].Kind != EventSubscribe || evs[0].PacketID != 5 || string(evs[0].Subscribe.Subscriptions[0].Filter) != "a" {
		t.Fatalf("events: %+v", evs)
	}
	if err := h.s.Suback(5, []byte{1}); err != nil {
		t.Fatal(err)
	}
	// UNSUBSCRIBE likewise, answered even if nothing was removed
	// [MQTT-3.10.4-4] [MQTT-3.10.4-5].
	evs = h.recv(&packet.Unsubscribe{PacketID: 6, Filters: [][]byte{[]byte("zz")}})
	if len(evs) != 1 || evs[0].Kind != EventUnsubscribe || evs[0].PacketID != 6 {
		t.Fatalf("events: %+v", evs)
	}
	h.s.Unsuback(6)
	eq(t, "sent", h.out(), "SUBACK 5 [1]", "UNSUBACK 6")
	if err := h.s.Suback(5, []byte{7}); err == nil {
		t.Fatal("SUBACK with a reserved return code accepted [MQTT-3.9.3-2]")
	}
	// DISCONNECT is reported, and nothing may follow it [MQTT-3.14.4-2].
	if evs := h.recv(&packet.Disconnect{}); len(evs) != 1 || evs[0].Kind != EventDisconnect {
		t.Fatalf("events: %+v", evs)
	}
	h.violation(&packet.Pingreq{}, "MQTT-3.14.4-2")
}

func TestServerAccept(t *testing.T) {
	h := newHarness(t, Config{Role: Server})
	// Before Accept, Receive has no connection.
	if err := h.s.Receive(&packet.Pingreq{}, h.now); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("Receive before Accept = %v", err)
	}
	h.publish(1, "queued") // for a disconnected persistent session [MQTT-3.1.2-5]
	// Session present as the caller says [MQTT-3.2.2-2] [MQTT-3.2.2-3].
	if err := h.s.Accept(&packet.Connect{ClientID: []byte("c")}, true, h.now); err != nil {
		t.Fatal(err)
	}
	eq(t, "sent", h.out(), "CONNACK present=true", "PUBLISH q1 id1 queued")
	if err := h.s.Accept(&packet.Connect{ClientID: []byte("c")}, true, h.now); !errors.Is(err, ErrState) {
		t.Fatalf("Accept twice = %v, want ErrState", err)
	}
	h.s.Disconnected()
	// A clean session: the old state is discarded [MQTT-3.1.2-6] and
	// session present is 0 [MQTT-3.2.2-1].
	h.recvNothing()
	if err := h.s.Accept(&packet.Connect{ClientID: []byte("c"), CleanSession: true}, true, h.now); err != nil {
		t.Fatal(err)
	}
	if k := kinds(h.events()); k != "dropped(1)" {
		t.Fatalf("events: %v", k)
	}
	eq(t, "sent", h.out(), "CONNACK present=false")
	if h.s.Inflight() != 0 {
		t.Fatal("state kept on a clean session")
	}
}

func (h *harness) recvNothing() {
	h.t.Helper()
	if evs := h.events(); len(evs) != 0 {
		h.t.Fatalf("unexpected events: %v", kinds(evs))
	}
}

func TestClientCleanSession(t *testing.T) {
	// A clean session ends the old one [MQTT-3.1.2-6]: incoming QoS 2 state
	// is dropped; unfinished QoS 1 messages are sent as new messages; a
	// QoS 2 message whose PUBLISH left, PUBREC or not, is given up with
	// ErrSessionEnded: the broker may have delivered it (sent again, it
	// would arrive twice) or may drop it with the session (reported done,
	// it would be lost without a word).
	h := connected(t, Config{Role: Client})
	h.publish(1, "a")
	h.publish(2, "b")
	h.publish(2, "c")
	h.out()
	h.recv(&packet.Pubrec{PacketID: 3})
	h.recv(pub(2, 9, false, "in"))
	h.out()
	h.s.Disconnected()
	h.publish(1, "d")
	if err := h.s.Connect(&packet.Connect{ClientID: []byte("c1"), CleanSession: true}, h.now); err != nil {
		t.Fatal(err)
	}
	evs := h.events()
	if k := kinds(evs); k != "dropped(2) dropped(3)" {
		t.Fatalf("events: %v", k)
	}
	for _, e := range evs {
		if !errors.Is(e.Err, ErrSessionEnded) {
			t.Errorf("dropped(%d) with Err %v, want ErrSessionEnded", e.Handle, e.Err)
		}
	}
	eq(t, "sent", h.out(), "CONNECT c1 clean=true")
	// Session present with a clean session is a violation [MQTT-3.2.2-1].
	h2 := newHarness(t, Config{Role: Client})
	h2.s.Connect(&packet.Connect{ClientID: []byte("c1"), CleanSession: true}, h.now)
	h2.violation(&packet.Connack{SessionPresent: true}, "MQTT-3.2.2-1")

	h.recv(&packet.Connack{})
	eq(t, "sent", h.out(), "PUBLISH q1 id4 a", "PUBLISH q1 id5 d")
	// The old incoming exchange is gone: id 9 is a new message.
	if kinds(h.recv(pub(2, 9, false, "new"))) != "msg(new,tag2)" {
		t.Fatal("new message taken for a duplicate of the old session's")
	}
}

func TestClientSessionNotPresent(t *testing.T) {
	// CleanSession 0 but the server has no session: incoming QoS 2 ids are
	// forgotten (the server reuses them), outgoing messages are sent again.
	h := connected(t, Config{Role: Client})
	h.publish(1, "a")
	h.out()
	h.recv(pub(2, 9, false, "in"))
	h.out()
	h.s.Disconnected()
	eq(t, "resent", h.connect(false, false), "PUBLISH q1 id1 dup a")
	if kinds(h.recv(pub(2, 9, false, "new"))) != "msg(new,tag2)" {
		t.Fatal("new message taken for a duplicate")
	}
}

func TestClientDisconnect(t *testing.T) {
	h := connected(t, Config{Role: Client})
	h.publish(1, "a")
	if err := h.s.Disconnect(); err != nil {
		t.Fatal(err)
	}
	// Nothing is queued after DISCONNECT [MQTT-3.14.4-2].
	h.publish(1, "b")
	h.recv(pub(1, 3, false, "in"))
	eq(t, "sent", h.out(), "PUBLISH q1 id1 a", "DISCONNECT")
	if err := h.s.Disconnect(); !errors.Is(err, ErrState) {
		t.Fatalf("second Disconnect = %v", err)
	}
}

func TestDisconnectedDropsRequests(t *testing.T) {
	h := connected(t, Config{Role: Client})
	hs, _ := h.s.Subscribe(&packet.Subscribe{Subscriptions: []packet.Subscription{{Filter: []byte("a")}}})
	h.s.Publish(pub(0, 0, false, "q0"))
	h.s.Disconnected()
	evs := h.events()
	if len(evs) != 1 || evs[0].Kind != EventDropped || evs[0].Handle != hs {
		t.Fatalf("events: %v", kinds(evs))
	}
	// The unsent packets are gone, and so is the request: a SUBACK for it
	// matches nothing.
	eq(t, "sent after reconnect", h.connect(false, true))
	h.violation(&packet.Suback{PacketID: 1, ReturnCodes: []byte{0}}, "MQTT-2.3.1-7")
}

func TestKeepAliveClient(t *testing.T) {
	h := newHarness(t, Config{Role: Client})
	const ka = 10 * time.Second
	h.connectKA(false, false, 10)
	if d := h.s.Deadline(); !d.Equal(t0.Add(ka)) {
		t.Fatalf("Deadline = %v, want %v", d, t0.Add(ka))
	}
	// Traffic both ways pushes the deadline.
	h.now = t0.Add(5 * time.Second)
	h.publish(0, "a")
	h.out()
	h.recv(pub(0, 0, false, "b"))
	if d := h.s.Deadline(); !d.Equal(h.now.Add(ka)) {
		t.Fatalf("Deadline = %v, want %v", d, h.now.Add(ka))
	}
	// Nothing sent for the keepalive period: PINGREQ [MQTT-3.1.2-23].
	h.now = h.now.Add(ka - time.Millisecond)
	if err := h.s.Tick(h.now); err != nil {
		t.Fatal(err)
	}
	eq(t, "sent before the period", h.out())
	h.now = h.now.Add(time.Millisecond)
	h.s.Tick(h.now)
	h.s.Tick(h.now) // one PINGREQ, however often Tick runs
	eq(t, "sent", h.out(), "PINGREQ")
	h.recv(&packet.Pingresp{})

	// A QoS 0 publisher that keeps sending still pings when it hears
	// nothing, so that it notices a dead server.
	start := h.now
	for i := 1; i <= 10; i++ {
		h.now = start.Add(time.Duration(i) * time.Second)
		h.publish(0, "x")
		h.out()
		h.s.Tick(h.now)
	}
	eq(t, "sent", h.out(), "PINGREQ")
	// Nothing received for 1.5 times the period: the server is gone.
	h.now = start.Add(ka * 3 / 2)
	if d := h.s.Deadline(); !d.Equal(h.now) {
		t.Fatalf("Deadline = %v, want %v", d, h.now)
	}
	err := h.s.Tick(h.now)
	var e *Error
	if !errors.As(err, &e) || !errors.Is(err, ErrTimeout) {
		t.Fatalf("Tick = %v, want ErrTimeout", err)
	}
}

func TestKeepAliveServer(t *testing.T) {
	h := newHarness(t, Config{Role: Server})
	h.connectKA(false, false, 10)
	// The server never pings; it waits 1.5 times the period [MQTT-3.1.2-24].
	h.now = t0.Add(14 * time.Second)
	if err := h.s.Tick(h.now); err != nil {
		t.Fatal(err)
	}
	eq(t, "sent", h.out())
	h.recv(&packet.Pingreq{})
	h.out()
	if d := h.s.Deadline(); !d.Equal(h.now.Add(15 * time.Second)) {
		t.Fatalf("Deadline = %v", d)
	}
	h.now = h.now.Add(15 * time.Second)
	if err := h.s.Tick(h.now); !errors.Is(err, ErrTimeout) {
		t.Fatalf("Tick = %v, want ErrTimeout [MQTT-3.1.2-24]", err)
	}
}

func TestKeepAliveZero(t *testing.T) {
	roles(t, func(t *testing.T, role Role) {
		h := connected(t, Config{Role: role})
		if !h.s.Deadline().IsZero() {
			t.Fatal("deadline with keepalive 0")
		}
		if err := h.s.Tick(t0.Add(1000 * time.Hour)); err != nil {
			t.Fatal(err)
		}
		eq(t, "sent", h.out())
	})
}

func TestReset(t *testing.T) {
	h := connected(t, Config{Role: Server})
	h.publish(1, "a")
	h.publish(2, "b")
	h.out()
	h.recv(pub(2, 1, false, "in"))
	h.s.Disconnected()
	h.publish(1, "c")
	if err := h.s.Reset(); err != nil {
		t.Fatal(err)
	}
	if k := kinds(h.events()); k != "dropped(1) dropped(2) dropped(3)" {
		t.Fatalf("events: %v", k)
	}
	eq(t, "sent", h.connect(false, false))
	if kinds(h.recv(pub(2, 1, false, "new"))) != "msg(new,tag2)" {
		t.Fatal("incoming state kept by Reset")
	}
	// Handles are not reused.
	if hd := h.publish(1, "d"); hd != 4 {
		t.Fatalf("handle after Reset = %d, want 4", hd)
	}
}
