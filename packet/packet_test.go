package packet_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/ternmq/mqtt/packet"
)

// wire assembles golden bytes from bytes (int), strings and byte slices, so
// that each field of a packet can be written on its own line with a comment.
func wire(parts ...any) []byte {
	var b []byte
	for _, p := range parts {
		switch p := p.(type) {
		case int:
			if p < 0 || p > 255 {
				panic(fmt.Sprintf("wire: %d is not a byte", p))
			}
			b = append(b, byte(p))
		case string:
			b = append(b, p...)
		case []byte:
			b = append(b, p...)
		default:
			panic(fmt.Sprintf("wire: %T", p))
		}
	}
	return b
}

// golden is a packet and its wire form, written by hand from the spec.
type golden struct {
	name string
	p    packet.Packet
	wire []byte
}

// equate compares byte fields with bytes.Equal: nil and empty alike, since
// an empty field decodes as an empty slice of the input while a literal may
// say nil, and fast on the large payloads.
var equate = cmp.Comparer(bytes.Equal)

// testGolden checks both directions for each case: the struct encodes to
// the golden bytes, and the golden bytes decode to the struct, through the
// type's Decode, through Decode and through a Reader.
func testGolden(t *testing.T, cases []golden) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if n := c.p.Size(); n != len(c.wire) {
				t.Errorf("Size() = %d, want %d", n, len(c.wire))
			}
			got, err := c.p.Append(nil)
			if err != nil {
				t.Fatalf("Append: %v", err)
			}
			if !bytes.Equal(got, c.wire) {
				t.Errorf("Append:\n got % x\nwant % x", head(got), head(c.wire))
			}
			// Appending keeps what dst held.
			got, err = c.p.Append([]byte{0xaa})
			if err != nil || got[0] != 0xaa || !bytes.Equal(got[1:], c.wire) {
				t.Errorf("Append after a byte: % x, %v", head(got), err)
			}

			q := packet.New(c.p.Type())
			if err := q.Decode(c.wire); err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if diff := cmp.Diff(c.p, q, equate); diff != "" {
				t.Errorf("Decode (-want +got):\n%s", diff)
			}
			d, err := packet.Decode(c.wire)
			if err != nil {
				t.Fatalf("packet.Decode: %v", err)
			}
			if diff := cmp.Diff(c.p, d, equate); diff != "" {
				t.Errorf("packet.Decode (-want +got):\n%s", diff)
			}
			r := packet.NewReader(bytes.NewReader(c.wire), packet.MaxSize)
			rp, err := r.ReadPacket()
			if err != nil {
				t.Fatalf("ReadPacket: %v", err)
			}
			if diff := cmp.Diff(c.p, rp, equate); diff != "" {
				t.Errorf("ReadPacket (-want +got):\n%s", diff)
			}
			if _, err := r.ReadPacket(); err != io.EOF {
				t.Errorf("ReadPacket after the packet: %v, want io.EOF", err)
			}
			if s := q.String(); s == "" {
				t.Error("String() is empty")
			}
		})
	}
}

// head shortens long byte slices in messages.
func head(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}

// allGoldens is every golden case of every type, for the tests that go
// through all of them.
func allGoldens() []golden {
	var all []golden
	for _, g := range [][]golden{connectGoldens, connackGoldens, publishGoldens, ackGoldens,
		subscribeGoldens, subackGoldens, unsubscribeGoldens, emptyGoldens} {
		all = append(all, g...)
	}
	return all
}

// TestTruncated cuts every golden packet at every length: each cut fails
// with ErrMalformed and no cut panics. It then shortens each body with the
// remaining length rewritten to match, which cuts fields in the middle: the
// result either fails with an *Error or is a valid, shorter packet that
// re-encodes to the same bytes (a shorter payload, one filter fewer).
func TestTruncated(t *testing.T) {
	for _, g := range allGoldens() {
		if len(g.wire) > 1<<16 {
			continue // the large PUBLISH cases add nothing here but time
		}
		for i := range len(g.wire) {
			q := packet.New(g.p.Type())
			if err := q.Decode(g.wire[:i]); !errors.Is(err, packet.ErrMalformed) {
				t.Errorf("%s cut to %d bytes: %v, want ErrMalformed", g.name, i, err)
			}
			if _, err := packet.Decode(g.wire[:i]); !errors.Is(err, packet.ErrMalformed) {
				t.Errorf("%s cut to %d bytes: packet.Decode: %v, want ErrMalformed", g.name, i, err)
			}
		}
		_, body := splitHeader(g.wire)
		for i := range len(body) {
			b := append([]byte{g.wire[0]}, remainingLength(i)...)
			b = append(b, body[:i]...)
			p, err := packet.Decode(b)
			if err != nil {
				var pe *packet.Error
				if !errors.As(err, &pe) || pe.Rule == "" {
					t.Errorf("%s with a body of %d bytes: %v, want an *Error with a rule", g.name, i, err)
				}
				continue
			}
			out, err := p.Append(nil)
			if err != nil || !bytes.Equal(out, b) {
				t.Errorf("%s with a body of %d bytes decodes to %v, which encodes to % x, %v", g.name, i, p, out, err)
			}
		}
	}
}

// TestTrailing adds a byte after every golden packet, keeping and then
// raising the remaining length: both fail with ErrMalformed.
func TestTrailing(t *testing.T) {
	for _, g := range allGoldens() {
		if len(g.wire) > 1<<16 {
			continue
		}
		b := append(bytes.Clone(g.wire), 0)
		if err := packet.New(g.p.Type()).Decode(b); !errors.Is(err, packet.ErrMalformed) {
			t.Errorf("%s and a byte after it: %v, want ErrMalformed", g.name, err)
		}
		_, body := splitHeader(g.wire)
		longer := append([]byte{g.wire[0]}, remainingLength(len(body)+1)...)
		longer = append(append(longer, body...), 0)
		if p, err := packet.Decode(longer); err == nil {
			// PUBLISH and SUBACK take any number of bytes at their end.
			switch g.p.Type() {
			case packet.PUBLISH, packet.SUBACK:
			default:
				t.Errorf("%s with a byte more in its body decodes to %v", g.name, p)
			}
		} else if !errors.Is(err, packet.ErrMalformed) && !errors.Is(err, packet.ErrProtocol) {
			t.Errorf("%s with a byte more in its body: %v", g.name, err)
		}
	}
}

// splitHeader returns the fixed header and the body of a packet.
func splitHeader(b []byte) (header, body []byte) {
	i := 1
	for b[i]&0x80 != 0 {
		i++
	}
	return b[:i+1], b[i+1:]
}

// remainingLength encodes n by the algorithm of section 2.2.3, written
// again here so that tests do not trust the code they test.
func remainingLength(n int) []byte {
	var b []byte
	for {
		c := byte(n % 128)
		n /= 128
		if n > 0 {
			c |= 128
		}
		b = append(b, c)
		if n == 0 {
			return b
		}
	}
}

// TestRemainingLength checks the four lengths of the length field at their
// boundaries (section 2.2.3, Table 2.4) with PUBLISH packets whose payload
// makes the remaining length exactly the boundary value; the goldens of
// publish_test.go check the bytes of each.
func TestRemainingLength(t *testing.T) {
	cases := []struct {
		n    int
		wire []byte
	}{
		{0, []byte{0x00}},
		{127, []byte{0x7f}},
		{128, []byte{0x80, 0x01}},
		{16383, []byte{0xff, 0x7f}},
		{16384, []byte{0x80, 0x80, 0x01}},
		{2097151, []byte{0xff, 0xff, 0x7f}},
		{2097152, []byte{0x80, 0x80, 0x80, 0x01}},
		{268435455, []byte{0xff, 0xff, 0xff, 0x7f}},
	}
	for _, c := range cases {
		if got := remainingLength(c.n); !bytes.Equal(got, c.wire) {
			t.Errorf("remainingLength(%d) = % x, want % x", c.n, got, c.wire)
		}
		// A Reader whose limit is the packet's size accepts the header
		// and waits for the body, which is not there; one with a limit a
		// byte lower refuses the header.
		size := 1 + len(c.wire) + c.n
		if size > 1<<22 {
			continue // not worth the memory
		}
		hdr := append([]byte{0x30}, c.wire...)
		r := packet.NewReader(bytes.NewReader(hdr), size)
		_, err := r.Next()
		if c.n == 0 {
			if err != nil { // Next does not decode the body
				t.Errorf("length %d: %v", c.n, err)
			}
		} else if err != io.ErrUnexpectedEOF {
			t.Errorf("length %d: %v, want io.ErrUnexpectedEOF", c.n, err)
		}
		r = packet.NewReader(bytes.NewReader(hdr), size-1)
		if _, err := r.Next(); !errors.Is(err, packet.ErrTooLarge) {
			t.Errorf("length %d, limit %d: %v, want ErrTooLarge", c.n, size-1, err)
		}
	}
}

func TestNew(t *testing.T) {
	for ty := packet.Type(0); ty < 16; ty++ {
		p := packet.New(ty)
		if ty == 0 || ty == 15 {
			if p != nil {
				t.Errorf("New(%d) = %T, want nil", ty, p)
			}
			continue
		}
		if p == nil || p.Type() != ty {
			t.Errorf("New(%v) = %T", ty, p)
		}
		if ty.String() == "" || ty.String()[0] == 'R' {
			t.Errorf("Type(%d).String() = %q", ty, ty.String())
		}
	}
	if s := packet.Type(0).String(); s != "RESERVED(0)" {
		t.Errorf("Type(0).String() = %q", s)
	}
	if s := packet.Type(16).String(); s != "INVALID" {
		t.Errorf("Type(16).String() = %q", s)
	}
}

func TestErrorString(t *testing.T) {
	_, err := packet.Decode([]byte{0x36, 0x03, 0x00, 0x01, 'a'})
	want := "packet: PUBLISH: malformed packet: QoS 3 [MQTT-3.3.1-4]"
	if err == nil || err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
	// An Error built by hand with no Kind still prints.
	e := &packet.Error{Rule: "2.2.3", Reason: "test"}
	if e.Error() != "packet: test [2.2.3]" {
		t.Errorf("error %q", e.Error())
	}
}
