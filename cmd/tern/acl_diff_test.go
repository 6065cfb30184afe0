package main

import (
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/ternmq/mqtt/internal/mosquitto"
	"github.com/ternmq/mqtt/packet"
)

// The ACL file of TestACLDifferential, given to tern broker -acl and to
// mosquitto's acl_file alike.
const diffACL = `# no rules for clients without a user name (both brokers refuse them)
user reader
topic read #
topic deny a/denied

user writer
topic write #
topic deny ro/#

user dev
topic read common/#

pattern read dev/%c/#
pattern readwrite users/%u/#
pattern deny secret/%u
`

var diffUsers = map[string]string{"reader": "r-pass", "writer": "w-pass", "dev": "d-pass"}

// mqttClient is a bare MQTT client for the differential tests: packets in
// and out with the packet package, nothing hidden.
type mqttClient struct {
	t    *testing.T
	name string
	c    net.Conn
	r    *packet.Reader
	id   uint16

	pending []*packet.Publish // received while waiting for a SUBACK
}

func dialMQTT(t *testing.T, addr, id, user, pass string) *mqttClient {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	m := &mqttClient{t: t, name: id, c: c, r: packet.NewReader(c, 0)}
	cp := &packet.Connect{ClientID: []byte(id), CleanSession: true, KeepAlive: 60}
	if user != "" {
		cp.HasUsername, cp.Username, cp.HasPassword, cp.Password = true, []byte(user), true, []byte(pass)
	}
	m.send(cp)
	if ack, ok := m.recv().(*packet.Connack); !ok || ack.ReturnCode != packet.Accepted {
		t.Fatalf("%s: CONNECT refused: %v", id, ack)
	}
	return m
}

func (m *mqttClient) send(p packet.Packet) {
	m.t.Helper()
	b, err := p.Append(nil)
	if err != nil {
		m.t.Fatal(err)
	}
	m.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := m.c.Write(b); err != nil {
		m.t.Fatalf("%s: write: %v", m.name, err)
	}
}

func (m *mqttClient) recv() packet.Packet {
	m.t.Helper()
	m.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	p, err := m.r.ReadPacket()
	if err != nil {
		m.t.Fatalf("%s: read: %v", m.name, err)
	}
	if pub, ok := p.(*packet.Publish); ok {
		return pub.Clone()
	}
	return p
}

// subscribe returns the SUBACK's codes; retained messages that arrive
// with the SUBACK are left for messagesUntil.
func (m *mqttClient) subscribe(filters ...string) []byte {
	m.t.Helper()
	m.id++
	sp := &packet.Subscribe{PacketID: m.id}
	for _, f := range filters {
		sp.Subscriptions = append(sp.Subscriptions, packet.Subscription{Filter: []byte(f), QoS: 1})
	}
	m.send(sp)
	var held []*packet.Publish
	for {
		switch p := m.recv().(type) {
		case *packet.Suback:
			m.pending = append(m.pending, held...)
			return p.ReturnCodes
		case *packet.Publish:
			held = append(held, p)
		default:
			m.t.Fatalf("%s: got %v, want SUBACK", m.name, p)
		}
	}
}

// publish sends a PUBLISH at QoS 1 or 2 and completes its flow: a denied
// one is acknowledged all the same [MQTT-3.3.5-2].
func (m *mqttClient) publish(topic, payload string, qos byte, retain bool) {
	m.t.Helper()
	m.id++
	m.send(&packet.Publish{Topic: []byte(topic), Payload: []byte(payload), QoS: qos, Retain: retain, PacketID: m.id})
	switch qos {
	case 1:
		if p, ok := m.recv().(*packet.Puback); !ok || p.PacketID != m.id {
			m.t.Fatalf("%s: got %v, want PUBACK %d for %s", m.name, p, m.id, topic)
		}
	case 2:
		if p, ok := m.recv().(*packet.Pubrec); !ok || p.PacketID != m.id {
			m.t.Fatalf("%s: got %v, want PUBREC %d for %s", m.name, p, m.id, topic)
		}
		m.send(&packet.Pubrel{PacketID: m.id})
		if p, ok := m.recv().(*packet.Pubcomp); !ok || p.PacketID != m.id {
			m.t.Fatalf("%s: got %v, want PUBCOMP %d for %s", m.name, p, m.id, topic)
		}
	}
}

// messagesUntil acknowledges and records the messages received up to the
// one on topic end (excluded), as "topic payload [retained]", sorted.
func (m *mqttClient) messagesUntil(end string) []string {
	m.t.Helper()
	var got []string
	for {
		var p *packet.Publish
		if len(m.pending) > 0 {
			p, m.pending = m.pending[0], m.pending[1:]
		} else {
			pk := m.recv()
			var ok bool
			if p, ok = pk.(*packet.Publish); !ok {
				m.t.Fatalf("%s: got %v, want PUBLISH", m.name, pk)
			}
		}
		if p.QoS == 1 {
			m.send(&packet.Puback{PacketID: p.PacketID})
		}
		if string(p.Topic) == end {
			slices.Sort(got)
			return got
		}
		line := fmt.Sprintf("%s %s q%d", p.Topic, p.Payload, p.QoS)
		if p.Retain {
			line += " retained"
		}
		got = append(got, line)
	}
}

// aclScenario runs the differential scenario against the broker at addr
// and returns what each subscriber got, and the SUBACK codes.
func aclScenario(t *testing.T, addr string) map[string][]string {
	w := dialMQTT(t, addr, "w", "writer", "w-pass")
	for _, topic := range []string{"a/b", "a/denied", "/x", "c", "dev/d1/r", "users/dev/r", "common/r", "ro/r"} {
		w.publish(topic, "r", 1, true) // ro/r: denied, so not retained
	}
	rec := map[string][]string{}
	r := dialMQTT(t, addr, "r1", "reader", "r-pass")
	rec["r1 suback"] = codes(r.subscribe("#", "+/+", "/#"))
	d := dialMQTT(t, addr, "d1", "dev", "d-pass")
	rec["d1 suback"] = codes(d.subscribe("#"))
	// A wildcard in the client id turns the patterns off [mosquitto].
	x := dialMQTT(t, addr, "d+x", "dev", "d-pass")
	rec["d+x suback"] = codes(x.subscribe("#"))
	// Filters no topic of which may be read: mosquitto grants them and
	// delivers nothing, tern refuses them.
	rec["r1 suback denied"] = codes(r.subscribe("a/denied"))
	rec["d1 suback denied"] = codes(d.subscribe("secret/#", "dev/d2/#"))

	for _, topic := range []string{"a/b", "a/denied", "/x", "c", "a/b/c", "dev/d1/t", "dev/d2/t", "users/dev/t", "users/other/t", "common/t", "ro/x", "secret/reader", "secret/dev"} {
		w.publish(topic, "live", 1, false)
	}
	w.publish("ro/y", "live", 2, false) // PUBREC, PUBREL, PUBCOMP, and dropped
	w.publish("common/end", "", 1, false)
	for _, c := range []*mqttClient{r, d, x} {
		rec[c.name] = c.messagesUntil("common/end")
	}
	return rec
}

func codes(b []byte) []string {
	var s []string
	for _, c := range b {
		s = append(s, fmt.Sprintf("%#x", c))
	}
	return s
}

// TestACLDifferential runs the same scenario through tern broker -acl and
// mosquitto, with the same ACL and password files: a subscriber granted
// "#", "+/+" and "/#" with one topic denied gets every message and every
// retained message but those of the denied topic; denied publishes are
// acknowledged and dropped; pattern rules with %c and %u. The deliveries
// must be the same; the SUBACK codes differ where tern refuses a filter
// none of whose topics may be read.
func TestACLDifferential(t *testing.T) {
	mq := mosquitto.Start(t, mosquitto.Config{
		Users: diffUsers,
		Files: map[string]string{"acl": diffACL},
		Extra: []string{"acl_file $DIR/acl"},
	})
	passwd, acl := filepath.Join(mq.Dir, "passwd"), filepath.Join(mq.Dir, "acl")
	ternURL := startBroker(t, []string{"-passwd", passwd, "-acl", acl}, "mqtt://127.0.0.1:0")[0]

	want := map[string][]string{
		"r1": {
			"/x live q1", "/x r q1 retained", "/x r q1 retained", "/x r q1 retained", // # +/+ /#
			"a/b live q1", "a/b r q1 retained", "a/b r q1 retained", // # +/+
			"a/b/c live q1",
			"c live q1", "c r q1 retained",
			"common/r r q1 retained", "common/r r q1 retained", "common/t live q1", // # +/+
			"dev/d1/r r q1 retained", "dev/d1/t live q1", "dev/d2/t live q1",
			"secret/dev live q1", "secret/reader live q1", // the user's rules come before the pattern deny
			"users/dev/r r q1 retained", "users/dev/t live q1", "users/other/t live q1",
		},
		"d1": {
			"common/r r q1 retained", "common/t live q1",
			"dev/d1/r r q1 retained", "dev/d1/t live q1", // %c
			"users/dev/r r q1 retained", "users/dev/t live q1", // %u
		},
		"d+x":        {"common/r r q1 retained", "common/t live q1"}, // the user's rules only
		"r1 suback":  {"0x1", "0x1", "0x1"},
		"d1 suback":  {"0x1"},
		"d+x suback": {"0x1"},
	}
	ternWant := merged(want, map[string][]string{"r1 suback denied": {"0x80"}, "d1 suback denied": {"0x80", "0x80"}})
	mosqWant := merged(want, map[string][]string{"r1 suback denied": {"0x1"}, "d1 suback denied": {"0x1", "0x1"}})

	got := map[string]map[string][]string{}
	for _, b := range []struct {
		name, addr string
		want       map[string][]string
	}{
		{"mosquitto", mq.Addr, mosqWant},
		{"tern", strings.TrimPrefix(ternURL, "mqtt://"), ternWant},
	} {
		t.Run(b.name, func(t *testing.T) {
			got[b.name] = aclScenario(t, b.addr)
			if diff := cmp.Diff(b.want, got[b.name]); diff != "" {
				t.Errorf("%s (-want +got):\n%s", b.name, diff)
			}
		})
	}
	if len(got) == 2 {
		for k := range want {
			if !strings.Contains(k, "suback") && !slices.Equal(got["tern"][k], got["mosquitto"][k]) {
				t.Errorf("%s: tern delivered %q, mosquitto %q", k, got["tern"][k], got["mosquitto"][k])
			}
		}
	}
}

func merged(a, b map[string][]string) map[string][]string {
	m := map[string][]string{}
	for k, v := range a {
		m[k] = v
	}
	for k, v := range b {
		m[k] = v
	}
	return m
}
