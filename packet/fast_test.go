package packet_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/ternmq/mqtt/packet"
)

// TestStringScanEncode is TestStringScan for the encoders, whose fast
// paths check topic names and filters as they copy them: every kind of
// problem byte at every position of strings of 1 to 40 bytes, in a PUBLISH
// topic, and in the first and in a later filter of a SUBSCRIBE. A refused
// packet leaves dst as it was; an accepted one decodes to the same fields.
func TestStringScanEncode(t *testing.T) {
	reference := func(s string, name bool) string {
		switch {
		case !utf8.ValidString(s):
			return "MQTT-1.5.3-1"
		case strings.IndexByte(s, 0) >= 0:
			return "MQTT-1.5.3-2"
		case name && strings.ContainsAny(s, "+#"):
			return "MQTT-3.3.2-2"
		case !name && strings.Contains(s, "#"):
			// The strings are one level: '#' passes only alone.
			if s != "#" {
				return "MQTT-4.7.1-2"
			}
		case !name && strings.Contains(s, "+") && s != "+":
			return "MQTT-4.7.1-3"
		}
		return ""
	}
	// Bad bytes, and good ones on either side of copyName's range (0x2c..0x7f).
	inserts := []string{"\x00", "+", "#", "\x80", "\xff", "\x7f", "\x01", "é", "\xed\xa0\x80", "\uFEFF", "€+", "é\x00",
		"$", " ", "*", ",", "/", "\x2d"}
	dst := make([]byte, 3, 256)
	copy(dst, "dst")
	check := func(p packet.Packet, s string, want string) {
		t.Helper()
		out, err := p.Append(dst)
		var pe *packet.Error
		switch {
		case want == "" && err != nil:
			t.Fatalf("%v (%q): %v", p, s, err)
		case want != "" && (!errors.As(err, &pe) || pe.Rule != want):
			t.Fatalf("%v (%q): %v, want rule %s", p, s, err, want)
		case err != nil && string(out) != "dst":
			t.Fatalf("%v (%q) failed and changed dst to %q", p, s, out)
		case err == nil:
			if len(out) != 3+p.Size() || string(out[:3]) != "dst" {
				t.Fatalf("%v (%q): Append gave % x, Size %d", p, s, out, p.Size())
			}
			q, err := packet.Decode(out[3:])
			if err != nil {
				t.Fatalf("%v (%q) encodes to % x, which does not decode: %v", p, s, out[3:], err)
			}
			if got, want := q.String(), p.String(); got != want {
				t.Fatalf("%q: decodes to %s, want %s", s, got, want)
			}
		}
	}
	for n := 1; n <= 40; n++ {
		for i := 0; i < n; i++ {
			for _, ins := range inserts {
				s := strings.Repeat("a", i) + ins + strings.Repeat("b", n-i-1)
				b := []byte(s)
				check(&packet.Publish{QoS: 1, PacketID: 9, Topic: b, Payload: []byte("pay")}, s, reference(s, true))
				check(&packet.Subscribe{PacketID: 9, Subscriptions: []packet.Subscription{{Filter: b, QoS: 1}}}, s, reference(s, false))
				check(&packet.Subscribe{PacketID: 9, Subscriptions: []packet.Subscription{
					{Filter: []byte("a/very/long/plain/filter/+/#")}, {Filter: b, QoS: 2}}}, s, reference(s, false))
				check(&packet.Unsubscribe{PacketID: 9, Filters: [][]byte{b}}, s, reference(s, false))
				check(&packet.Unsubscribe{PacketID: 9, Filters: [][]byte{[]byte("a/very/long/plain/filter/+/#"), b}}, s, reference(s, false))
			}
		}
	}
}

// TestEncodeRejectsAfterFastPath covers the checks that the encoders' fast
// paths hand back to the full validation.
func TestEncodeRejectsAfterFastPath(t *testing.T) {
	long := bytes.Repeat([]byte("a"), 65536)
	for _, c := range []struct {
		p    packet.Packet
		rule string
	}{
		{&packet.Publish{QoS: 3, PacketID: 1, Topic: []byte("a/b")}, "MQTT-3.3.1-4"},
		{&packet.Publish{Dup: true, Topic: []byte("a/b")}, "MQTT-3.3.1-2"},
		{&packet.Publish{PacketID: 5, Topic: []byte("a/b")}, "MQTT-2.3.1-5"},
		{&packet.Publish{QoS: 2, Topic: []byte("a/b")}, "MQTT-2.3.1-1"},
		{&packet.Publish{Topic: []byte{}}, "MQTT-4.7.3-1"},
		{&packet.Publish{Topic: long}, "MQTT-4.7.3-3"},
		{&packet.Subscribe{Subscriptions: []packet.Subscription{{Filter: []byte("a")}}}, "MQTT-2.3.1-1"},
		{&packet.Subscribe{PacketID: 1}, "MQTT-3.8.3-3"},
		{&packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: []byte("a/b/c/d/e/f/g"), QoS: 3}}}, "MQTT-3.8.3-4"},
		{&packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: []byte("a")}, {Filter: long}}}, "MQTT-4.7.3-3"},
		{&packet.Unsubscribe{Filters: [][]byte{[]byte("a")}}, "MQTT-2.3.1-1"},
		{&packet.Unsubscribe{PacketID: 1}, "MQTT-3.10.3-2"},
		{&packet.Unsubscribe{PacketID: 1, Filters: [][]byte{[]byte("a"), long}}, "MQTT-4.7.3-3"},
		{&packet.Unsubscribe{PacketID: 1, Filters: [][]byte{[]byte("a/very/long/#/filter")}}, "MQTT-4.7.1-2"},
		{&packet.Unsubscribe{PacketID: 1, Filters: [][]byte{[]byte("a/very/long+/filter")}}, "MQTT-4.7.1-3"},
		{&packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: []byte("a/very/long/#/filter")}}}, "MQTT-4.7.1-2"},
		{&packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: []byte("a/very/long+/filter")}}}, "MQTT-4.7.1-3"},
	} {
		out, err := c.p.Append([]byte("dst"))
		var pe *packet.Error
		if !errors.As(err, &pe) || pe.Rule != c.rule {
			t.Errorf("%v: %v, want rule %s", c.p, err, c.rule)
		}
		if string(out) != "dst" {
			t.Errorf("%v failed and changed dst to %q", c.p, out)
		}
	}
}
