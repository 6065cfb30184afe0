package interop

import (
	"fmt"
	"strings"
	"testing"

	"github.com/ternmq/mqtt/packet"
)

// TestDifferentialOrder: messages a publisher sends without waiting for
// their acknowledgements reach a subscriber in the order they were
// published, per topic and QoS [MQTT-4.6.0-6], also when QoS 0 and 1
// messages are mixed on one topic; the broker acknowledges in order
// [MQTT-4.6.0-2] [MQTT-4.6.0-4]. The order between messages of different
// QoS is not specified: mosquitto lets QoS 0 messages overtake QoS 1
// messages waiting for room in the inflight window, so the mixed topic is
// compared QoS by QoS.
func TestDifferentialOrder(t *testing.T) {
	const n1, n2, nMixed = 200, 15, 60
	seq := func(prefix string, from, n, step int) string {
		var s []string
		for i := from; i < n; i += step {
			s = append(s, fmt.Sprintf("%s%d", prefix, i))
		}
		return strings.Join(s, " ")
	}
	want := []string{
		"acks: in order",
		"o/1: " + seq("a", 0, n1, 1),
		"o/2: " + seq("b", 0, n2, 1),
		"o/3 QoS 0: " + seq("c", 0, nMixed, 2),
		"o/3 QoS 1: " + seq("c", 1, nMixed, 2),
	}
	differential(t, want, nil, func(t *testing.T, tg target) []string {
		s := dialRaw(t, tg.addr, tg.name+"/S")
		s.mustConnect(&packet.Connect{ClientID: []byte("S"), CleanSession: true}, false)
		s.subscribe("o/#", 2, "end", 2)
		pub := dialRaw(t, tg.addr, tg.name+"/pub")
		pub.mustConnect(&packet.Connect{ClientID: []byte("pub"), CleanSession: true}, false)

		inOrder := true
		// QoS 1, pipelined.
		for i := 0; i < n1; i++ {
			pub.send(&packet.Publish{Topic: []byte("o/1"), Payload: []byte(fmt.Sprintf("a%d", i)), QoS: 1, PacketID: uint16(1 + i)})
		}
		for i := 0; i < n1; i++ {
			if ack := pub.expect(packet.PUBACK).(*packet.Puback); ack.PacketID != uint16(1+i) {
				inOrder = false
			}
		}
		// QoS 2, pipelined up to the PUBRECs, then the PUBRELs.
		for i := 0; i < n2; i++ {
			pub.send(&packet.Publish{Topic: []byte("o/2"), Payload: []byte(fmt.Sprintf("b%d", i)), QoS: 2, PacketID: uint16(1000 + i)})
		}
		for i := 0; i < n2; i++ {
			if ack := pub.expect(packet.PUBREC).(*packet.Pubrec); ack.PacketID != uint16(1000+i) {
				inOrder = false
			}
		}
		for i := 0; i < n2; i++ {
			pub.send(&packet.Pubrel{PacketID: uint16(1000 + i)})
		}
		for i := 0; i < n2; i++ {
			if ack := pub.expect(packet.PUBCOMP).(*packet.Pubcomp); ack.PacketID != uint16(1000+i) {
				inOrder = false
			}
		}
		// QoS 0, 1 and 2 mixed on one topic.
		var mixedIDs []uint16
		for i := 0; i < nMixed; i++ {
			p := &packet.Publish{Topic: []byte("o/3"), Payload: []byte(fmt.Sprintf("c%d", i)), QoS: byte(i % 2)}
			if p.QoS > 0 {
				p.PacketID = uint16(2000 + i)
				mixedIDs = append(mixedIDs, p.PacketID)
			}
			pub.send(p)
		}
		for _, id := range mixedIDs {
			if ack := pub.expect(packet.PUBACK).(*packet.Puback); ack.PacketID != id {
				inOrder = false
			}
		}
		pub.publish("end", "", 2, false)

		byTopic := map[string][]string{}
		for _, m := range s.waitFor(t, "end") {
			key := m.Topic
			if key == "o/3" {
				key = fmt.Sprintf("o/3 QoS %d", m.QoS)
			}
			byTopic[key] = append(byTopic[key], m.Payload)
		}
		acks := "acks: in order"
		if !inOrder {
			acks = "acks: out of order"
		}
		return []string{
			acks,
			"o/1: " + strings.Join(byTopic["o/1"], " "),
			"o/2: " + strings.Join(byTopic["o/2"], " "),
			"o/3 QoS 0: " + strings.Join(byTopic["o/3 QoS 0"], " "),
			"o/3 QoS 1: " + strings.Join(byTopic["o/3 QoS 1"], " "),
		}
	})
}

// TestDifferentialShared: a shared subscription "$share/group/filter" (MQTT
// 5.0's form, which mosquitto also takes from 3.1.1 clients) gives each
// message to one member of the group; a plain subscription to the same
// filter still gets every message; when a member leaves, the others get
// everything.
func TestDifferentialShared(t *testing.T) {
	topics := func(from, to int) string {
		var s []string
		for i := from; i <= to; i++ {
			s = append(s, fmt.Sprintf("sh/%d", i))
		}
		return strings.Join(s, " ")
	}
	want := []string{
		"plain: " + topics(1, 14),
		"group, merged: " + topics(1, 10),
		"both members served: true",
		"after M1 left, M2: " + topics(11, 14),
		"after M2 unsubscribed, M2: ",
	}
	differential(t, want, nil, func(t *testing.T, tg target) []string {
		connect := func(id string, pairs ...any) *rawClient {
			c := dialRaw(t, tg.addr, tg.name+"/"+id)
			c.mustConnect(&packet.Connect{ClientID: []byte(id), CleanSession: true}, false)
			if got := c.subscribe(pairs...); string(got) != string([]byte{1, 1}) {
				t.Fatalf("%s: SUBACK %v", id, got)
			}
			return c
		}
		m1 := connect("M1", "$share/g/sh/#", 1, "end", 1)
		m2 := connect("M2", "$share/g/sh/#", 1, "end", 1)
		plain := connect("N", "sh/#", 1, "end", 1)
		pub := dialRaw(t, tg.addr, tg.name+"/pub")
		pub.mustConnect(&packet.Connect{ClientID: []byte("pub"), CleanSession: true}, false)
		for i := 1; i <= 10; i++ {
			pub.publish(fmt.Sprintf("sh/%d", i), "", 1, false)
		}
		pub.publish("end", "", 1, false)
		got1 := m1.waitFor(t, "end")
		got2 := m2.waitFor(t, "end")
		// Merge the members' messages in publish order.
		seen := map[string]int{}
		for _, m := range append(got1, got2...) {
			if m.Topic != "end" {
				seen[m.Topic]++
			}
		}
		var merged []string
		for i := 1; i <= 10; i++ {
			topic := fmt.Sprintf("sh/%d", i)
			for range seen[topic] {
				merged = append(merged, topic)
			}
			delete(seen, topic)
		}
		for topic, n := range seen {
			for range n {
				merged = append(merged, topic) // not published: shows in the diff
			}
		}
		t.Logf("M1 got %d, M2 got %d of 10", len(got1)-1, len(got2)-1)
		rec := []string{"", "group, merged: " + strings.Join(merged, " "), fmt.Sprintf("both members served: %v", len(got1) > 1 && len(got2) > 1)}

		m1.disconnect()
		s2 := len(m2.received())
		for i := 11; i <= 14; i++ {
			pub.publish(fmt.Sprintf("sh/%d", i), "", 1, false)
		}
		m2.subscribe("end2", 1)
		pub.publish("end2", "", 1, false)
		var after []string
		for _, m := range m2.waitFor(t, "end2")[s2:] {
			if m.Topic != "end2" && m.Topic != "end" {
				after = append(after, m.Topic)
			}
		}
		plain.subscribe("end2", 1)
		pub.publish("end2", "", 1, false)
		var all []string
		for _, m := range plain.waitFor(t, "end2") {
			if strings.HasPrefix(m.Topic, "sh/") {
				all = append(all, m.Topic)
			}
		}
		rec[0] = "plain: " + strings.Join(all, " ")
		rec = append(rec, "after M1 left, M2: "+strings.Join(after, " "))

		// Unsubscribing from the shared filter leaves the group.
		m2.unsubscribe("$share/g/sh/#")
		s2 = len(m2.received())
		pub.publish("sh/15", "", 1, false)
		m2.subscribe("end3", 1)
		pub.publish("end3", "", 1, false)
		var last []string
		for _, m := range m2.waitFor(t, "end3")[s2:] {
			if m.Topic != "end3" {
				last = append(last, m.Topic)
			}
		}
		return append(rec, "after M2 unsubscribed, M2: "+strings.Join(last, " "))
	})
}
