package packet_test

import (
	"bytes"
	"testing"

	"github.com/ternmq/mqtt/packet"
)

// PUBLISH, section 3.3: fixed header 0x3 with DUP, QoS and RETAIN in the
// flags, then the topic name, the packet identifier if QoS > 0, and the
// payload, which runs to the end of the packet.
var publishGoldens = append([]golden{
	{"QoS 0", &packet.Publish{Topic: []byte("a/b"), Payload: []byte("hello")}, wire(
		0x30,       // PUBLISH, DUP 0, QoS 0, RETAIN 0
		0x0a,       // remaining length 10
		0x00, 0x03, // topic name length 3
		"a/b",   // topic name
		"hello", // payload; no packet identifier at QoS 0 [MQTT-2.3.1-5]
	)},
	{"QoS 0 empty payload", &packet.Publish{Topic: []byte("a"), Payload: []byte{}}, wire(
		0x30,       // PUBLISH, QoS 0
		0x03,       // remaining length 3
		0x00, 0x01, // topic name length 1
		"a", // topic name; the payload is empty
	)},
	{"QoS 1 retain", &packet.Publish{QoS: 1, Retain: true, PacketID: 10, Topic: []byte("a/b"), Payload: []byte{1, 2, 3}}, wire(
		0x33,       // PUBLISH, QoS 1 0x02, RETAIN 0x01
		0x0a,       // remaining length 10
		0x00, 0x03, // topic name length 3
		"a/b",      // topic name
		0x00, 0x0a, // packet identifier 10
		0x01, 0x02, 0x03, // payload
	)},
	{"QoS 1 empty payload", &packet.Publish{QoS: 1, PacketID: 1, Topic: []byte("a")}, wire(
		0x32,       // PUBLISH, QoS 1
		0x05,       // remaining length 5
		0x00, 0x01, // topic name length 1
		"a",        // topic name
		0x00, 0x01, // packet identifier 1
	)},
	{"QoS 2 DUP retain", &packet.Publish{Dup: true, QoS: 2, Retain: true, PacketID: 0xffff,
		Topic: []byte("\uFEFF/é"), Payload: []byte("x")}, wire(
		0x3d,       // PUBLISH, DUP 0x08, QoS 2 0x04, RETAIN 0x01
		0x0b,       // remaining length 11
		0x00, 0x06, // topic name length 6
		0xef, 0xbb, 0xbf, // U+FEFF, kept as it is [MQTT-1.5.3-3]
		"/",        // level separator
		0xc3, 0xa9, // é
		0xff, 0xff, // packet identifier 65535
		"x", // payload
	)},
}, publishLengthGoldens()...)

// publishLengthGoldens are QoS 0 PUBLISH packets to topic "t" whose payload
// sizes put the remaining length on each side of the boundaries where its
// field grows by a byte (section 2.2.3): the remaining length is 3 bytes
// of topic plus the payload.
func publishLengthGoldens() []golden {
	topic := []byte{
		0x00, 0x01, // topic name length 1
		't', // topic name
	}
	cases := []struct {
		name   string
		length []byte // the remaining length field, by hand
		n      int    // the remaining length it encodes
	}{
		{"remaining length 127, 1 byte", []byte{0x7f}, 127},
		{"remaining length 128, 2 bytes", []byte{0x80, 0x01}, 128},
		{"remaining length 16383, 2 bytes", []byte{0xff, 0x7f}, 16383},
		{"remaining length 16384, 3 bytes", []byte{0x80, 0x80, 0x01}, 16384},
		{"remaining length 2097151, 3 bytes", []byte{0xff, 0xff, 0x7f}, 2097151},
		{"remaining length 2097152, 4 bytes", []byte{0x80, 0x80, 0x80, 0x01}, 2097152},
	}
	var out []golden
	for _, c := range cases {
		payload := bytes.Repeat([]byte{'p'}, c.n-len(topic))
		out = append(out, golden{c.name, &packet.Publish{Topic: []byte("t"), Payload: payload},
			wire(0x30, c.length, topic, payload)})
	}
	return out
}

func TestPublishGolden(t *testing.T) { testGolden(t, publishGoldens) }

// TestPublishQoS0NoPacketID checks that the two bytes after the topic of a
// QoS 0 PUBLISH are payload, not a packet identifier [MQTT-2.3.1-5].
func TestPublishQoS0NoPacketID(t *testing.T) {
	var p packet.Publish
	p.PacketID = 9 // left from an earlier packet: Decode must clear it
	if err := p.Decode(wire(
		0x30,       // PUBLISH, QoS 0
		0x05,       // remaining length 5
		0x00, 0x01, // topic name length 1
		"a",        // topic name
		0x00, 0x07, // payload, which would be an identifier at QoS 1
	)); err != nil {
		t.Fatal(err)
	}
	if p.PacketID != 0 || !bytes.Equal(p.Payload, []byte{0x00, 0x07}) {
		t.Errorf("PacketID %d, Payload % x", p.PacketID, p.Payload)
	}
}

// TestPublishAliases checks the documented aliasing: decoded fields point
// into the input, and Clone copies them out.
func TestPublishAliases(t *testing.T) {
	buf := bytes.Clone(publishGoldens[0].wire)
	var p packet.Publish
	if err := p.Decode(buf); err != nil {
		t.Fatal(err)
	}
	c := p.Clone()
	buf[4], buf[7] = 'X', 'Y'
	if string(p.Topic) != "X/b" || string(p.Payload) != "Yello" {
		t.Errorf("decoded fields do not alias the input: %q %q", p.Topic, p.Payload)
	}
	if string(c.Topic) != "a/b" || string(c.Payload) != "hello" {
		t.Errorf("clone aliases the input: %q %q", c.Topic, c.Payload)
	}
	// Appending to a decoded field must not write over the next field.
	_ = append(p.Topic, 'Z')
	if buf[7] != 'Y' {
		t.Error("a decoded field has capacity over the next field")
	}
}

func TestPublishString(t *testing.T) {
	p := &packet.Publish{QoS: 1, PacketID: 5, Dup: true, Retain: true, Topic: []byte("a"), Payload: bytes.Repeat([]byte("x"), 40)}
	want := `PUBLISH topic="a" qos=1 id=5 dup retain payload=40B "` + string(bytes.Repeat([]byte("x"), 32)) + `"...`
	if s := p.String(); s != want {
		t.Errorf("String() = %q\nwant %q", s, want)
	}
}
