package packet_test

import (
	"bytes"
	"testing"

	"github.com/ternmq/mqtt/packet"
)

// SUBSCRIBE, section 3.8: fixed header 0x82 [MQTT-3.8.1-1], a packet
// identifier, then pairs of topic filter and requested QoS.
var subscribeGoldens = []golden{
	{"one filter", &packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: []byte("a/+"), QoS: 1}}}, wire(
		0x82,       // SUBSCRIBE, flags 0010
		0x08,       // remaining length 8
		0x00, 0x01, // packet identifier 1
		0x00, 0x03, // topic filter length 3
		"a/+", // topic filter
		0x01,  // requested QoS 1
	)},
	{"two filters", &packet.Subscribe{PacketID: 2, Subscriptions: []packet.Subscription{
		{Filter: []byte("#"), QoS: 0}, {Filter: []byte("$SYS/x"), QoS: 2}}}, wire(
		0x82,       // SUBSCRIBE, flags 0010
		0x0f,       // remaining length 15
		0x00, 0x02, // packet identifier 2
		0x00, 0x01, // topic filter length 1
		"#",        // topic filter
		0x00,       // requested QoS 0
		0x00, 0x06, // topic filter length 6
		"$SYS/x", // topic filter
		0x02,     // requested QoS 2
	)},
}

// SUBACK, section 3.9: a packet identifier and one return code per filter.
var subackGoldens = []golden{
	{"four codes", &packet.Suback{PacketID: 1, ReturnCodes: []byte{0, 1, 2, packet.SubackFailure}}, wire(
		0x90,       // SUBACK, flags 0000
		0x06,       // remaining length 6
		0x00, 0x01, // packet identifier 1
		0x00, // granted QoS 0
		0x01, // granted QoS 1
		0x02, // granted QoS 2
		0x80, // failure
	)},
	{"one code", &packet.Suback{PacketID: 0xabcd, ReturnCodes: []byte{1}}, wire(
		0x90,       // SUBACK
		0x03,       // remaining length 3
		0xab, 0xcd, // packet identifier 43981
		0x01, // granted QoS 1
	)},
}

// UNSUBSCRIBE, section 3.10: fixed header 0xa2 [MQTT-3.10.1-1], a packet
// identifier, then topic filters.
var unsubscribeGoldens = []golden{
	{"two filters", &packet.Unsubscribe{PacketID: 3, Filters: [][]byte{[]byte("a/+"), []byte("b/#")}}, wire(
		0xa2,       // UNSUBSCRIBE, flags 0010
		0x0c,       // remaining length 12
		0x00, 0x03, // packet identifier 3
		0x00, 0x03, // topic filter length 3
		"a/+",      // topic filter
		0x00, 0x03, // topic filter length 3
		"b/#", // topic filter
	)},
	{"one filter", &packet.Unsubscribe{PacketID: 4, Filters: [][]byte{[]byte("x")}}, wire(
		0xa2,       // UNSUBSCRIBE
		0x05,       // remaining length 5
		0x00, 0x04, // packet identifier 4
		0x00, 0x01, // topic filter length 1
		"x", // topic filter
	)},
}

func TestSubscribeGolden(t *testing.T)   { testGolden(t, subscribeGoldens) }
func TestSubackGolden(t *testing.T)      { testGolden(t, subackGoldens) }
func TestUnsubscribeGolden(t *testing.T) { testGolden(t, unsubscribeGoldens) }

// TestSubscribeReuse decodes a long SUBSCRIBE and then a short one into one
// value: the second holds its own filters only.
func TestSubscribeReuse(t *testing.T) {
	var p packet.Subscribe
	if err := p.Decode(subscribeGoldens[1].wire); err != nil {
		t.Fatal(err)
	}
	if err := p.Decode(subscribeGoldens[0].wire); err != nil {
		t.Fatal(err)
	}
	if len(p.Subscriptions) != 1 || string(p.Subscriptions[0].Filter) != "a/+" {
		t.Errorf("after reuse: %v", p.String())
	}
	var u packet.Unsubscribe
	if err := u.Decode(unsubscribeGoldens[0].wire); err != nil {
		t.Fatal(err)
	}
	if err := u.Decode(unsubscribeGoldens[1].wire); err != nil {
		t.Fatal(err)
	}
	if len(u.Filters) != 1 || string(u.Filters[0]) != "x" {
		t.Errorf("after reuse: %v", u.String())
	}
}

func TestSubscribeClone(t *testing.T) {
	buf := bytes.Clone(subscribeGoldens[1].wire)
	var p packet.Subscribe
	if err := p.Decode(buf); err != nil {
		t.Fatal(err)
	}
	s := p.Clone()
	var u packet.Unsubscribe
	ubuf := bytes.Clone(unsubscribeGoldens[0].wire)
	if err := u.Decode(ubuf); err != nil {
		t.Fatal(err)
	}
	uc := u.Clone()
	var a packet.Suback
	abuf := bytes.Clone(subackGoldens[0].wire)
	if err := a.Decode(abuf); err != nil {
		t.Fatal(err)
	}
	ac := a.Clone()
	for _, b := range [][]byte{buf, ubuf, abuf} {
		for i := range b {
			b[i] = 0
		}
	}
	if s.String() != `SUBSCRIBE id=2 "#":0 "$SYS/x":2` {
		t.Errorf("Subscribe clone: %s", s)
	}
	if uc.String() != `UNSUBSCRIBE id=3 "a/+" "b/#"` {
		t.Errorf("Unsubscribe clone: %s", uc)
	}
	if ac.String() != "SUBACK id=1 codes=0,1,2,failure" {
		t.Errorf("Suback clone: %s", ac)
	}
}

// TestSubscribeAppendRoom covers the one-pass encoders of SUBSCRIBE and
// UNSUBSCRIBE, which write the filters before they know the remaining
// length: around each length where it takes one more byte (127 and 128,
// 16383 and 16384), into a dst with exactly the room, one byte less (it
// must grow), the room of a one-byte length only, and none. The wire is
// built here from section 2.2.3 (the length in 7-bit groups, low first,
// with the high bit set on all but the last) and sections 3.8 and 3.10.
func TestSubscribeAppendRoom(t *testing.T) {
	remaining := func(n int) []byte {
		var b []byte
		for ; n >= 128; n >>= 7 {
			b = append(b, byte(n)|0x80)
		}
		return append(b, byte(n))
	}
	for _, n := range []int{127, 128, 16383, 16384} {
		// A packet identifier, then one filter of n-5 bytes (SUBSCRIBE:
		// its length and QoS) or n-4 (UNSUBSCRIBE: its length).
		sub := &packet.Subscribe{PacketID: 0x1234, Subscriptions: []packet.Subscription{{Filter: bytes.Repeat([]byte("a/"), n)[:n-5], QoS: 2}}}
		unsub := &packet.Unsubscribe{PacketID: 0x1234, Filters: [][]byte{bytes.Repeat([]byte("b/"), n)[:n-4]}}
		subWire := append(append([]byte{0x82}, remaining(n)...), 0x12, 0x34, byte((n-5)>>8), byte(n-5))
		subWire = append(append(subWire, sub.Subscriptions[0].Filter...), 2)
		unsubWire := append(append([]byte{0xa2}, remaining(n)...), 0x12, 0x34, byte((n-4)>>8), byte(n-4))
		unsubWire = append(unsubWire, unsub.Filters[0]...)
		for _, c := range []struct {
			p    packet.Packet
			wire []byte
		}{{sub, subWire}, {unsub, unsubWire}} {
			for _, room := range []int{len(c.wire), len(c.wire) - 1, 2 + n, 0} {
				dst := append(make([]byte, 0, 3+room), "dst"...)
				out, err := c.p.Append(dst)
				if err != nil {
					t.Fatalf("%v, remaining length %d, room %d: %v", c.p.Type(), n, room, err)
				}
				if string(out[:3]) != "dst" || !bytes.Equal(out[3:], c.wire) {
					t.Fatalf("%v, remaining length %d, room %d:\n got % x\nwant % x", c.p.Type(), n, room, out[3:min(len(out), 12)], c.wire[:12])
				}
				if len(out) != len(dst)+c.p.Size() {
					t.Fatalf("%v, remaining length %d: appended %d bytes, Size %d", c.p.Type(), n, len(out)-len(dst), c.p.Size())
				}
			}
			buf := make([]byte, 0, len(c.wire))
			if allocs := testing.AllocsPerRun(10, func() { c.p.Append(buf) }); allocs != 0 {
				t.Errorf("%v, remaining length %d: Append with room allocates %.1f times", c.p.Type(), n, allocs)
			}
		}
	}
}
