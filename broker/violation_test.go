package broker_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/ternmq/mqtt/broker"
	"github.com/ternmq/mqtt/packet"
)

// An MQTT 3.1 CONNECT (level 3, "MQIsdp") whose client identifier is not 1
// to 23 characters is answered with CONNACK 0x02, identifier rejected, as the
// 3.1 specification asks (section 3.1), then the connection is closed.
func TestConnect31IdentifierRejected(t *testing.T) {
	srv := newServer(t)
	for _, c := range []struct {
		name string
		wire []byte
	}{
		{"empty", []byte{
			0x10, 0x0e, // CONNECT, remaining length 14
			0x00, 0x06, 'M', 'Q', 'I', 's', 'd', 'p', // protocol name
			0x03,       // level 3
			0x02,       // CleanSession 1
			0x00, 0x3c, // keep alive 60
			0x00, 0x00, // client identifier of length 0
		}},
		{"24 characters", append([]byte{
			0x10, 0x26, // CONNECT, remaining length 38
			0x00, 0x06, 'M', 'Q', 'I', 's', 'd', 'p', // protocol name
			0x03,       // level 3
			0x02,       // CleanSession 1
			0x00, 0x3c, // keep alive 60
			0x00, 0x18, // client identifier of length 24
		}, "abcdefghijklmnopqrstuvwx"...)},
	} {
		s := dial(t, srv, c.name)
		s.sendRaw(c.wire)
		s.expect(&packet.Connack{ReturnCode: packet.RefusedIdentifierRejected})
		s.expectClose()
	}
	// 23 characters pass.
	s := dial(t, srv, "23")
	s.send(&packet.Connect{Level: packet.Level31, CleanSession: true, ClientID: []byte("abcdefghijklmnopqrstuvw")})
	s.expect(&packet.Connack{})
	if n := srv.Broker.Stats().Refused; n != 2 {
		t.Errorf("Stats().Refused = %d, want 2", n)
	}
}

// [MQTT-4.8.0-1] A protocol violation makes the broker close the connection
// it came on: no answer to the offending packet, the will published (the
// connection did not end with DISCONNECT), and the other clients served on.
func TestProtocolViolationCloses(t *testing.T) {
	for _, c := range []struct {
		name string
		wire []byte
	}{
		{"second CONNECT", mustEncode(&packet.Connect{ClientID: []byte("v"), CleanSession: true})}, // [MQTT-3.1.0-2]
		{"PUBLISH QoS 3", []byte{0x36, 0x05, 0x00, 0x01, 't', 0x00, 0x01}},                         // [MQTT-3.3.1-4]
		{"PUBLISH to a wildcard topic", []byte{0x30, 0x03, 0x00, 0x01, '#'}},                       // [MQTT-3.3.2-2]
		{"PUBREL with flags 0000", []byte{0x60, 0x02, 0x00, 0x01}},                                 // [MQTT-3.6.1-1]
		{"SUBSCRIBE with no filter", []byte{0x82, 0x02, 0x00, 0x01}},                               // [MQTT-3.8.3-3]
		{"SUBSCRIBE to an empty filter", rawFilters(0x82, 1, []byte{0}, "")},                       // [MQTT-4.7.3-1]
		{"UNSUBSCRIBE of a/#/b", rawFilters(0xa2, 1, nil, "a/#/b")},                                // [MQTT-4.7.1-2]
		{"CONNACK from a client", []byte{0x20, 0x02, 0x00, 0x00}},
		{"reserved type 15", []byte{0xf0, 0x00}},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv := newServer(t)
			w := connect(t, srv, "w", true, false)
			w.subscribe(1, "will/#", 0)
			v := dial(t, srv, "v")
			v.send(&packet.Connect{ClientID: []byte("v"), CleanSession: true, Will: true, WillTopic: []byte("will/v"), WillMessage: []byte("gone")})
			v.expect(&packet.Connack{})
			v.sendRaw(c.wire)
			v.expectClose()
			checkPublish(t, w.expectPublish(), "will/v", "gone", 0, false)
			w.sendRaw([]byte{0xc0, 0x00})
			w.expect(&packet.Pingresp{})
		})
	}
}

// [MQTT-4.8.0-2] A packet the broker cannot take (here, one over
// MaxPacketSize: the broker will not buffer it) closes the connection it
// came on, and that one only: its will is published, the other clients are
// served on.
func TestTransientErrorClosesThatConnection(t *testing.T) {
	srv := newServer(t, func(o *broker.Options) { o.MaxPacketSize = 1 << 10 })
	w := connect(t, srv, "w", true, false)
	w.subscribe(1, "#", 1)
	v := dial(t, srv, "v")
	v.send(&packet.Connect{ClientID: []byte("v"), CleanSession: true, Will: true, WillTopic: []byte("will/v"), WillMessage: []byte("gone")})
	v.expect(&packet.Connack{})
	v.sendRaw([]byte{0x30, 0x80, 0x80, 0x01}) // a header announcing 16 KiB
	v.expectClose()
	checkPublish(t, w.expectPublish(), "will/v", "gone", 0, false)
	o := connect(t, srv, "o", true, false)
	o.publish(pub("t", "still here", 1, 1))
	checkPublish(t, w.expectPublish(), "t", "still here", 1, false)
}

// The default packet limit lets a 1 MiB payload through, as common clients
// send them.
func TestDefaultPacketLimitOneMiB(t *testing.T) {
	srv := newServer(t)
	sub := connect(t, srv, "sub", true, false)
	sub.r = packet.NewReader(sub.c, 2<<20)
	sub.subscribe(1, "big", 1)
	payload := strings.Repeat("0123456789abcdef", 1<<16) // 1 MiB
	p := connect(t, srv, "pub", true, false)
	p.publish(pub("big", payload, 1, 1))
	got := sub.expectPublish()
	if string(got.Topic) != "big" || !bytes.Equal(got.Payload, []byte(payload)) {
		t.Fatalf("got topic %q, %d bytes of payload, want 1 MiB", got.Topic, len(got.Payload))
	}
}
