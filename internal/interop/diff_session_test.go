package interop

import (
	"crypto/sha256"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ternmq/mqtt/packet"
)

// TestDifferentialTakeover: a second connection with the client identifier
// of a connected persistent session takes the session over [MQTT-3.1.4-2]:
// the first connection is closed, the new one gets session present
// [MQTT-3.2.2-2] and the messages the first left unacknowledged, with DUP
// [MQTT-4.4.0-1]; its subscriptions go on. A takeover with CleanSession 1
// discards the session [MQTT-3.1.2-6].
func TestDifferentialTakeover(t *testing.T) {
	want := []string{
		`first: PUBLISH tk/1 "one" qos=1 retain=false dup=false id=#1`,
		`first: PUBLISH tk/2 "two" qos=2 retain=false dup=false id=#2`,
		"first: closed by the takeover",
		"second: CONNACK rc=0 session present=true",
		`second: PUBLISH tk/1 "one" qos=1 retain=false dup=true id=#1`,
		`second: PUBLISH tk/2 "two" qos=2 retain=false dup=true id=#2`,
		`second: PUBLISH tk/3 "three" qos=1 retain=false dup=false id=#3`,
		"second: closed by the takeover",
		"third: CONNACK rc=0 session present=false",
		"third: PINGRESP",
		"fourth: CONNACK rc=0 session present=false",
		"fourth: PINGRESP",
	}
	differential(t, want, nil, func(t *testing.T, tg target) []string {
		var rec []string
		m := ids{}
		pub := dialRaw(t, tg.addr, tg.name+"/pub")
		pub.mustConnect(&packet.Connect{ClientID: []byte("pub"), CleanSession: true}, false)

		first := dialManual(t, tg.addr, tg.name+"/first")
		first.mustConnect(&packet.Connect{ClientID: []byte("T")}, false)
		first.subscribe("tk/#", 2)
		pub.publish("tk/1", "one", 1, false)
		rec = append(rec, "first: "+m.describe(first.expect(packet.PUBLISH)))
		pub.publish("tk/2", "two", 2, false)
		rec = append(rec, "first: "+m.describe(first.expect(packet.PUBLISH)))

		second := dialManual(t, tg.addr, tg.name+"/second")
		second.send(&packet.Connect{ClientID: []byte("T")})
		first.waitClosed()
		rec = append(rec, "first: closed by the takeover")
		rec = append(rec, "second: "+m.describe(second.expect(packet.CONNACK)))
		p1 := second.expect(packet.PUBLISH).(*packet.Publish)
		rec = append(rec, "second: "+m.describe(p1))
		p2 := second.expect(packet.PUBLISH).(*packet.Publish)
		rec = append(rec, "second: "+m.describe(p2))
		second.send(&packet.Puback{PacketID: p1.PacketID})
		second.send(&packet.Pubrec{PacketID: p2.PacketID})
		second.expect(packet.PUBREL)
		second.send(&packet.Pubcomp{PacketID: p2.PacketID})
		pub.publish("tk/3", "three", 1, false)
		rec = append(rec, "second: "+m.describe(second.expect(packet.PUBLISH)))

		// Taken over with CleanSession 1: the session and its
		// unacknowledged tk/3 are gone, and so is the subscription.
		third := dialManual(t, tg.addr, tg.name+"/third")
		third.send(&packet.Connect{ClientID: []byte("T"), CleanSession: true})
		second.waitClosed()
		rec = append(rec, "second: closed by the takeover")
		rec = append(rec, "third: "+m.describe(third.expect(packet.CONNACK)))
		pub.publish("tk/4", "four", 1, false)
		third.send(&packet.Pingreq{})
		rec = append(rec, "third: "+m.describe(third.expect(packet.PINGRESP)))
		third.disconnect()

		// The CleanSession 1 session ended with its connection: a
		// CleanSession 0 connection starts afresh [MQTT-3.2.2-3 n/a].
		fourth := dialManual(t, tg.addr, tg.name+"/fourth")
		fourth.send(&packet.Connect{ClientID: []byte("T")})
		rec = append(rec, "fourth: "+m.describe(fourth.expect(packet.CONNACK)))
		pub.publish("tk/5", "five", 1, false)
		fourth.send(&packet.Pingreq{})
		rec = append(rec, "fourth: "+m.describe(fourth.expect(packet.PINGRESP)))
		return rec
	})
}

// TestDifferentialResume: what a persistent session gets when it comes
// back. Retained messages are sent for new subscriptions only, not again
// for the session's existing ones [MQTT-3.3.1-6]; subscribing again to a
// filter replaces the subscription, with its new QoS, and sends the
// retained messages again [MQTT-3.8.4-3]; a persistent client's will is
// published like any other, and its session stays [MQTT-3.1.2-4].
func TestDifferentialResume(t *testing.T) {
	want := []string{
		"CONNACK rc=0 session present=false",
		`PUBLISH rs/ret "kept" qos=1 retain=true dup=false id=#1`,
		"-- killed, will published:",
		`msg will/rs "gone" qos=1 retain=false`,
		"-- back",
		"CONNACK rc=0 session present=true",
		`PUBLISH rs/live "queued" qos=1 retain=false dup=false id=#2`,
		`PUBLISH rs/live "online" qos=1 retain=false dup=false id=#3`,
		"-- subscribed again at QoS 0",
		`PUBLISH rs/ret "kept" qos=0 retain=true dup=false id=-`,
		`PUBLISH rs/live "downgraded" qos=0 retain=false dup=false id=-`,
	}
	differential(t, want, nil, func(t *testing.T, tg target) []string {
		var rec []string
		m := ids{}
		pub := dialRaw(t, tg.addr, tg.name+"/pub")
		pub.mustConnect(&packet.Connect{ClientID: []byte("pub"), CleanSession: true}, false)
		watch := dialRaw(t, tg.addr, tg.name+"/watch")
		watch.mustConnect(&packet.Connect{ClientID: []byte("watch"), CleanSession: true}, false)
		watch.subscribe("will/rs", 2)
		pub.publish("rs/ret", "kept", 1, true)

		connect := func() *rawClient {
			c := dialManual(t, tg.addr, tg.name+"/R")
			c.send(&packet.Connect{ClientID: []byte("R"), Will: true, WillTopic: []byte("will/rs"), WillMessage: []byte("gone"), WillQoS: 1})
			rec = append(rec, m.describe(c.expect(packet.CONNACK)))
			return c
		}
		ack := func(c *rawClient) {
			p := c.expect(packet.PUBLISH).(*packet.Publish)
			rec = append(rec, m.describe(p))
			if p.QoS == 1 {
				c.send(&packet.Puback{PacketID: p.PacketID})
			}
		}
		r := connect()
		r.send(&packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: []byte("rs/#"), QoS: 1}}})
		r.expect(packet.SUBACK)
		ack(r)
		r.ping() // the PUBACK has been handled
		r.drop()
		rec = append(rec, "-- killed, will published:")
		for _, msg := range watch.waitFor(t, "will/rs") {
			rec = append(rec, msg.String())
		}
		pub.publish("rs/live", "queued", 1, false)

		rec = append(rec, "-- back")
		r = connect()
		ack(r) // the queued message; no retained message again
		pub.publish("rs/live", "online", 1, false)
		ack(r)
		rec = append(rec, "-- subscribed again at QoS 0")
		r.send(&packet.Subscribe{PacketID: 2, Subscriptions: []packet.Subscription{{Filter: []byte("rs/#"), QoS: 0}}})
		r.expect(packet.SUBACK)
		ack(r)
		pub.publish("rs/live", "downgraded", 1, false)
		ack(r)
		return rec
	})
}

// TestDifferentialSizes: payloads of sizes around the boundaries of the
// remaining length encoding [MQTT-2.2.3] and of write buffers, at QoS 0, 1
// and 2, arrive whole; so does a message on a topic of the longest length a
// string may have, 65535 bytes [MQTT-4.7.3-3], matched by a filter of that
// length and by a wildcard.
func TestDifferentialSizes(t *testing.T) {
	sizes := []int{0, 1, 120, 121, 122, 16377, 16378, 16379, 4095, 4096, 4097, 65535, 65536, 65537, 100000, 524288}
	var want []string
	for i, n := range sizes {
		want = append(want, fmt.Sprintf("sz/%d qos=%d len=%d sha256=%x", i, i%3, n, sha256.Sum256(payload(n))))
	}
	long := "sz/" + strings.Repeat("x", 65535-len("sz/"))
	want = append(want, fmt.Sprintf("long topic, exact filter: %d bytes", len(long)), fmt.Sprintf("long topic, wildcard: %d bytes", len(long)))
	differential(t, want, nil, func(t *testing.T, tg target) []string {
		s := dialRaw(t, tg.addr, tg.name+"/S")
		s.mustConnect(&packet.Connect{ClientID: []byte("S"), CleanSession: true}, false)
		s.subscribe("sz/#", 2, "end", 0)
		pub := dialRaw(t, tg.addr, tg.name+"/pub")
		pub.mustConnect(&packet.Connect{ClientID: []byte("pub"), CleanSession: true}, false)
		for i, n := range sizes {
			pub.publish(fmt.Sprintf("sz/%d", i), string(payload(n)), byte(i%3), false)
		}
		pub.publish("end", "", 0, false)
		var rec []string
		for _, m := range s.waitFor(t, "end") {
			if m.Topic != "end" {
				rec = append(rec, fmt.Sprintf("%s qos=%d len=%d sha256=%x", m.Topic, m.QoS, len(m.Payload), sha256.Sum256([]byte(m.Payload))))
			}
		}
		exact := dialRaw(t, tg.addr, tg.name+"/exact")
		exact.mustConnect(&packet.Connect{ClientID: []byte("exact"), CleanSession: true}, false)
		exact.subscribe(long, 1)
		pub.publish(long, "long", 1, false)
		for _, r := range []struct {
			c    *rawClient
			name string
		}{{exact, "exact filter"}, {s, "wildcard"}} {
			for _, m := range r.c.waitFor(t, long) {
				if m.Topic == long {
					rec = append(rec, fmt.Sprintf("long topic, %s: %d bytes", r.name, len(m.Topic)))
				}
			}
		}
		return rec
	})
}

// payload is n bytes of a repeating pattern.
func payload(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i>>8)
	}
	return b
}

// TestDifferentialRetainedWill: a will with RETAIN set is stored as the
// topic's retained message [MQTT-3.1.2-17], and an empty retained will
// clears it [MQTT-3.3.1-10] [MQTT-3.3.1-11], as a PUBLISH would.
func TestDifferentialRetainedWill(t *testing.T) {
	want := []string{
		`live: msg wr/x "first will" qos=1 retain=false`,
		`new subscriber: msg wr/x "first will" qos=1 retain=true`,
		`live: msg wr/x "" qos=0 retain=false`,
		"new subscriber: nothing",
	}
	differential(t, want, nil, func(t *testing.T, tg target) []string {
		var rec []string
		live := dialRaw(t, tg.addr, tg.name+"/live")
		live.mustConnect(&packet.Connect{ClientID: []byte("live"), CleanSession: true}, false)
		live.subscribe("wr/x", 2)
		pub := dialRaw(t, tg.addr, tg.name+"/pub")
		pub.mustConnect(&packet.Connect{ClientID: []byte("pub"), CleanSession: true}, false)
		pub.publish("wr/x", "old", 1, true)
		live.waitFor(t, "wr/x")
		live.mu.Lock()
		live.msgs = nil
		live.mu.Unlock()

		for i, will := range []struct {
			msg string
			qos byte
		}{{"first will", 1}, {"", 0}} {
			w := dialRaw(t, tg.addr, tg.name+"/will")
			w.mustConnect(&packet.Connect{ClientID: []byte("W"), CleanSession: true, Will: true, WillRetain: true,
				WillTopic: []byte("wr/x"), WillMessage: []byte(will.msg), WillQoS: will.qos}, false)
			w.drop()
			for _, m := range live.waitFor(t, "wr/x") {
				rec = append(rec, "live: "+m.String())
			}
			live.mu.Lock()
			live.msgs = nil
			live.mu.Unlock()
			n := dialRaw(t, tg.addr, tg.name+"/new")
			n.mustConnect(&packet.Connect{ClientID: []byte(fmt.Sprintf("new%d", i)), CleanSession: true}, false)
			n.subscribe("wr/x", 2, "end", 0)
			n.publish("end", "", 0, false)
			got := n.waitFor(t, "end")
			if len(got) == 1 {
				rec = append(rec, "new subscriber: nothing")
			}
			for _, m := range got[:len(got)-1] {
				rec = append(rec, "new subscriber: "+m.String())
			}
			n.disconnect()
		}
		return rec
	})
}

// TestDifferentialOfflineDowngrade: a message whose QoS is downgraded to 0
// by the subscription is a QoS 0 message for that client, so a persistent
// session away does not keep it [MQTT-3.1.2-5] [MQTT-3.8.4-6].
func TestDifferentialOfflineDowngrade(t *testing.T) {
	want := []string{"back: nothing kept"}
	differential(t, want, nil, func(t *testing.T, tg target) []string {
		p := dialRaw(t, tg.addr, tg.name+"/P")
		p.mustConnect(&packet.Connect{ClientID: []byte("P")}, false)
		p.subscribe("od/#", 0, "end", 1)
		p.disconnect()
		pub := dialRaw(t, tg.addr, tg.name+"/pub")
		pub.mustConnect(&packet.Connect{ClientID: []byte("pub"), CleanSession: true}, false)
		pub.publish("od/x", "at QoS 1", 1, false)
		pub.publish("od/x", "at QoS 2", 2, false)
		p = dialRaw(t, tg.addr, tg.name+"/P")
		p.mustConnect(&packet.Connect{ClientID: []byte("P")}, true)
		pub.publish("end", "", 1, false)
		got := p.waitFor(t, "end")
		if len(got) == 1 {
			return []string{"back: nothing kept"}
		}
		return []string{"back: " + list(got[:len(got)-1])}
	})
}

// TestDifferentialKeepAlive: any packet from the client counts for its
// keepalive, not only PINGREQ [MQTT-3.1.2-23]; within one and a half times
// the keepalive the connection stays, silence beyond it ends it
// [MQTT-3.1.2-24].
func TestDifferentialKeepAlive(t *testing.T) {
	want := []string{"active for 3s: connected", "silent: closed"}
	differential(t, want, nil, func(t *testing.T, tg target) []string {
		c := dialRaw(t, tg.addr, tg.name+"/K")
		c.mustConnect(&packet.Connect{ClientID: []byte("K"), CleanSession: true, KeepAlive: 1}, false)
		// QoS 0 PUBLISH packets only, every 0.4 s: no PINGREQ, no answer.
		for range 8 {
			time.Sleep(400 * time.Millisecond)
			c.send(&packet.Publish{Topic: []byte("ka/x"), Payload: []byte("tick")})
		}
		var rec []string
		select {
		case <-c.done:
			rec = append(rec, "active for 3s: closed: "+fmt.Sprint(c.err()))
		default:
			c.ping()
			rec = append(rec, "active for 3s: connected")
		}
		select {
		case <-c.done:
			rec = append(rec, "silent: closed")
		case <-time.After(timeout):
			rec = append(rec, "silent: still connected after "+timeout.String())
		}
		return rec
	})
}

// TestDifferentialManyFilters: one SUBSCRIBE with 100 filters gets one
// SUBACK with a return code per filter, in order [MQTT-3.8.4-4]
// [MQTT-3.9.3-1]; one UNSUBSCRIBE with all of them removes them all
// [MQTT-3.10.4-6].
func TestDifferentialManyFilters(t *testing.T) {
	const n = 100
	codes := make([]string, n)
	for i := range codes {
		codes[i] = strconv.Itoa(i % 3)
	}
	want := []string{"SUBACK " + strings.Join(codes, " "), fmt.Sprintf("%d messages", n), "after UNSUBSCRIBE: nothing"}
	differential(t, want, nil, func(t *testing.T, tg target) []string {
		var rec []string
		c := dialRaw(t, tg.addr, tg.name+"/C")
		c.mustConnect(&packet.Connect{ClientID: []byte("C"), CleanSession: true}, false)
		var pairs []any
		var filters []string
		for i := range n {
			f := fmt.Sprintf("mf/%d", i)
			pairs = append(pairs, f, i%3)
			filters = append(filters, f)
		}
		got := c.subscribe(pairs...)
		s := make([]string, len(got))
		for i, g := range got {
			s[i] = strconv.Itoa(int(g))
		}
		rec = append(rec, "SUBACK "+strings.Join(s, " "))
		c.subscribe("end", 0)
		for _, f := range filters {
			c.publish(f, "", 0, false)
		}
		c.publish("end", "", 0, false)
		rec = append(rec, fmt.Sprintf("%d messages", len(c.waitFor(t, "end"))-1))
		c.unsubscribe(filters...)
		c.mu.Lock()
		c.msgs = nil
		c.mu.Unlock()
		for _, f := range filters {
			c.publish(f, "", 0, false)
		}
		c.publish("end", "", 0, false)
		if after := c.waitFor(t, "end"); len(after) > 1 {
			rec = append(rec, "after UNSUBSCRIBE: "+list(after[:len(after)-1]))
		} else {
			rec = append(rec, "after UNSUBSCRIBE: nothing")
		}
		return rec
	})
}

// TestDifferentialInflight: a subscriber that acknowledges nothing gets
// 20 QoS 1 messages, the default inflight window of both brokers (tern's
// Options.MaxInflight, mosquitto's max_inflight_messages), each with a
// packet identifier not in use [MQTT-2.3.1-2], and no more; the rest
// follow, in order and once each, as it acknowledges them. How many a
// PUBACK lets through is the broker's choice: tern keeps the window at 20
// (checked for tern only), mosquitto 2.0.11 sends more.
func TestDifferentialInflight(t *testing.T) {
	want := []string{
		"before any PUBACK: 0 to 19, 20 distinct identifiers",
		"in all: 0 to 29, in order, once each",
	}
	differential(t, want, nil, func(t *testing.T, tg target) []string {
		s := dialManual(t, tg.addr, tg.name+"/S")
		s.mustConnect(&packet.Connect{ClientID: []byte("S"), CleanSession: true}, false)
		s.send(&packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: []byte("if/#"), QoS: 1}}})
		s.expect(packet.SUBACK)
		pub := dialRaw(t, tg.addr, tg.name+"/pub")
		pub.mustConnect(&packet.Connect{ClientID: []byte("pub"), CleanSession: true}, false)
		for i := range 30 {
			pub.publish("if/x", strconv.Itoa(i), 1, false)
		}
		// burst reads the PUBLISH packets the broker sends until the
		// answer to a PINGREQ, and returns their payloads.
		var pending []uint16
		burst := func() (payloads []string, distinct int) {
			s.send(&packet.Pingreq{})
			ids := map[uint16]bool{}
			for {
				p, ok := s.recv()
				if !ok || p == nil {
					t.Fatalf("%s: no PINGRESP (%v)", s.name, s.err())
				}
				if p.Type() == packet.PINGRESP {
					return payloads, len(ids)
				}
				pp, isPub := p.(*packet.Publish)
				if !isPub {
					t.Fatalf("%s: got %v, want a PUBLISH or PINGRESP", s.name, p)
				}
				payloads = append(payloads, string(pp.Payload))
				ids[pp.PacketID] = true
				pending = append(pending, pp.PacketID)
			}
		}
		span := func(p []string) string {
			if len(p) == 0 {
				return "nothing"
			}
			return p[0] + " to " + p[len(p)-1]
		}
		// The first burst may still be arriving: wait for 20 messages.
		s.wait(t, "20 messages", func(m []message) bool { return len(m) >= 20 })
		first, distinct := burst()
		rec := []string{fmt.Sprintf("before any PUBACK: %s, %d distinct identifiers", span(first), distinct)}
		for _, id := range pending[:5] {
			s.send(&packet.Puback{PacketID: id})
		}
		pending = pending[5:]
		s.wait(t, "more messages", func(m []message) bool { return len(m) >= 25 })
		more, _ := burst()
		if tg.name == "tern" && span(more) != "20 to 24" {
			t.Errorf("after 5 PUBACKs tern's broker sent %s, want 20 to 24: its window is MaxInflight, 20", span(more))
		}
		for len(s.received()) < 30 {
			for _, id := range pending {
				s.send(&packet.Puback{PacketID: id})
			}
			pending = nil
			if p, _ := burst(); len(p) == 0 {
				break
			}
		}
		all := "in all: 0 to 29, in order, once each"
		got := s.received()
		for i, m := range got {
			if len(got) != 30 || m.Payload != strconv.Itoa(i) {
				all = "in all: " + list(got)
				break
			}
		}
		return append(rec, all)
	})
}
