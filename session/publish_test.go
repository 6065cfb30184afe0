package session

import (
	"errors"
	"strings"
	"testing"

	"github.com/ternmq/mqtt/packet"
)

// Outgoing publish flows, the same for both roles.

func TestOutgoingQoS0(t *testing.T) {
	roles(t, func(t *testing.T, role Role) {
		h := connected(t, Config{Role: role})
		if hd := h.publish(0, "a"); hd != 0 {
			t.Fatalf("QoS 0 handle = %d, want 0", hd)
		}
		// QoS 0: no packet id [MQTT-2.3.1-5], DUP 0, nothing kept [MQTT-4.3.1-1].
		eq(t, "sent", h.out(), "PUBLISH q0 a")
		if h.s.Inflight() != 0 {
			t.Fatal("QoS 0 message kept in flight")
		}
	})
}

func TestOutgoingQoS1(t *testing.T) {
	roles(t, func(t *testing.T, role Role) {
		h := connected(t, Config{Role: role})
		hd := h.publish(1, "a")
		// A fresh id, DUP 0, kept until PUBACK [MQTT-4.3.2-1].
		eq(t, "sent", h.out(), "PUBLISH q1 id1 a")
		if h.s.Inflight() != 1 {
			t.Fatal("QoS 1 message not kept")
		}
		evs := h.recv(&packet.Puback{PacketID: 1})
		if len(evs) != 1 || evs[0].Kind != EventPublished || evs[0].Handle != hd || evs[0].PacketID != 1 {
			t.Fatalf("events after PUBACK: %+v", evs)
		}
		if h.s.Inflight() != 0 {
			t.Fatal("QoS 1 message kept after PUBACK")
		}
		eq(t, "sent after PUBACK", h.out())
	})
}

func TestOutgoingQoS2(t *testing.T) {
	roles(t, func(t *testing.T, role Role) {
		h := connected(t, Config{Role: role})
		hd := h.publish(2, "a")
		eq(t, "sent", h.out(), "PUBLISH q2 id1 a")
		if evs := h.recv(&packet.Pubrec{PacketID: 1}); len(evs) != 0 {
			t.Fatalf("events after PUBREC: %v", kinds(evs))
		}
		// PUBREL with the same id [MQTT-2.3.1-6], kept until PUBCOMP [MQTT-4.3.3-1].
		eq(t, "sent after PUBREC", h.out(), "PUBREL 1")
		evs := h.recv(&packet.Pubcomp{PacketID: 1})
		if len(evs) != 1 || evs[0].Kind != EventPublished || evs[0].Handle != hd {
			t.Fatalf("events after PUBCOMP: %v", kinds(evs))
		}
		if h.s.Inflight() != 0 {
			t.Fatal("QoS 2 message kept after PUBCOMP")
		}
	})
}

func TestPacketIDsUnique(t *testing.T) {
	// A new PUBLISH, SUBSCRIBE or UNSUBSCRIBE never takes an id in use
	// [MQTT-2.3.1-2], also on the server [MQTT-2.3.1-4]; an id is free again
	// once its flow completes [MQTT-2.3.1-3].
	roles(t, func(t *testing.T, role Role) {
		h := connected(t, Config{Role: role, MaxInflight: 65535})
		h.publish(1, "a") // id 1
		h.publish(2, "b") // id 2
		h.publish(1, "c") // id 3
		h.out()
		h.recv(&packet.Puback{PacketID: 1})
		// Ids go on increasing, then wrap around skipping those in use.
		h.s.nextID = 65534
		h.publish(1, "d")
		h.publish(1, "e")
		h.publish(1, "f")
		eq(t, "ids", h.out(), "PUBLISH q1 id65535 d", "PUBLISH q1 id1 e", "PUBLISH q1 id4 f")
	})
}

func TestPacketIDsSharedWithRequests(t *testing.T) {
	// SUBSCRIBE and UNSUBSCRIBE take ids from the same space [MQTT-2.3.1-2].
	h := connected(t, Config{Role: Client})
	h.publish(1, "a")
	if _, err := h.s.Subscribe(&packet.Subscribe{Subscriptions: []packet.Subscription{{Filter: []byte("x/#"), QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.s.Unsubscribe(&packet.Unsubscribe{Filters: [][]byte{[]byte("y")}}); err != nil {
		t.Fatal(err)
	}
	h.publish(1, "b")
	eq(t, "ids", h.out(), "PUBLISH q1 id1 a", "SUBSCRIBE 2 x/#", "UNSUBSCRIBE 3 y", "PUBLISH q1 id4 b")
	// An acknowledgement of a publish flow for a request's id is a violation.
	h.violation(&packet.Puback{PacketID: 2}, "MQTT-2.3.1-6")
}

func TestPacketIDsNearlyFull(t *testing.T) {
	// With all but one id in use, the free one is found, and then ErrFull.
	h := connected(t, Config{Role: Server, MaxInflight: 65535, MaxQueued: -1})
	for i := 0; i < 65534; i++ {
		h.publish(1, "x")
	}
	h.out()
	h.recv(&packet.Puback{PacketID: 40000})
	// The cursor goes on to 65535, then wraps around to the freed id.
	h.publish(1, "y")
	eq(t, "next id", h.out(), "PUBLISH q1 id65535 y")
	h.publish(1, "z")
	eq(t, "last id", h.out(), "PUBLISH q1 id40000 z")
	if _, err := h.s.Publish(pub(1, 0, false, "over")); !errors.Is(err, ErrFull) {
		t.Fatalf("Publish with every id in use = %v, want ErrFull", err)
	}
	// The bitmap and the maps agree.
	for id := 1; id < 65536; id++ {
		if h.s.spare.bits[id>>6]&(1<<(id&63)) == 0 {
			t.Fatalf("id %d in flight but free in the bitmap", id)
		}
	}
}

func TestWindowAndQueue(t *testing.T) {
	roles(t, func(t *testing.T, role Role) {
		h := connected(t, Config{Role: role, MaxInflight: 2, MaxQueued: 2})
		h1 := h.publish(1, "a")
		h.publish(2, "b")
		h.publish(1, "c") // queued: the window is full
		h.publish(0, "d") // queued behind c, to keep the order
		if _, err := h.s.Publish(pub(1, 0, false, "e")); !errors.Is(err, ErrFull) {
			t.Fatalf("Publish with window and queue full = %v, want ErrFull", err)
		}
		if _, err := h.s.Publish(pub(0, 0, false, "e")); !errors.Is(err, ErrFull) {
			t.Fatalf("QoS 0 Publish with window and queue full = %v, want ErrFull", err)
		}
		if h.s.Inflight() != 2 || h.s.Queued() != 2 {
			t.Fatalf("inflight %d queued %d, want 2 and 2", h.s.Inflight(), h.s.Queued())
		}
		eq(t, "sent", h.out(), "PUBLISH q1 id1 a", "PUBLISH q2 id2 b")
		evs := h.recv(&packet.Puback{PacketID: 1})
		if kinds(evs) != "done(1)" || evs[0].Handle != h1 {
			t.Fatalf("events: %v", kinds(evs))
		}
		// The freed slot admits c, and d follows it.
		eq(t, "sent after PUBACK", h.out(), "PUBLISH q1 id3 c", "PUBLISH q0 d")
	})
}

func TestQueueWhileOffline(t *testing.T) {
	roles(t, func(t *testing.T, role Role) {
		h := newHarness(t, Config{Role: role, MaxQueued: 2})
		h.publish(1, "a")
		h.publish(2, "b")
		if _, err := h.s.Publish(pub(1, 0, false, "c")); !errors.Is(err, ErrFull) {
			t.Fatalf("Publish with the queue full = %v, want ErrFull", err)
		}
		if _, err := h.s.Publish(pub(0, 0, false, "q0")); !errors.Is(err, ErrNotConnected) {
			t.Fatalf("QoS 0 Publish offline = %v, want ErrNotConnected", err)
		}
		eq(t, "sent after connecting", h.connect(false, false), "PUBLISH q1 id1 a", "PUBLISH q2 id2 b")
	})
}

func TestQueueQoS0WhileOffline(t *testing.T) {
	h := newHarness(t, Config{Role: Client, QueueQoS0: true})
	h.publish(0, "a")
	h.publish(1, "b")
	h.publish(0, "c")
	eq(t, "sent after connecting", h.connect(false, false), "PUBLISH q0 a", "PUBLISH q1 id1 b", "PUBLISH q0 c")
}

func TestResume(t *testing.T) {
	// On a resumed session the unacknowledged PUBLISH packets go again with
	// DUP set and the PUBRELs again, with their original ids
	// [MQTT-4.4.0-1] [MQTT-3.3.1-1], in their original order [MQTT-4.6.0-1];
	// a message whose PUBREC arrived is never published again [MQTT-4.3.3-1].
	roles(t, func(t *testing.T, role Role) {
		h := connected(t, Config{Role: role})
		h.publish(2, "a")
		h.publish(1, "b")
		h.publish(2, "c")
		h.publish(1, "d")
		h.out()
		h.recv(&packet.Pubrec{PacketID: 3})
		h.recv(&packet.Puback{PacketID: 4})
		eq(t, "sent", h.out(), "PUBREL 3")
		h.s.Disconnected()
		h.publish(1, "e") // queued while offline
		eq(t, "resent", h.connect(false, true), "PUBLISH q2 id1 dup a", "PUBLISH q1 id2 dup b", "PUBREL 3", "PUBLISH q1 id5 e")
		// And once more, after the PUBLISH of a got its PUBREC.
		h.recv(&packet.Pubrec{PacketID: 1})
		h.s.Disconnected()
		eq(t, "resent again", h.connect(false, true), "PUBREL 1", "PUBLISH q1 id2 dup b", "PUBREL 3", "PUBLISH q1 id5 dup e")
	})
}

func TestPubrelOrder(t *testing.T) {
	// PUBRELs leave in the order the PUBRECs arrived [MQTT-4.6.0-4].
	roles(t, func(t *testing.T, role Role) {
		h := connected(t, Config{Role: role})
		h.publish(2, "a")
		h.publish(2, "b")
		h.publish(2, "c")
		h.out()
		h.recv(&packet.Pubrec{PacketID: 3})
		h.recv(&packet.Pubrec{PacketID: 1})
		h.recv(&packet.Pubrec{PacketID: 2})
		eq(t, "sent", h.out(), "PUBREL 3", "PUBREL 1", "PUBREL 2")
	})
}

func TestOutgoingAckViolations(t *testing.T) {
	tests := []struct {
		name string
		qos  byte
		pre  []packet.Packet // received first
		sent bool            // the PUBLISH is handed out before the ack
		ack  packet.Packet
		rule string
	}{
		{"PUBACK for QoS 2", 2, nil, true, &packet.Puback{PacketID: 1}, "MQTT-4.3.3-1"},
		{"PUBREC for QoS 1", 1, nil, true, &packet.Pubrec{PacketID: 1}, "MQTT-4.3.2-1"},
		{"PUBCOMP for QoS 1", 1, nil, true, &packet.Pubcomp{PacketID: 1}, "MQTT-4.3.2-1"},
		{"PUBCOMP before PUBREC", 2, nil, true, &packet.Pubcomp{PacketID: 1}, "MQTT-4.3.3-1"},
		{"PUBACK before PUBLISH sent", 1, nil, false, &packet.Puback{PacketID: 1}, "MQTT-2.3.1-6"},
		{"PUBREC before PUBLISH sent", 2, nil, false, &packet.Pubrec{PacketID: 1}, "MQTT-2.3.1-6"},
		{"PUBCOMP before PUBREL sent", 2, []packet.Packet{&packet.Pubrec{PacketID: 1}}, false, &packet.Pubcomp{PacketID: 1}, "MQTT-2.3.1-6"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			roles(t, func(t *testing.T, role Role) {
				h := connected(t, Config{Role: role})
				h.publish(tt.qos, "a")
				if len(tt.pre) > 0 {
					h.out()
				}
				for _, p := range tt.pre {
					h.recv(p)
				}
				if tt.sent {
					h.out()
				}
				h.violation(tt.ack, tt.rule)
			})
		})
	}
}

func TestOutgoingAckUnknownID(t *testing.T) {
	roles(t, func(t *testing.T, role Role) {
		h := connected(t, Config{Role: role})
		// PUBACK and PUBCOMP for no message in flight are ignored.
		if evs := h.recv(&packet.Puback{PacketID: 7}); len(evs) != 0 {
			t.Fatalf("events: %v", kinds(evs))
		}
		h.recv(&packet.Pubcomp{PacketID: 7})
		// PUBREC for none is released, so that the peer frees the id.
		h.recv(&packet.Pubrec{PacketID: 7})
		eq(t, "sent", h.out(), "PUBREL 7")
		// A duplicate PUBREC is answered again, without a second state change.
		h.publish(2, "a")
		h.out()
		h.recv(&packet.Pubrec{PacketID: 1})
		h.recv(&packet.Pubrec{PacketID: 1}) // PUBREL not yet sent: nothing more
		eq(t, "sent", h.out(), "PUBREL 1")
		h.recv(&packet.Pubrec{PacketID: 1})
		eq(t, "sent", h.out(), "PUBREL 1")
		if kinds(h.recv(&packet.Pubcomp{PacketID: 1})) != "done(1)" {
			t.Fatal("no completion")
		}
	})
}

func TestStrayAckKeepsWindow(t *testing.T) {
	// A second PUBACK or PUBCOMP for a message already complete (a peer
	// answering a resend twice) frees no slot: queued messages keep their
	// turn and the window its size [MQTT-4.6.0-6]. mosquitto 2.0.11 takes
	// such an acknowledgement for a free slot and sends the next message
	// ahead of the ones it queued.
	roles(t, func(t *testing.T, role Role) {
		for _, qos := range []byte{1, 2} {
			h := connected(t, Config{Role: role, MaxInflight: 2, MaxQueued: 4})
			// complete acknowledges message id; it returns what the
			// session sends in between (a PUBREL at QoS 2).
			complete := func(id uint16) []string {
				if qos == 1 {
					h.recv(&packet.Puback{PacketID: id})
					return nil
				}
				h.recv(&packet.Pubrec{PacketID: id})
				between := h.out()
				h.recv(&packet.Pubcomp{PacketID: id})
				return between
			}
			for _, p := range []string{"a", "b", "c", "d"} {
				h.publish(qos, p)
			}
			q := "PUBLISH q" + string('0'+qos)
			eq(t, "sent", h.out(), q+" id1 a", q+" id2 b")
			complete(1)
			eq(t, "sent after the first completion", h.out(), q+" id3 c")
			complete(1) // again: a stray answer
			h.publish(qos, "e")
			eq(t, "sent after the stray answer", h.out())
			complete(2)
			eq(t, "sent after the second completion", h.out(), q+" id4 d")
		}
	})
}

func TestPublishValidation(t *testing.T) {
	h := connected(t, Config{Role: Client})
	bad := []*packet.Publish{
		{QoS: 3, Topic: []byte("t")},
		{QoS: 1, Topic: nil},
		{QoS: 1, Topic: []byte("a/+")},
		{QoS: 0, Topic: []byte("a/#")},
		{QoS: 1, Topic: []byte("a\x00b")},
		{QoS: 1, Topic: []byte("\xff")},
	}
	for _, p := range bad {
		if _, err := h.s.Publish(p); err == nil {
			t.Errorf("Publish(%q QoS %d) accepted", p.Topic, p.QoS)
		}
	}
	eq(t, "sent", h.out())
	if h.s.Inflight() != 0 || h.s.Queued() != 0 {
		t.Fatal("an invalid message was kept")
	}
	// The caller's buffers are copied: changing them changes nothing sent.
	p := pub(1, 0, false, "abc")
	h.s.Publish(p)
	p.Payload[0] = 'X'
	p.Dup, p.PacketID = true, 99 // ignored
	eq(t, "sent", h.out(), "PUBLISH q1 id1 abc")
}

func TestAckBeforeResend(t *testing.T) {
	// After a reconnection the peer may acknowledge a PUBLISH of the earlier
	// connection before the resend has left: the message completes, and the
	// resend is dropped; after a PUBREC the PUBLISH must not leave again
	// [MQTT-4.3.3-1].
	roles(t, func(t *testing.T, role Role) {
		h := connected(t, Config{Role: role})
		h.publish(1, "a")
		h.publish(2, "b")
		h.publish(2, "c")
		h.out()
		h.recv(&packet.Pubrec{PacketID: 3})
		h.out()
		h.s.Disconnected()
		c := &packet.Connect{ClientID: []byte("c1")}
		if role == Client {
			h.s.Connect(c, h.now)
			h.out()
			h.recv(&packet.Connack{SessionPresent: true})
		} else {
			h.s.Accept(c, true, h.now)
		}
		// The resends wait; the acknowledgements of the old packets come.
		if kinds(h.recv(&packet.Puback{PacketID: 1})) != "done(1)" {
			t.Fatal("PUBACK not taken")
		}
		h.recv(&packet.Pubrec{PacketID: 2})
		if kinds(h.recv(&packet.Pubcomp{PacketID: 3})) != "done(3)" {
			t.Fatal("PUBCOMP not taken")
		}
		got := h.out()
		if role == Server {
			got = got[1:] // the CONNACK
		}
		eq(t, "sent", got, "PUBREL 2")
	})
}

// PendingQoS0 counts the QoS 0 messages not yet handed out, which a
// disconnection drops: the broker accounts for them as discarded.
func TestPendingQoS0(t *testing.T) {
	roles(t, func(t *testing.T, role Role) {
		h := connected(t, Config{Role: role})
		h.publish(0, "a")
		h.publish(1, "b")
		h.publish(0, "c")
		if n := h.s.PendingQoS0(); n != 2 {
			t.Fatalf("PendingQoS0 = %d with two QoS 0 messages waiting, want 2", n)
		}
		eq(t, "sent", h.out(), "PUBLISH q0 a", "PUBLISH q1 id1 b", "PUBLISH q0 c")
		if n := h.s.PendingQoS0(); n != 0 {
			t.Fatalf("PendingQoS0 = %d once handed out, want 0", n)
		}
		h.publish(0, "d")
		h.s.Disconnected()
		if n := h.s.PendingQoS0(); n != 0 {
			t.Fatalf("PendingQoS0 = %d after Disconnected, want 0", n)
		}
	})
}

// Outgoing counts every packet waiting to be handed out, answers included.
func TestOutgoing(t *testing.T) {
	h := connected(t, Config{Role: Server})
	h.recv(&packet.Pingreq{})
	h.recv(&packet.Publish{Topic: []byte("t"), QoS: 1, PacketID: 7, Payload: []byte("x")})
	h.publish(0, "a")
	if n := h.s.Outgoing(); n != 3 {
		t.Fatalf("Outgoing = %d with a PINGRESP, a PUBACK and a PUBLISH waiting, want 3", n)
	}
	eq(t, "sent", h.out(), "PINGRESP", "PUBACK 7", "PUBLISH q0 a")
	if n := h.s.Outgoing(); n != 0 {
		t.Fatalf("Outgoing = %d once handed out, want 0", n)
	}
}

// PublishShared keeps the caller's buffer, not a copy, for QoS 1 and 2 (it
// goes out again as it is then), copies QoS 0 messages, and never reuses
// the buffer for another message.
func TestPublishShared(t *testing.T) {
	h := connected(t, Config{Role: Server, MaxInflight: 1})
	buf := []byte("tone")
	if _, err := h.s.PublishShared(&packet.Publish{QoS: 1, Topic: buf[:1], Payload: buf[1:]}, buf); err != nil {
		t.Fatal(err)
	}
	q0 := []byte("tzero")
	if _, err := h.s.PublishShared(&packet.Publish{QoS: 0, Topic: q0[:1], Payload: q0[1:]}, q0); err != nil {
		t.Fatal(err)
	}
	queued := []byte("ttwo")
	before := h.s.QueuedBytes()
	if _, err := h.s.PublishShared(&packet.Publish{QoS: 2, Topic: queued[:1], Payload: queued[1:]}, queued); err != nil {
		t.Fatal(err)
	}
	if n, want := h.s.QueuedBytes()-before, len(queued)+QueuedOverhead; n != want {
		t.Errorf("QueuedBytes grew by %d, want %d: a shared message counts in full", n, want)
	}
	copy(q0, "tZERO")
	eq(t, "sent", h.out(), "PUBLISH q1 id1 one", "PUBLISH q0 zero")
	copy(buf, "tONE") // not allowed, but shows that the session kept buf
	h.s.Disconnected()
	eq(t, "resent", h.connect(false, true), "PUBLISH q1 id1 dup ONE")
	h.recv(&packet.Puback{PacketID: 1})
	eq(t, "next", h.out(), "PUBLISH q2 id2 two")
	h.publish(1, "something else, longer")
	if string(buf) != "tONE" || string(queued) != "ttwo" {
		t.Errorf("a shared buffer was reused: %q %q", buf, queued)
	}
}

// AppendOutgoingMax hands out packets until it has appended max bytes or
// more, one at least, and leaves the rest for the next call.
func TestAppendOutgoingMax(t *testing.T) {
	h := connected(t, Config{Role: Server})
	body := strings.Repeat("x", 100)
	for range 3 {
		h.publish(0, body)
	}
	h.publish(1, body)
	one := len(mustAppend(t, &packet.Publish{Topic: []byte("t"), Payload: []byte(body)}))
	b, err := h.s.AppendOutgoingMax(nil, one+1, h.now)
	if err != nil || len(b) != 2*one {
		t.Fatalf("AppendOutgoingMax(%d) = %d bytes, %v; want 2 packets, %d bytes", one+1, len(b), err, 2*one)
	}
	if n := h.s.PendingQoS0(); n != 1 {
		t.Errorf("PendingQoS0 = %d with one QoS 0 message left, want 1", n)
	}
	if b, err = h.s.AppendOutgoingMax(b[:0], 1, h.now); err != nil || len(b) != one {
		t.Fatalf("AppendOutgoingMax(1) = %d bytes, %v; want one packet", len(b), err)
	}
	eq(t, "rest", h.out(), "PUBLISH q1 id1 "+body)
}

func mustAppend(t *testing.T, p packet.Packet) []byte {
	t.Helper()
	b, err := p.Append(nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
