package broker_test

import (
	"fmt"
	"testing"

	"github.com/ternmq/mqtt/packet"
)

// [MQTT-3.8.4-6] [MQTT-3.3.5-1] [MQTT-4.5.0-1] Every published QoS against
// every granted QoS: the subscriber gets the lower of the two.
func TestQoSDowngrade(t *testing.T) {
	srv := newServer(t)
	for granted := byte(0); granted <= 2; granted++ {
		for published := byte(0); published <= 2; published++ {
			t.Run(fmt.Sprintf("granted%d/published%d", granted, published), func(t *testing.T) {
				sub := connect(t, srv, "sub", true, false)
				sub.subscribe(1, "q/+", granted)
				p := connect(t, srv, "pub", true, false)
				p.publish(pub("q/x", "m", published, 9))
				got := sub.expectPublish()
				checkPublish(t, got, "q/x", "m", min(granted, published), false)
				sub.ack(got)
				sub.expectNothing()
				p.disconnect()
				sub.disconnect()
			})
		}
	}
}

// [MQTT-3.3.5-1] Overlapping subscriptions: one message per client, at the
// highest QoS of its matching subscriptions; [MQTT-3.8.4-4] [MQTT-3.8.4-5]
// [MQTT-3.9.3-1] a SUBSCRIBE of several filters gets one SUBACK with the codes
// in order.
func TestOverlappingSubscriptions(t *testing.T) {
	srv := newServer(t)
	sub := connect(t, srv, "sub", true, false)
	sub.send(&packet.Subscribe{PacketID: 3, Subscriptions: []packet.Subscription{
		{Filter: []byte("a/#"), QoS: 0},
		{Filter: []byte("a/+"), QoS: 2},
		{Filter: []byte("a/b"), QoS: 1},
	}})
	sub.expect(&packet.Suback{PacketID: 3, ReturnCodes: []byte{0, 2, 1}})
	p := connect(t, srv, "pub", true, false)
	p.publish(pub("a/b", "once", 2, 1))
	got := sub.expectPublish()
	checkPublish(t, got, "a/b", "once", 2, false)
	sub.ack(got)
	sub.expectNothing()
}

// [MQTT-3.8.4-3] Subscribing again to the same filter replaces the
// subscription: the new QoS applies, retained messages are sent again.
func TestResubscribe(t *testing.T) {
	srv := newServer(t)
	p := connect(t, srv, "pub", true, false)
	p.publish(&packet.Publish{Topic: []byte("r"), Payload: []byte("kept"), Retain: true})
	sub := connect(t, srv, "sub", true, false)
	sub.subscribe(1, "r", 0)
	checkPublish(t, sub.expectPublish(), "r", "kept", 0, true)
	sub.subscribe(2, "r", 2)
	checkPublish(t, sub.expectPublish(), "r", "kept", 0, true) // retained at its own QoS 0
	p.publish(pub("r", "new", 2, 5))
	got := sub.expectPublish()
	checkPublish(t, got, "r", "new", 2, false) // one copy, at the new QoS
	sub.ack(got)
	sub.expectNothing()
}

// [MQTT-3.3.1-5] [MQTT-3.3.1-6] [MQTT-3.3.1-8] [MQTT-3.3.1-9] A retained
// message is stored with its QoS, sent to later subscribers with RETAIN=1, and
// forwarded to existing ones with RETAIN=0.
func TestRetained(t *testing.T) {
	srv := newServer(t)
	early := connect(t, srv, "early", true, false)
	early.subscribe(1, "sensors/#", 2)
	p := connect(t, srv, "pub", true, false)
	p.publish(&packet.Publish{Topic: []byte("sensors/t1"), Payload: []byte("21"), QoS: 1, PacketID: 1, Retain: true})
	got := early.expectPublish()
	checkPublish(t, got, "sensors/t1", "21", 1, false) // [MQTT-3.3.1-9]
	early.ack(got)

	late := connect(t, srv, "late", true, false)
	late.subscribe(1, "sensors/+", 2)
	got = late.expectPublish()
	checkPublish(t, got, "sensors/t1", "21", 1, true) // [MQTT-3.3.1-6] [MQTT-3.3.1-8]
	late.ack(got)

	// Granted QoS 0 caps the retained message's QoS too [MQTT-3.8.4-6].
	low := connect(t, srv, "low", true, false)
	low.subscribe(1, "sensors/t1", 0)
	checkPublish(t, low.expectPublish(), "sensors/t1", "21", 0, true)
	if n := srv.Broker.Stats().Retained; n != 1 {
		t.Errorf("Stats.Retained = %d, want 1", n)
	}
}

// [MQTT-3.3.1-7] A new retained message replaces the old one, QoS 0 too;
// [MQTT-3.3.1-12] a non-retained message leaves it alone; [MQTT-3.3.1-10]
// [MQTT-3.3.1-11] an empty retained message is forwarded as usual and clears
// it.
func TestRetainedReplaceAndClear(t *testing.T) {
	srv := newServer(t)
	p := connect(t, srv, "pub", true, false)
	p.publish(&packet.Publish{Topic: []byte("x"), Payload: []byte("one"), QoS: 1, PacketID: 1, Retain: true})
	p.publish(&packet.Publish{Topic: []byte("x"), Payload: []byte("two"), Retain: true})
	p.publish(&packet.Publish{Topic: []byte("x"), Payload: []byte("plain")}) // [MQTT-3.3.1-12]

	s := connect(t, srv, "s1", true, false)
	s.subscribe(1, "x", 2)
	checkPublish(t, s.expectPublish(), "x", "two", 0, true) // [MQTT-3.3.1-7]
	s.expectNothing()

	p.publish(&packet.Publish{Topic: []byte("x"), Retain: true, QoS: 1, PacketID: 2})
	got := s.expectPublish()
	checkPublish(t, got, "x", "", 1, false) // forwarded normally [MQTT-3.3.1-10]
	s.ack(got)

	s2 := connect(t, srv, "s2", true, false)
	s2.subscribe(1, "#", 2)
	s2.expectNothing() // [MQTT-3.3.1-11]
	if n := srv.Broker.Stats().Retained; n != 0 {
		t.Errorf("Stats.Retained = %d, want 0", n)
	}
}

// [MQTT-3.1.2-7] Retained messages outlive the session of their publisher.
func TestRetainedOutlivesSession(t *testing.T) {
	srv := newServer(t)
	p := connect(t, srv, "pub", false, false)
	p.publish(&packet.Publish{Topic: []byte("k"), Payload: []byte("v"), Retain: true})
	p.disconnect()
	p = connect(t, srv, "pub", true, false) // ends the persistent session
	p.disconnect()
	s := connect(t, srv, "s", true, false)
	s.subscribe(1, "k", 0)
	checkPublish(t, s.expectPublish(), "k", "v", 0, true)
}

// [MQTT-3.1.2-8] [MQTT-3.1.2-16] [MQTT-3.1.2-17] A will is published when the
// connection is lost, retained or not as asked; [MQTT-3.1.2-10]
// [MQTT-3.14.4-3] not after DISCONNECT; [MQTT-3.1.2-12] never without one.
func TestWill(t *testing.T) {
	srv := newServer(t)
	w := connect(t, srv, "w", true, false)
	w.subscribe(1, "will/#", 2)

	lost := dial(t, srv, "lost")
	lost.send(&packet.Connect{ClientID: []byte("lost"), CleanSession: true, Will: true, WillQoS: 1, WillTopic: []byte("will/lost"), WillMessage: []byte("bye")})
	lost.expect(&packet.Connack{})
	lost.c.Close()
	got := w.expectPublish()
	checkPublish(t, got, "will/lost", "bye", 1, false) // [MQTT-3.1.2-16]
	w.ack(got)

	kept := dial(t, srv, "kept")
	kept.send(&packet.Connect{ClientID: []byte("kept"), CleanSession: true, Will: true, WillRetain: true, WillTopic: []byte("will/kept"), WillMessage: []byte("gone")})
	kept.expect(&packet.Connack{})
	kept.c.Close()
	checkPublish(t, w.expectPublish(), "will/kept", "gone", 0, false)
	late := connect(t, srv, "late", true, false)
	late.subscribe(1, "will/kept", 0)
	checkPublish(t, late.expectPublish(), "will/kept", "gone", 0, true) // [MQTT-3.1.2-17]

	polite := dial(t, srv, "polite")
	polite.send(&packet.Connect{ClientID: []byte("polite"), CleanSession: true, Will: true, WillTopic: []byte("will/polite"), WillMessage: []byte("no")})
	polite.expect(&packet.Connack{})
	polite.disconnect() // [MQTT-3.14.4-3]

	none := connect(t, srv, "none", true, false)
	none.c.Close() // [MQTT-3.1.2-12]
	waitFor(t, "both connections to end", func() bool { return srv.Broker.Stats().Disconnected >= 4 })
	w.expectNothing()
}

// [MQTT-3.1.2-5] [MQTT-3.2.2-2] [MQTT-3.2.2-3] A persistent session keeps its
// subscriptions and queues QoS 1 and 2 messages while the client is away; QoS
// 0 messages are not kept. The client gets them, in order, when it returns.
func TestPersistentSession(t *testing.T) {
	srv := newServer(t)
	s := connect(t, srv, "dev", false, false) // [MQTT-3.2.2-3]
	s.subscribe(1, "cmd/#", 2)
	s.disconnect()

	p := connect(t, srv, "pub", true, false)
	p.publish(pub("cmd/a", "1", 1, 1))
	p.publish(pub("cmd/a", "lost", 0, 0))
	p.publish(pub("cmd/a", "2", 2, 2))
	p.publish(pub("cmd/a", "3", 1, 3))

	s = connect(t, srv, "dev", false, true) // [MQTT-3.2.2-2]
	for _, want := range []struct {
		payload string
		qos     byte
	}{{"1", 1}, {"2", 2}, {"3", 1}} {
		got := s.expectPublish()
		checkPublish(t, got, "cmd/a", want.payload, want.qos, false)
		s.ack(got)
	}
	s.expectNothing()

	// [MQTT-3.1.4-3] [MQTT-3.2.2-1] CleanSession 1 ends it: nothing
	// present, no subscriptions left.
	s.disconnect()
	s = connect(t, srv, "dev", true, false)
	p.publish(pub("cmd/a", "after", 1, 4))
	s.expectNothing()
	s.disconnect()
	s = connect(t, srv, "dev", false, false)
}

// [MQTT-3.1.2-5] [MQTT-3.3.1-3] An unacknowledged message to a persistent
// session is resent with DUP=1 on reconnection, with the same packet id; DUP
// on the first forwarding reflects only that delivery, not the inbound DUP.
func TestResendOnReconnect(t *testing.T) {
	srv := newServer(t)
	s := connect(t, srv, "dev", false, false)
	s.subscribe(1, "t", 1)
	p := connect(t, srv, "pub", true, false)
	p.send(&packet.Publish{Topic: []byte("t"), Payload: []byte("m"), QoS: 1, PacketID: 5, Dup: true})
	p.expect(&packet.Puback{PacketID: 5})
	got := s.expectPublish()
	checkPublish(t, got, "t", "m", 1, false) // DUP=0 though the inbound had DUP=1
	s.c.Close()                              // never acknowledged

	s = connect(t, srv, "dev", false, true)
	again := s.expectPublish()
	if !again.Dup || again.PacketID != got.PacketID || string(again.Payload) != "m" {
		t.Fatalf("resent %v, want DUP with packet id %d", again, got.PacketID)
	}
	s.send(&packet.Puback{PacketID: again.PacketID})
	s.expectNothing()
}

// [MQTT-4.6.0-6] Messages of one topic from one publisher reach a subscriber
// in the order published, whatever their QoS mix; [MQTT-2.3.1-4] the server's
// packet ids are distinct among unacknowledged messages.
func TestOrdering(t *testing.T) {
	srv := newServer(t)
	s := connect(t, srv, "s", true, false)
	s.subscribe(1, "o", 2)
	p := connect(t, srv, "p", true, false)
	const n = 60 // more than the inflight window of 20
	for i := range n {
		p.publish(pub("o", fmt.Sprint(i), byte(1+i%2), uint16(i+1)))
	}
	inUse := map[uint16]bool{}
	var got []*packet.Publish
	for i := range n {
		g := s.expectPublish()
		if string(g.Payload) != fmt.Sprint(i) {
			t.Fatalf("message %d: got payload %q", i, g.Payload)
		}
		if inUse[g.PacketID] {
			t.Fatalf("packet id %d reused while in flight", g.PacketID)
		}
		inUse[g.PacketID] = true
		got = append(got, g)
		if len(got) == 20 { // the window is full: acknowledge all
			for _, g := range got {
				s.ack(g)
				delete(inUse, g.PacketID)
			}
			got = got[:0]
		}
	}
	for _, g := range got {
		s.ack(g)
	}
}

// [MQTT-3.10.4-1] [MQTT-3.10.4-2] [MQTT-3.10.4-4] [MQTT-3.10.4-5]
// [MQTT-3.10.4-6] UNSUBSCRIBE compares filters literally, stops new messages,
// and is always answered with UNSUBACK of the same id.
func TestUnsubscribe(t *testing.T) {
	srv := newServer(t)
	s := connect(t, srv, "s", true, false)
	s.send(&packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: []byte("a/+")}, {Filter: []byte("a/#")}, {Filter: []byte("b")}}})
	s.expect(&packet.Suback{PacketID: 1, ReturnCodes: []byte{0, 0, 0}})
	s.send(&packet.Unsubscribe{PacketID: 9, Filters: [][]byte{[]byte("a/#"), []byte("b"), []byte("nothing")}})
	s.expect(&packet.Unsuback{PacketID: 9})
	s.send(&packet.Unsubscribe{PacketID: 10, Filters: [][]byte{[]byte("zzz")}})
	s.expect(&packet.Unsuback{PacketID: 10}) // [MQTT-3.10.4-5]

	p := connect(t, srv, "p", true, false)
	p.publish(pub("a/x", "still", 0, 0)) // a/+ was not removed by a/#
	p.publish(pub("a/x/y", "gone", 0, 0))
	p.publish(pub("b", "gone", 0, 0))
	checkPublish(t, s.expectPublish(), "a/x", "still", 0, false)
	s.expectNothing()
}

// [MQTT-3.10.4-3] A QoS 2 delivery started before UNSUBSCRIBE is completed.
func TestUnsubscribeCompletesInflight(t *testing.T) {
	srv := newServer(t)
	s := connect(t, srv, "s", true, false)
	s.subscribe(1, "t", 2)
	p := connect(t, srv, "p", true, false)
	p.publish(pub("t", "m", 2, 1))
	got := s.expectPublish()
	s.send(&packet.Unsubscribe{PacketID: 2, Filters: [][]byte{[]byte("t")}})
	s.expect(&packet.Unsuback{PacketID: 2})
	s.send(&packet.Pubrec{PacketID: got.PacketID})
	s.expect(&packet.Pubrel{PacketID: got.PacketID})
	s.send(&packet.Pubcomp{PacketID: got.PacketID})
	s.expectNothing()
}

// [MQTT-4.7.2-1] [MQTT-3.3.2-3] [MQTT-4.7.3-4] Wildcards at the first level do
// not match $ topics; names match filters byte for byte.
func TestTopicMatching(t *testing.T) {
	srv := newServer(t)
	s := connect(t, srv, "s", true, false)
	s.send(&packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: []byte("#")}, {Filter: []byte("+/x")}, {Filter: []byte("$SYS/#")}}})
	s.expect(&packet.Suback{PacketID: 1, ReturnCodes: []byte{0, 0, 0}})
	p := connect(t, srv, "p", true, false)
	p.publish(pub("$SYS/x", "sys", 0, 0)) // only via $SYS/#
	p.publish(pub("$other/x", "no", 0, 0))
	p.publish(pub("Caf\u00e9/x", "nfc", 0, 0))
	checkPublish(t, s.expectPublish(), "$SYS/x", "sys", 0, false)
	checkPublish(t, s.expectPublish(), "Caf\u00e9/x", "nfc", 0, false)
	s.expectNothing()

	e := connect(t, srv, "e", true, false)
	e.subscribe(1, "Cafe\u0301/x", 0) // decomposed form: a different filter
	p.publish(pub("Caf\u00e9/x", "nfc", 0, 0))
	checkPublish(t, s.expectPublish(), "Caf\u00e9/x", "nfc", 0, false)
	e.expectNothing()
}

// [MQTT-3.8.4-1] [MQTT-3.8.4-2] [MQTT-2.3.1-7] Every SUBSCRIBE gets a SUBACK,
// and every UNSUBSCRIBE an UNSUBACK, with the request's packet identifier,
// whatever its value, even when a request's id repeats.
func TestAckPacketIDs(t *testing.T) {
	srv := newServer(t)
	s := connect(t, srv, "s", true, false)
	for _, id := range []uint16{1, 0xffff, 0x1234, 0x1234, 0x8000} {
		s.send(&packet.Subscribe{PacketID: id, Subscriptions: []packet.Subscription{{Filter: []byte("f"), QoS: 1}}})
		s.expect(&packet.Suback{PacketID: id, ReturnCodes: []byte{1}})
		s.send(&packet.Unsubscribe{PacketID: id, Filters: [][]byte{[]byte("f")}})
		s.expect(&packet.Unsuback{PacketID: id})
	}
	// Pipelined: answers in order.
	var raw []byte
	for id := uint16(10); id < 15; id++ {
		raw = append(raw, mustEncode(&packet.Subscribe{PacketID: id, Subscriptions: []packet.Subscription{{Filter: []byte("g"), QoS: 2}}})...)
	}
	s.sendRaw(raw)
	for id := uint16(10); id < 15; id++ {
		s.expect(&packet.Suback{PacketID: id, ReturnCodes: []byte{2}})
	}
}

func mustEncode(p packet.Packet) []byte {
	b, err := p.Append(nil)
	if err != nil {
		panic(err)
	}
	return b
}

// [MQTT-4.7.1-2] [MQTT-4.7.1-3] [MQTT-4.8.0-1] A SUBSCRIBE whose filter breaks
// the wildcard rules is a protocol violation: the broker closes the
// connection without a SUBACK and without acting on the packet's other
// filters, and the will is published, as mosquitto does.
func TestInvalidFilterCloses(t *testing.T) {
	for _, bad := range []string{"a#b", "a/#/b", "a+/", "sport+", "#/", ""} {
		t.Run(fmt.Sprintf("%q", bad), func(t *testing.T) {
			srv := newServer(t)
			watcher := connect(t, srv, "watcher", true, false)
			watcher.subscribe(1, "will/#", 0)
			c := dial(t, srv, "bad")
			c.send(&packet.Connect{ClientID: []byte("bad"), CleanSession: true, Will: true, WillTopic: []byte("will/bad"), WillMessage: []byte("gone")})
			c.expect(&packet.Connack{})
			// Raw bytes: the codec refuses to encode the bad filter.
			c.sendRaw(rawFilters(0x82, 1, []byte{1}, "ok/+", bad))
			c.expectClose()
			checkPublish(t, watcher.expectPublish(), "will/bad", "gone", 0, false)
			// The valid filter of the refused packet was not subscribed.
			p := connect(t, srv, "pub", true, false)
			p.publish(pub("ok/x", "m", 0, 0))
			watcher.expectNothing()
			if n := srv.Broker.Stats().Delivered; n != 1 {
				t.Errorf("Delivered = %d, want 1 (the will only)", n)
			}
			p.disconnect()
			watcher.disconnect()
		})
	}
}

// rawFilters encodes a SUBSCRIBE (first byte 0x82, a QoS per filter in qos)
// or an UNSUBSCRIBE (0xa2, qos nil) by hand, so that tests can send filters
// the codec refuses to encode.
func rawFilters(first byte, id uint16, qos []byte, filters ...string) []byte {
	body := []byte{byte(id >> 8), byte(id)}
	for i, f := range filters {
		body = append(body, byte(len(f)>>8), byte(len(f)))
		body = append(body, f...)
		if qos != nil {
			body = append(body, qos[min(i, len(qos)-1)])
		}
	}
	if len(body) > 127 {
		panic("rawFilters: body over 127 bytes")
	}
	return append([]byte{first, byte(len(body))}, body...)
}

// [MQTT-4.7.3-1] [MQTT-4.8.0-1] An UNSUBSCRIBE with an empty or misplaced
// wildcard filter is a protocol violation: the connection is closed with no
// UNSUBACK, and the packet's valid filters are not acted on.
func TestInvalidUnsubscribeFilterCloses(t *testing.T) {
	for _, bad := range []string{"", "a/#/b", "a/b+"} {
		t.Run(fmt.Sprintf("%q", bad), func(t *testing.T) {
			srv := newServer(t)
			c := connect(t, srv, "bad", true, false)
			c.subscribe(1, "ok/+", 0)
			c.sendRaw(rawFilters(0xa2, 2, nil, "ok/+", bad))
			c.expectClose() // expectClose fails on any packet, an UNSUBACK among them
		})
	}
}
