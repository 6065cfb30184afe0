package interop

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/ternmq/mqtt/packet"
)

// differential runs scenario against tern's broker and mosquitto, checks
// each record against want (the specification's) when want is not nil, and
// compares the two records.
//
// mosquitto departs from the specification in a few places: known maps a
// line of want to what mosquitto records in its place ("" for nothing).
// mosquitto's record is checked against want changed that way, and the two
// records are compared after tern's is changed the same way: they match
// except where mosquitto is known to be wrong.
func differential(t *testing.T, want []string, known map[string]string, scenario func(t *testing.T, tg target) []string) {
	t.Helper()
	got := map[string][]string{}
	for _, b := range brokers {
		t.Run(b.name, func(t *testing.T) {
			rec := scenario(t, b.start(t, false))
			if t.Failed() || rec == nil {
				return
			}
			defer func() {
				if t.Failed() {
					t.Logf("record:\n  %s", strings.Join(rec, "\n  "))
				}
			}()
			got[b.name] = rec
			if want == nil {
				return
			}
			w := want
			if b.name == "mosquitto" {
				w = asMosquitto(want, known)
			}
			if d := cmp.Diff(w, rec); d != "" {
				t.Errorf("record differs from the specification's (-want +got):\n%s", d)
			}
		})
	}
	if got["tern"] == nil || got["mosquitto"] == nil {
		return // the failure or the skip is reported by the subtest
	}
	if d := cmp.Diff(got["mosquitto"], asMosquitto(got["tern"], known)); d != "" {
		t.Errorf("records differ (-mosquitto +tern):\n%s", d)
	}
}

// asMosquitto applies known to rec: see differential.
func asMosquitto(rec []string, known map[string]string) []string {
	var out []string
	for _, l := range rec {
		if m, ok := known[l]; ok {
			if m != "" {
				out = append(out, m)
			}
			continue
		}
		out = append(out, l)
	}
	return out
}

// ids names packet identifiers by their order of appearance, so that
// records of two brokers that number their packets differently compare.
type ids map[uint16]string

func (m ids) name(id uint16) string {
	if id == 0 {
		return "-"
	}
	if n, ok := m[id]; ok {
		return n
	}
	m[id] = fmt.Sprintf("#%d", len(m)+1)
	return m[id]
}

// describe is a packet from the broker as a record line.
func (m ids) describe(p packet.Packet) string {
	switch p := p.(type) {
	case *packet.Publish:
		return fmt.Sprintf("PUBLISH %s %q qos=%d retain=%v dup=%v id=%s", p.Topic, p.Payload, p.QoS, p.Retain, p.Dup, m.name(p.PacketID))
	case *packet.Pubrel:
		return "PUBREL id=" + m.name(p.PacketID)
	case *packet.Pubrec:
		return "PUBREC id=" + m.name(p.PacketID)
	case *packet.Pubcomp:
		return "PUBCOMP id=" + m.name(p.PacketID)
	case *packet.Puback:
		return "PUBACK id=" + m.name(p.PacketID)
	case *packet.Connack:
		return fmt.Sprintf("CONNACK rc=%d session present=%v", p.ReturnCode, p.SessionPresent)
	}
	return p.String()
}

// TestDifferentialRedelivery: a persistent session's unacknowledged
// messages are sent again on reconnection, PUBLISH with DUP and PUBREL, with
// their original packet identifiers, in their original order [MQTT-4.4.0-1]
// [MQTT-4.6.0-1] [MQTT-4.6.0-3] [MQTT-3.3.1-1]; acknowledged ones are not.
func TestDifferentialRedelivery(t *testing.T) {
	want := []string{
		`PUBLISH re/1 "a" qos=1 retain=false dup=false id=#1`,
		`PUBLISH re/2 "b" qos=2 retain=false dup=false id=#2`,
		"PUBREL id=#2",
		`PUBLISH re/3 "c" qos=2 retain=false dup=false id=#3`,
		"-- reconnected",
		"CONNACK rc=0 session present=true",
		`PUBLISH re/1 "a" qos=1 retain=false dup=true id=#1`,
		"PUBREL id=#2",
		`PUBLISH re/3 "c" qos=2 retain=false dup=true id=#3`,
		"PUBREL id=#3",
		`PUBLISH re/4 "d" qos=1 retain=false dup=false id=#4`,
		"-- reconnected",
		"CONNACK rc=0 session present=true",
		`PUBLISH re/5 "e" qos=0 retain=false dup=false id=-`,
	}
	differential(t, want, nil, func(t *testing.T, tg target) []string {
		var rec []string
		m := ids{}
		pub := dialRaw(t, tg.addr, tg.name+"/pub")
		pub.mustConnect(&packet.Connect{ClientID: []byte("pub"), CleanSession: true}, false)

		s := dialManual(t, tg.addr, tg.name+"/S")
		s.mustConnect(&packet.Connect{ClientID: []byte("S")}, false)
		if got := s.subscribe("re/#", 2); got[0] != 2 {
			t.Fatalf("SUBACK %v", got)
		}
		pub.publish("re/1", "a", 1, false)
		p1 := s.expect(packet.PUBLISH).(*packet.Publish) // not acknowledged
		rec = append(rec, m.describe(p1))
		pub.publish("re/2", "b", 2, false)
		p2 := s.expect(packet.PUBLISH).(*packet.Publish)
		rec = append(rec, m.describe(p2))
		s.send(&packet.Pubrec{PacketID: p2.PacketID})
		rec = append(rec, m.describe(s.expect(packet.PUBREL))) // no PUBCOMP
		pub.publish("re/3", "c", 2, false)
		p3 := s.expect(packet.PUBLISH).(*packet.Publish) // no PUBREC
		rec = append(rec, m.describe(p3))
		s.drop()

		rec = append(rec, "-- reconnected")
		s = dialManual(t, tg.addr, tg.name+"/S")
		s.send(&packet.Connect{ClientID: []byte("S")})
		rec = append(rec, m.describe(s.expect(packet.CONNACK)))
		rec = append(rec, m.describe(s.expect(packet.PUBLISH)))
		rec = append(rec, m.describe(s.expect(packet.PUBREL)))
		rec = append(rec, m.describe(s.expect(packet.PUBLISH)))
		s.send(&packet.Puback{PacketID: p1.PacketID})
		s.send(&packet.Pubcomp{PacketID: p2.PacketID})
		s.send(&packet.Pubrec{PacketID: p3.PacketID})
		rec = append(rec, m.describe(s.expect(packet.PUBREL)))
		s.send(&packet.Pubcomp{PacketID: p3.PacketID})
		pub.publish("re/4", "d", 1, false)
		p4 := s.expect(packet.PUBLISH).(*packet.Publish)
		rec = append(rec, m.describe(p4))
		s.send(&packet.Puback{PacketID: p4.PacketID})
		s.ping() // the PUBACK has been handled
		s.drop()

		// Everything was acknowledged: nothing is sent again, and the
		// first packet after CONNACK is a new message.
		rec = append(rec, "-- reconnected")
		s = dialManual(t, tg.addr, tg.name+"/S")
		s.send(&packet.Connect{ClientID: []byte("S")})
		rec = append(rec, m.describe(s.expect(packet.CONNACK)))
		pub.publish("re/5", "e", 0, false)
		rec = append(rec, m.describe(s.expect(packet.PUBLISH)))
		return rec
	})
}

// TestDifferentialExactlyOnce: a QoS 2 PUBLISH sent again by its
// publisher, with DUP, before and after a reconnection, is delivered once
// [MQTT-4.3.3-2] [MQTT-4.4.0-1]; after PUBCOMP the identifier is free for a
// new message. A PUBREL for an unknown identifier gets its PUBCOMP.
func TestDifferentialExactlyOnce(t *testing.T) {
	want := []string{
		"PUBREC id=#1",
		"PUBREC id=#1",
		"-- reconnected",
		"CONNACK rc=0 session present=true",
		"PUBREC id=#1",
		"PUBCOMP id=#1",
		"PUBREC id=#1",
		"PUBCOMP id=#1",
		"PUBCOMP id=#2",
		`msg x2/t "once" qos=2 retain=false`,
		`msg x2/t "again" qos=2 retain=false`,
	}
	differential(t, want, nil, func(t *testing.T, tg target) []string {
		var rec []string
		m := ids{}
		q := dialRaw(t, tg.addr, tg.name+"/Q")
		q.mustConnect(&packet.Connect{ClientID: []byte("Q"), CleanSession: true}, false)
		q.subscribe("x2/#", 2)

		p := dialManual(t, tg.addr, tg.name+"/P2")
		p.mustConnect(&packet.Connect{ClientID: []byte("P2")}, false)
		once := &packet.Publish{Topic: []byte("x2/t"), Payload: []byte("once"), QoS: 2, PacketID: 7}
		p.send(once)
		rec = append(rec, m.describe(p.expect(packet.PUBREC)))
		once.Dup = true
		p.send(once)
		rec = append(rec, m.describe(p.expect(packet.PUBREC)))
		p.drop()

		rec = append(rec, "-- reconnected")
		p = dialManual(t, tg.addr, tg.name+"/P2")
		p.send(&packet.Connect{ClientID: []byte("P2")})
		rec = append(rec, m.describe(p.expect(packet.CONNACK)))
		p.send(once)
		rec = append(rec, m.describe(p.expect(packet.PUBREC)))
		p.send(&packet.Pubrel{PacketID: 7})
		rec = append(rec, m.describe(p.expect(packet.PUBCOMP)))
		p.send(&packet.Publish{Topic: []byte("x2/t"), Payload: []byte("again"), QoS: 2, PacketID: 7})
		rec = append(rec, m.describe(p.expect(packet.PUBREC)))
		p.send(&packet.Pubrel{PacketID: 7})
		rec = append(rec, m.describe(p.expect(packet.PUBCOMP)))
		p.send(&packet.Pubrel{PacketID: 9})
		rec = append(rec, m.describe(p.expect(packet.PUBCOMP)))
		p.disconnect()

		q.subscribe("end/Q", 2)
		pub := dialRaw(t, tg.addr, tg.name+"/pub")
		pub.mustConnect(&packet.Connect{ClientID: []byte("pub"), CleanSession: true}, false)
		pub.publish("end/Q", "", 2, false)
		for _, msg := range q.waitFor(t, "end/Q") {
			if msg.Topic != "end/Q" {
				rec = append(rec, msg.String())
			}
		}
		return rec
	})
}

// TestDifferentialViolations: a broker closes the connection of a client
// that breaks the protocol [MQTT-4.8.0-1] and publishes its will
// [MQTT-3.1.2-8]. After the offending bytes the client sends a PINGREQ: a
// broker that lets the violation pass answers it, and the record shows
// what the broker sent before closing, or that it answered.
func TestDifferentialViolations(t *testing.T) {
	cases := []struct {
		name string
		raw  []byte
	}{
		// SUBSCRIBE with reserved flags 0000 [MQTT-3.8.1-1].
		{"subscribe-flags", []byte{0x80, 0x06, 0x00, 0x01, 0x00, 0x01, 'a', 0x00}},
		// A second CONNECT [MQTT-3.1.0-2].
		{"second-connect", connectBytes("MQTT", 4, 0x02, "again")},
		// PUBLISH at QoS 3 [MQTT-3.3.1-4].
		{"qos3", []byte{0x36, 0x05, 0x00, 0x01, 'a', 0x00, 0x01}},
		// PUBLISH to a topic with a wildcard [MQTT-3.3.2-2].
		{"wildcard-topic", []byte{0x30, 0x05, 0x00, 0x03, 'a', '/', '#'}},
		// PUBLISH QoS 1 with packet identifier 0 [MQTT-2.3.1-1].
		{"zero-id", []byte{0x32, 0x05, 0x00, 0x01, 'a', 0x00, 0x00}},
		// SUBSCRIBE with a filter where "#" is not last [MQTT-4.7.1-2].
		{"bad-filter", []byte{0x82, 0x08, 0x00, 0x01, 0x00, 0x03, 'a', '#', 'b', 0x00}},
		// SUBSCRIBE with a filter where "+" is not a whole level
		// [MQTT-4.7.1-3].
		{"bad-plus", []byte{0x82, 0x08, 0x00, 0x01, 0x00, 0x03, 'a', '+', '/', 0x00}},
		// SUBSCRIBE with requested QoS 3 [MQTT-3.8.3-4].
		{"subscribe-qos3", []byte{0x82, 0x06, 0x00, 0x01, 0x00, 0x01, 'a', 0x03}},
		// UNSUBSCRIBE with reserved flags 0000 [MQTT-3.10.1-1].
		{"unsubscribe-flags", []byte{0xa0, 0x05, 0x00, 0x01, 0x00, 0x01, 'a'}},
		// Reserved packet type 15 [MQTT-2.2.2-2].
		{"type-15", []byte{0xf0, 0x00}},
		// PINGREQ with flags set [MQTT-2.2.2-2].
		{"pingreq-flags", []byte{0xc1, 0x00}},
		// Topic name with U+0000 [MQTT-4.7.3-2].
		{"nul-in-topic", []byte{0x30, 0x05, 0x00, 0x03, 'a', 0x00, 'b'}},
		// Topic name that is not UTF-8 [MQTT-1.5.3-1].
		{"bad-utf8", []byte{0x30, 0x05, 0x00, 0x03, 'a', 0xff, 'b'}},
	}
	var want []string
	for _, tc := range cases {
		want = append(want, tc.name+": closed", willLine(tc.name))
	}
	// mosquitto 2.0.11 closes the connection of a second CONNECT without
	// publishing the will, which the specification asks for on a protocol
	// violation [MQTT-3.1.2-8]; it does not check the flags of PINGREQ.
	known := map[string]string{
		willLine("second-connect"): "",
		"pingreq-flags: closed":    "pingreq-flags: PINGRESP",
		willLine("pingreq-flags"):  "",
	}
	differential(t, want, known, func(t *testing.T, tg target) []string {
		var rec []string
		watch := dialRaw(t, tg.addr, tg.name+"/watch")
		watch.mustConnect(&packet.Connect{ClientID: []byte("watch"), CleanSession: true}, false)
		watch.subscribe("viol/#", 2)
		for _, tc := range cases {
			c := dialRaw(t, tg.addr, tg.name+"/"+tc.name)
			c.mustConnect(&packet.Connect{ClientID: []byte(tc.name), CleanSession: true, Will: true,
				WillTopic: []byte("viol/" + tc.name), WillMessage: []byte(tc.name + " gone"), WillQoS: 1}, false)
			c.sendBytes(append(append([]byte(nil), tc.raw...), 0xc0, 0x00))
			var answers []string
			open := false
		read:
			for {
				p, ok := c.recv()
				switch {
				case !ok:
					t.Fatalf("%s: neither closed nor answered within %v", c.name, timeout)
				case p == nil:
					answers = append(answers, "closed")
					break read
				}
				answers = append(answers, p.String())
				if p.Type() == packet.PINGRESP {
					open = true
					break read
				}
			}
			rec = append(rec, tc.name+": "+strings.Join(answers, ", "))
			if open {
				c.disconnect() // no will
				continue
			}
			// A will mosquitto is known not to send is waited for a
			// while only.
			if _, ok := known[willLine(tc.name)]; ok && tg.name == "mosquitto" {
				time.Sleep(time.Second)
				for _, msg := range watch.received() {
					rec = append(rec, msg.String())
				}
			} else {
				for _, msg := range watch.waitFor(t, "viol/"+tc.name) {
					rec = append(rec, msg.String())
				}
			}
			watch.mu.Lock()
			watch.msgs = nil
			watch.mu.Unlock()
		}
		return rec
	})
}

func willLine(name string) string {
	return fmt.Sprintf("msg viol/%s %q qos=1 retain=false", name, name+" gone")
}

// TestDifferentialMatching: which topics each filter matches, with one
// subscriber per filter [MQTT-4.7.1-2] [MQTT-4.7.1-3] [MQTT-4.7.2-1]
// [MQTT-4.7.3-4]: topic levels, empty levels, "#" matching the parent
// level, and no wildcard at the first level matching a "$" topic.
func TestDifferentialMatching(t *testing.T) {
	want := []string{
		"#: m m/ m/b m/b/c m//c /m / m/b/c/d M/b m/b/c/ ü/b/c \u00e9 e\u0301",
		"+: m \u00e9 e\u0301",
		`+/+: m/ m/b /m / M/b`,
		`/+: /m /`,
		"+/#: m m/ m/b m/b/c m//c /m / m/b/c/d M/b m/b/c/ ü/b/c \u00e9 e\u0301",
		`m/#: m m/ m/b m/b/c m//c m/b/c/d m/b/c/`,
		`m/+: m/ m/b`,
		`m/+/c: m/b/c m//c`,
		`m/b/#: m/b m/b/c m/b/c/d m/b/c/`,
		`m/b/c: m/b/c`,
		`m//c: m//c`,
		`m/+/+: m/b/c m//c`,
		`+/b/c: m/b/c ü/b/c`,
		`$x/#: $x/b $x`,
		`$x/+: $x/b`,
		`+/x: `,
		`M/#: M/b`,
		`m/b/c/#: m/b/c m/b/c/d m/b/c/`,
		"\u00e9: \u00e9",
	}
	differential(t, want, nil, func(t *testing.T, tg target) []string {
		subs := make([]*rawClient, len(matchFilters))
		for i, f := range matchFilters {
			c := dialRaw(t, tg.addr, tg.name+"/"+f)
			c.mustConnect(&packet.Connect{ClientID: []byte(fmt.Sprintf("sub%d", i)), CleanSession: true}, false)
			if got := c.subscribe(f, 0, "end", 0); got[0] != 0 {
				t.Fatalf("%s: SUBACK %v", f, got)
			}
			subs[i] = c
		}
		pub := dialRaw(t, tg.addr, tg.name+"/pub")
		pub.mustConnect(&packet.Connect{ClientID: []byte("pub"), CleanSession: true}, false)
		for _, topic := range matchTopics {
			pub.publish(topic, "", 0, false)
		}
		pub.publish("end", "", 0, false)
		var rec []string
		for i, c := range subs {
			var got []string
			for _, m := range c.waitFor(t, "end") {
				if m.Topic != "end" {
					got = append(got, m.Topic)
				}
			}
			rec = append(rec, matchFilters[i]+": "+strings.Join(got, " "))
		}
		return rec
	})
}

// The filters and topic names of the matching tests. "é" is written
// precomposed (U+00E9) in the filter, and both precomposed and decomposed
// (e, U+0301) in the names: matching compares bytes, with no Unicode
// normalisation [MQTT-4.7.3-4].
var (
	matchFilters = []string{"#", "+", "+/+", "/+", "+/#", "m/#", "m/+", "m/+/c", "m/b/#", "m/b/c", "m//c", "m/+/+", "+/b/c", "$x/#", "$x/+", "+/x", "M/#", "m/b/c/#", "\u00e9"}
	matchTopics  = []string{"m", "m/", "m/b", "m/b/c", "m//c", "/m", "/", "m/b/c/d", "$x/b", "$x", "M/b", "m/b/c/", "ü/b/c", "\u00e9", "e\u0301"}
)

// TestDifferentialRetainedMatching: the retained messages a new
// subscription gets, for the filters and topics of TestDifferentialMatching,
// with a retained message on every topic [MQTT-3.3.1-6] [MQTT-4.7.2-1]. The
// order of retained messages on different topics is not specified, so each
// filter's topics are sorted.
func TestDifferentialRetainedMatching(t *testing.T) {
	var want []string
	// The retained messages are the topics a live subscription matches.
	for _, l := range []string{
		"#: m m/ m/b m/b/c m//c /m / m/b/c/d M/b m/b/c/ ü/b/c \u00e9 e\u0301",
		"+: m \u00e9 e\u0301",
		"+/+: m/ m/b /m / M/b",
		"/+: /m /",
		"+/#: m m/ m/b m/b/c m//c /m / m/b/c/d M/b m/b/c/ ü/b/c \u00e9 e\u0301",
		"m/#: m m/ m/b m/b/c m//c m/b/c/d m/b/c/",
		"m/+: m/ m/b",
		"m/+/c: m/b/c m//c",
		"m/b/#: m/b m/b/c m/b/c/d m/b/c/",
		"m/b/c: m/b/c",
		"m//c: m//c",
		"m/+/+: m/b/c m//c",
		"+/b/c: m/b/c ü/b/c",
		"$x/#: $x/b $x",
		"$x/+: $x/b",
		"+/x: ",
		"M/#: M/b",
		"m/b/c/#: m/b/c m/b/c/d m/b/c/",
		"\u00e9: \u00e9",
	} {
		f, topics, _ := strings.Cut(l, ": ")
		list := strings.Fields(topics)
		sort.Strings(list)
		want = append(want, f+": "+strings.Join(list, " "))
	}
	differential(t, want, nil, func(t *testing.T, tg target) []string {
		pub := dialRaw(t, tg.addr, tg.name+"/pub")
		pub.mustConnect(&packet.Connect{ClientID: []byte("pub"), CleanSession: true}, false)
		for _, topic := range matchTopics {
			pub.publish(topic, "r", 0, true)
		}
		var rec []string
		for i, f := range matchFilters {
			c := dialRaw(t, tg.addr, tg.name+"/"+f)
			c.mustConnect(&packet.Connect{ClientID: []byte(fmt.Sprintf("sub%d", i)), CleanSession: true}, false)
			c.subscribe(f, 0)
			c.subscribe("end", 0)
			c.publish("end", "", 0, false)
			var got []string
			for _, m := range c.waitFor(t, "end") {
				if m.Topic != "end" {
					if !m.Retain {
						got = append(got, m.Topic+"(RETAIN 0)")
						continue
					}
					got = append(got, m.Topic)
				}
			}
			sort.Strings(got)
			rec = append(rec, f+": "+strings.Join(got, " "))
			c.disconnect()
		}
		return rec
	})
}
