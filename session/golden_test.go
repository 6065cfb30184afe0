package session

import (
	"bytes"
	"testing"
	"time"

	"github.com/ternmq/mqtt/packet"
)

// The bytes AppendOutgoing writes, spelled out from the specification's
// packet layouts.

func appendAll(t *testing.T, s *Session) []byte {
	t.Helper()
	b, err := s.AppendOutgoing(nil, t0)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func golden(t *testing.T, what string, got []byte, want ...byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		t.Fatalf("%s:\n got  % x\n want % x", what, got, want)
	}
}

func TestGoldenServer(t *testing.T) {
	s, _ := New(Config{Role: Server})
	s.Accept(&packet.Connect{ClientID: []byte("c")}, false, t0)
	golden(t, "CONNACK", appendAll(t, s),
		0x20, 0x02, // CONNACK, remaining length 2
		0x00, // session present 0 [MQTT-3.2.2-3]
		0x00) // accepted
	s.Publish(&packet.Publish{QoS: 1, Topic: []byte("a/b"), Payload: []byte("hi")})
	s.Publish(&packet.Publish{QoS: 2, Topic: []byte("a/b"), Payload: []byte("hi")})
	s.Publish(&packet.Publish{QoS: 0, Retain: true, Topic: []byte("a/b"), Payload: []byte("hi")})
	golden(t, "PUBLISH QoS 1, 2, 0", appendAll(t, s),
		0x32, 0x09, 0x00, 0x03, 'a', '/', 'b', 0x00, 0x01, 'h', 'i', // QoS 1, DUP 0, id 1 [MQTT-4.3.2-1]
		0x34, 0x09, 0x00, 0x03, 'a', '/', 'b', 0x00, 0x02, 'h', 'i', // QoS 2, id 2 [MQTT-4.3.3-1]
		0x31, 0x07, 0x00, 0x03, 'a', '/', 'b', 'h', 'i') // QoS 0 retained: no id [MQTT-2.3.1-5]
	s.Receive(&packet.Pubrec{PacketID: 2}, t0)
	s.Receive(&packet.Pingreq{}, t0)
	s.Receive(&packet.Publish{QoS: 1, PacketID: 5, Topic: []byte("x")}, t0)
	s.Receive(&packet.Publish{QoS: 2, PacketID: 6, Topic: []byte("x")}, t0)
	s.Receive(&packet.Pubrel{PacketID: 6}, t0)
	s.Receive(&packet.Unsubscribe{PacketID: 7, Filters: [][]byte{[]byte("x")}}, t0)
	s.Unsuback(7)
	s.Receive(&packet.Subscribe{PacketID: 8, Subscriptions: []packet.Subscription{{Filter: []byte("x"), QoS: 2}}}, t0)
	s.Suback(8, []byte{2})
	golden(t, "answers", appendAll(t, s),
		0x62, 0x02, 0x00, 0x02, // PUBREL, flags 0010 [MQTT-3.6.1-1], id 2
		0xd0, 0x00, // PINGRESP [MQTT-3.12.4-1]
		0x40, 0x02, 0x00, 0x05, // PUBACK 5
		0x50, 0x02, 0x00, 0x06, // PUBREC 6
		0x70, 0x02, 0x00, 0x06, // PUBCOMP 6
		0xb0, 0x02, 0x00, 0x07, // UNSUBACK 7
		0x90, 0x03, 0x00, 0x08, 0x02) // SUBACK 8, granted QoS 2
	s.Disconnected()
	s.Accept(&packet.Connect{ClientID: []byte("c")}, true, t0)
	golden(t, "resumed", appendAll(t, s),
		0x20, 0x02, 0x01, 0x00, // session present 1 [MQTT-3.2.2-2]
		0x3a, 0x09, 0x00, 0x03, 'a', '/', 'b', 0x00, 0x01, 'h', 'i', // DUP 1, same id [MQTT-3.3.1-1] [MQTT-4.4.0-1]
		0x62, 0x02, 0x00, 0x02) // PUBREL again
}

func TestGoldenClient(t *testing.T) {
	s, _ := New(Config{Role: Client})
	s.Connect(&packet.Connect{ClientID: []byte("c"), CleanSession: true, KeepAlive: 60}, t0)
	golden(t, "CONNECT", appendAll(t, s),
		0x10, 0x0d, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, // CONNECT, "MQTT", level 4
		0x02,       // clean session
		0x00, 0x3c, // keepalive 60 s
		0x00, 0x01, 'c')
	s.Receive(&packet.Connack{}, t0)
	s.Subscribe(&packet.Subscribe{Subscriptions: []packet.Subscription{{Filter: []byte("a/+"), QoS: 1}}})
	s.Unsubscribe(&packet.Unsubscribe{Filters: [][]byte{[]byte("a/+")}})
	s.Disconnect()
	golden(t, "requests", appendAll(t, s),
		0x82, 0x08, 0x00, 0x01, 0x00, 0x03, 'a', '/', '+', 0x01, // SUBSCRIBE, flags 0010, id 1
		0xa2, 0x07, 0x00, 0x02, 0x00, 0x03, 'a', '/', '+', // UNSUBSCRIBE, flags 0010, id 2
		0xe0, 0x00) // DISCONNECT
	s2, _ := New(Config{Role: Client})
	s2.Connect(&packet.Connect{ClientID: []byte("c"), KeepAlive: 1}, t0)
	s2.AppendOutgoing(nil, t0)
	s2.Receive(&packet.Connack{}, t0)
	s2.Tick(t0.Add(time.Second))
	golden(t, "PINGREQ", appendAll(t, s2), 0xc0, 0x00)
}
