package session

import (
	"errors"
	"testing"

	"github.com/ternmq/mqtt/packet"
)

// Incoming publish flows, the same for both roles.

func TestIncomingQoS0(t *testing.T) {
	roles(t, func(t *testing.T, role Role) {
		h := connected(t, Config{Role: role})
		evs := h.recv(pub(0, 0, false, "a"))
		// Delivered, not acknowledged [MQTT-3.3.4-1].
		if kinds(evs) != "msg(a,tag0)" {
			t.Fatalf("events: %v", kinds(evs))
		}
		eq(t, "sent", h.out())
	})
}

func TestIncomingQoS1(t *testing.T) {
	roles(t, func(t *testing.T, role Role) {
		h := connected(t, Config{Role: role})
		evs := h.recv(pub(1, 5, false, "a"))
		if kinds(evs) != "msg(a,tag1)" || evs[0].PacketID != 5 {
			t.Fatalf("events: %+v", evs)
		}
		// PUBACK with the PUBLISH's id [MQTT-3.3.4-1] [MQTT-2.3.1-6].
		eq(t, "sent", h.out(), "PUBACK 5")
		// Once acknowledged, the same id starts a new publication, whatever
		// DUP says [MQTT-4.3.2-2].
		if kinds(h.recv(pub(1, 5, true, "b"))) != "msg(b,tag2)" {
			t.Fatal("a new QoS 1 publication with a used id was not delivered")
		}
		eq(t, "sent", h.out(), "PUBACK 5")
	})
}

func TestIncomingQoS2(t *testing.T) {
	roles(t, func(t *testing.T, role Role) {
		h := connected(t, Config{Role: role})
		if kinds(h.recv(pub(2, 9, false, "a"))) != "msg(a,tag1)" {
			t.Fatal("QoS 2 message not delivered")
		}
		eq(t, "sent", h.out(), "PUBREC 9") // [MQTT-3.3.4-1]
		// Until PUBREL, a PUBLISH with the id is a duplicate, DUP set or
		// not: acknowledged again, not delivered again [MQTT-4.3.3-2].
		for _, dup := range []bool{true, false} {
			if evs := h.recv(pub(2, 9, dup, "a")); len(evs) != 0 {
				t.Fatalf("duplicate delivered: %v", kinds(evs))
			}
			eq(t, "sent", h.out(), "PUBREC 9")
		}
		h.recv(&packet.Pubrel{PacketID: 9})
		eq(t, "sent", h.out(), "PUBCOMP 9")
		// After PUBCOMP the id starts a new publication.
		if kinds(h.recv(pub(2, 9, false, "b"))) != "msg(b,tag2)" {
			t.Fatal("new QoS 2 publication with a released id not delivered")
		}
		eq(t, "sent", h.out(), "PUBREC 9")
	})
}

func TestIncomingPubrelUnknown(t *testing.T) {
	// A PUBREL for an id with no exchange is still answered [MQTT-4.3.3-2]:
	// the PUBCOMP may have been lost with a connection.
	roles(t, func(t *testing.T, role Role) {
		h := connected(t, Config{Role: role})
		h.recv(&packet.Pubrel{PacketID: 3})
		eq(t, "sent", h.out(), "PUBCOMP 3")
	})
}

func TestIncomingAckOrder(t *testing.T) {
	// PUBACKs and PUBRECs leave in the order the PUBLISH packets arrived
	// [MQTT-4.6.0-2] [MQTT-4.6.0-3].
	roles(t, func(t *testing.T, role Role) {
		h := connected(t, Config{Role: role})
		h.recv(pub(2, 4, false, "a"))
		h.recv(pub(1, 2, false, "b"))
		h.recv(pub(0, 0, false, "c"))
		h.recv(pub(2, 1, false, "d"))
		h.recv(pub(1, 3, false, "e"))
		eq(t, "sent", h.out(), "PUBREC 4", "PUBACK 2", "PUBREC 1", "PUBACK 3")
	})
}

func TestManualAck(t *testing.T) {
	roles(t, func(t *testing.T, role Role) {
		h := connected(t, Config{Role: role, ManualAck: true})
		var tags []Tag
		for _, p := range []*packet.Publish{pub(1, 1, false, "a"), pub(2, 2, false, "b"), pub(0, 0, false, "c"), pub(1, 3, false, "d")} {
			evs := h.recv(p)
			if len(evs) != 1 || evs[0].Kind != EventMessage {
				t.Fatalf("events: %v", kinds(evs))
			}
			if p.QoS > 0 {
				tags = append(tags, evs[0].Tag)
			}
		}
		eq(t, "sent before any Ack", h.out())
		// A later message's Ack waits for the earlier ones [MQTT-4.6.0-2] [MQTT-4.6.0-3].
		if err := h.s.Ack(tags[2]); err != nil {
			t.Fatal(err)
		}
		eq(t, "sent after the third Ack", h.out())
		// Resent before our acknowledgement: not delivered again.
		if evs := h.recv(pub(1, 1, true, "a")); len(evs) != 0 {
			t.Fatalf("resent QoS 1 delivered again: %v", kinds(evs))
		}
		if evs := h.recv(pub(2, 2, true, "b")); len(evs) != 0 {
			t.Fatalf("resent QoS 2 delivered again: %v", kinds(evs))
		}
		eq(t, "sent", h.out())
		h.s.Ack(tags[1])
		eq(t, "sent after the second Ack", h.out())
		h.s.Ack(tags[0])
		eq(t, "sent after the first Ack", h.out(), "PUBACK 1", "PUBREC 2", "PUBACK 3")
		// Acknowledging twice does nothing; a tag never handed out is an error.
		if err := h.s.Ack(tags[0]); err != nil {
			t.Fatal(err)
		}
		if err := h.s.Ack(99); !errors.Is(err, ErrUnknownTag) {
			t.Fatalf("Ack(99) = %v, want ErrUnknownTag", err)
		}
		if err := h.s.Ack(0); !errors.Is(err, ErrUnknownTag) {
			t.Fatalf("Ack(0) = %v, want ErrUnknownTag", err)
		}
		eq(t, "sent", h.out())
		// The QoS 2 exchange goes on as usual.
		if evs := h.recv(pub(2, 2, true, "b")); len(evs) != 0 {
			t.Fatal("duplicate delivered after Ack")
		}
		h.recv(&packet.Pubrel{PacketID: 2})
		eq(t, "sent", h.out(), "PUBREC 2", "PUBCOMP 2")
	})
}

func TestManualAckPubrelFirst(t *testing.T) {
	// A PUBREL for a message still awaiting the application's Ack ends the
	// exchange (the peer had a PUBREC, from before a restart): PUBCOMP, and
	// the later Ack sends nothing.
	h := connected(t, Config{Role: Client, ManualAck: true})
	evs := h.recv(pub(2, 7, false, "a"))
	h.recv(&packet.Pubrel{PacketID: 7})
	eq(t, "sent", h.out(), "PUBCOMP 7")
	if err := h.s.Ack(evs[0].Tag); err != nil {
		t.Fatal(err)
	}
	eq(t, "sent after Ack", h.out())
}

func TestManualAckOffline(t *testing.T) {
	// The acknowledgement of a message that came on an earlier connection,
	// given while disconnected or before the resend: the peer never had
	// it, so it sends the message again on the next connection
	// [MQTT-4.4.0-1], and each resend is answered once, in the order of
	// the resends [MQTT-4.6.0-2] [MQTT-4.6.0-3], and not delivered again.
	// Sent at the CONNACK instead, the answers left ahead of the answers to
	// the resends of earlier messages and each message was answered twice,
	// which made mosquitto 2.0 deliver later messages out of order (client
	// TestCutAllLoad).
	roles(t, func(t *testing.T, role Role) {
		h := connected(t, Config{Role: role, ManualAck: true})
		ez := h.recv(pub(2, 4, false, "z"))
		eq(t, "sent", h.out()) // awaiting its Ack: the PUBREC waits
		e1 := h.recv(pub(1, 1, false, "a"))
		e2 := h.recv(pub(2, 2, false, "b"))
		e3 := h.recv(pub(1, 3, false, "c"))
		h.s.Disconnected()
		h.s.Ack(e2[0].Tag)
		h.s.Ack(e1[0].Tag)
		eq(t, "sent after reconnecting", h.connect(false, true))
		// Cut again before the resends: they are still awaited.
		h.s.Disconnected()
		eq(t, "sent after reconnecting again", h.connect(false, true))
		for _, p := range []*packet.Publish{pub(2, 4, true, "z"), pub(1, 1, true, "a"), pub(2, 2, true, "b"), pub(1, 3, true, "c")} {
			if evs := h.recv(p); len(evs) != 0 {
				t.Fatalf("resent %q delivered again: %v", p.Payload, kinds(evs))
			}
		}
		// z, the first to arrive, still awaits its Ack: a, b and c wait
		// behind it, in order.
		eq(t, "sent for the resends", h.out())
		h.s.Ack(e3[0].Tag)
		eq(t, "sent after c's Ack", h.out())
		h.s.Ack(ez[0].Tag)
		eq(t, "sent after z's Ack", h.out(), "PUBREC 4", "PUBACK 1", "PUBREC 2", "PUBACK 3")
	})
	roles(t, func(t *testing.T, role Role) {
		h := connected(t, Config{Role: role, ManualAck: true})
		e1 := h.recv(pub(1, 1, false, "a"))
		e2 := h.recv(pub(2, 2, false, "b"))
		e3 := h.recv(pub(1, 3, false, "c"))
		e4 := h.recv(pub(1, 4, false, "d"))
		h.s.Disconnected()
		h.s.Ack(e2[0].Tag)
		h.s.Ack(e1[0].Tag)
		eq(t, "sent after reconnecting", h.connect(false, true))
		// c is acknowledged on the new connection before its resend came.
		h.s.Ack(e3[0].Tag)
		eq(t, "sent after c's Ack", h.out())
		for _, p := range []*packet.Publish{pub(1, 1, true, "a"), pub(2, 2, true, "b"), pub(1, 3, true, "c"), pub(1, 4, true, "d")} {
			if evs := h.recv(p); len(evs) != 0 {
				t.Fatalf("resent %q delivered again: %v", p.Payload, kinds(evs))
			}
		}
		eq(t, "sent for the resends", h.out(), "PUBACK 1", "PUBREC 2", "PUBACK 3")
		// d's resend came before its Ack: the Ack answers it.
		h.s.Ack(e4[0].Tag)
		eq(t, "sent after d's Ack", h.out(), "PUBACK 4")
		// A second resend of b, which crossed the PUBREC, is answered
		// again; the exchange ends as usual.
		if evs := h.recv(pub(2, 2, true, "b")); len(evs) != 0 {
			t.Fatalf("QoS 2 delivered again: %v", kinds(evs))
		}
		h.recv(&packet.Pubrel{PacketID: 2})
		eq(t, "sent", h.out(), "PUBREC 2", "PUBCOMP 2")
		// Ids 1 and 3 are free again: messages with them are new.
		for _, p := range []*packet.Publish{pub(1, 1, false, "e"), pub(1, 3, true, "f")} {
			if kinds(h.recv(p)) == "" {
				t.Fatalf("new message %q not delivered", p.Payload)
			}
		}
	})
	roles(t, func(t *testing.T, role Role) {
		// A message the peer sends with the id of one whose answer awaits
		// the resend, but without DUP, is not a resend [MQTT-3.3.1-1]: the
		// peer forgot the first one, and this one is delivered.
		h := connected(t, Config{Role: role, ManualAck: true})
		e1 := h.recv(pub(1, 1, false, "a"))
		h.s.Disconnected()
		h.s.Ack(e1[0].Tag)
		eq(t, "sent after reconnecting", h.connect(false, true))
		if kinds(h.recv(pub(1, 1, false, "b"))) == "" {
			t.Fatal("new message with the id of an awaited resend not delivered")
		}
	})
}

func TestManualAckResendOrder(t *testing.T) {
	// Answers lost with the connection (a, b) and answers given while
	// disconnected (c, d): the peer sends all four again, and they are
	// answered in that order [MQTT-4.6.0-2] [MQTT-4.6.0-3], d's not ahead
	// of the redelivered a's and b's (client TestCutAllLoad saw PUBACKs
	// of later messages overtake).
	roles(t, func(t *testing.T, role Role) {
		h := connected(t, Config{Role: role, ManualAck: true})
		var tags []Tag
		for i, p := range []*packet.Publish{pub(1, 1, false, "a"), pub(2, 2, false, "b"), pub(1, 3, false, "c"), pub(2, 4, false, "d")} {
			tags = append(tags, h.recv(p)[0].Tag)
			if i < 2 {
				h.s.Ack(tags[i])
			}
		}
		h.s.Disconnected() // PUBACK 1 and PUBREC 2 are lost
		h.s.Ack(tags[2])
		h.s.Ack(tags[3])
		eq(t, "sent after reconnecting", h.connect(false, true))
		ea := h.recv(pub(1, 1, true, "a"))
		if len(ea) != 1 {
			t.Fatalf("QoS 1 resend whose PUBACK was lost: %v, want it delivered again", kinds(ea))
		}
		for _, p := range []*packet.Publish{pub(2, 2, true, "b"), pub(1, 3, true, "c"), pub(2, 4, true, "d")} {
			if evs := h.recv(p); len(evs) != 0 {
				t.Fatalf("resent %q delivered again: %v", p.Payload, kinds(evs))
			}
		}
		eq(t, "sent before a's Ack", h.out())
		h.s.Ack(ea[0].Tag)
		eq(t, "sent after a's Ack", h.out(), "PUBACK 1", "PUBREC 2", "PUBACK 3", "PUBREC 4")
		// The QoS 2 exchanges end as usual.
		h.recv(&packet.Pubrel{PacketID: 2})
		h.recv(&packet.Pubrel{PacketID: 4})
		eq(t, "sent", h.out(), "PUBCOMP 2", "PUBCOMP 4")
	})
}

func TestManualAckOfflineNoSession(t *testing.T) {
	// The server kept no session: it will not send the messages again, and
	// their acknowledgements are not sent either; its next messages with
	// the same ids are new.
	h := connected(t, Config{Role: Client, ManualAck: true})
	e1 := h.recv(pub(1, 1, false, "a"))
	e2 := h.recv(pub(2, 2, false, "b"))
	h.s.Disconnected()
	h.s.Ack(e1[0].Tag)
	h.s.Ack(e2[0].Tag)
	eq(t, "sent after reconnecting", h.connect(false, false))
	if kinds(h.recv(pub(1, 1, false, "c"))) == "" {
		t.Fatal("new QoS 1 message not delivered")
	}
	if kinds(h.recv(pub(2, 2, false, "d"))) == "" {
		t.Fatal("new QoS 2 message not delivered")
	}
}

func TestPubcompNotSent(t *testing.T) {
	// A PUBREL whose PUBCOMP never left (the connection ended first): the
	// peer has no PUBCOMP, so a PUBLISH with that id on the next connection
	// is the same message again, answered and not delivered twice
	// [MQTT-4.3.3-2] (mosquitto 2.0 sends it when its resend of the PUBREL
	// fails). Once the PUBCOMP is handed out, the id is the peer's to reuse.
	roles(t, func(t *testing.T, role Role) {
		for _, manual := range []bool{false, true} {
			h := connected(t, Config{Role: role, ManualAck: manual})
			evs := h.recv(pub(2, 7, false, "a"))
			if manual {
				h.s.Ack(evs[0].Tag)
			}
			eq(t, "sent", h.out(), "PUBREC 7")
			h.recv(&packet.Pubrel{PacketID: 7})
			h.s.Disconnected() // the PUBCOMP is not handed out
			eq(t, "sent after reconnecting", h.connect(false, true))
			if evs := h.recv(pub(2, 7, true, "a")); len(evs) != 0 {
				t.Fatalf("manual %v: PUBLISH after a PUBREL without PUBCOMP delivered again: %v", manual, kinds(evs))
			}
			h.recv(&packet.Pubrel{PacketID: 7})
			eq(t, "sent", h.out(), "PUBREC 7", "PUBCOMP 7")
			if kinds(h.recv(pub(2, 7, false, "b"))) == "" {
				t.Fatalf("manual %v: new message after the PUBCOMP not delivered", manual)
			}
		}
	})
}

func TestIncomingIDReuse(t *testing.T) {
	// A QoS 1 PUBLISH reusing the id of an unreleased QoS 2 exchange means
	// the peer forgot that exchange [MQTT-2.3.1-2]: the session forgets it
	// too, rather than lose the peer's next QoS 2 message with that id.
	roles(t, func(t *testing.T, role Role) {
		h := connected(t, Config{Role: role})
		h.recv(pub(2, 1, false, "a"))
		h.recv(pub(1, 1, false, "b"))
		if kinds(h.recv(pub(2, 1, false, "c"))) != "msg(c,tag3)" {
			t.Fatal("new QoS 2 message taken for a duplicate")
		}
		eq(t, "sent", h.out(), "PUBREC 1", "PUBACK 1", "PUBREC 1")
	})
}

func TestIncomingMalformed(t *testing.T) {
	// Packets built by hand, not by the codec, are still checked.
	h := connected(t, Config{Role: Server})
	h.violation(&packet.Publish{QoS: 1, Topic: []byte("t")}, "MQTT-2.3.1-1")
	h.violation(&packet.Publish{QoS: 3, PacketID: 1, Topic: []byte("t")}, "MQTT-3.3.1-4")
}
