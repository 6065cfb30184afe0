package fuzz_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/ternmq/mqtt/packet"
)

// seedPackets are the packets of the golden tests of package packet, one or
// more of each type, built from their fields so that the seeds follow any
// change of the encoder.
func seedPackets() []packet.Packet {
	return []packet.Packet{
		&packet.Connect{Level: packet.Level311, CleanSession: true, KeepAlive: 60, ClientID: []byte("tern")},
		&packet.Connect{Level: packet.Level311, CleanSession: true, ClientID: []byte{}},
		&packet.Connect{Level: packet.Level31, KeepAlive: 10, ClientID: []byte("dev1")},
		&packet.Connect{Level: packet.Level311, KeepAlive: 30, ClientID: []byte("c"),
			Will: true, WillQoS: 1, WillRetain: true, WillTopic: []byte("w/t"), WillMessage: []byte("bye"),
			HasUsername: true, Username: []byte("u"), HasPassword: true, Password: []byte{}},
		&packet.Connect{Level: packet.Level311, ClientID: []byte("c"), HasUsername: true, Username: []byte{}},
		&packet.Connack{SessionPresent: true},
		&packet.Connack{ReturnCode: packet.RefusedNotAuthorized},
		&packet.Publish{Topic: []byte("a/b"), Payload: []byte("hello")},
		&packet.Publish{Topic: []byte("a"), Payload: []byte{}},
		&packet.Publish{QoS: 1, PacketID: 10, Topic: []byte("a/b"), Payload: []byte{1, 2, 3}},
		&packet.Publish{Dup: true, QoS: 2, Retain: true, PacketID: 0xffff, Topic: []byte("\uFEFF/é"), Payload: []byte("x")},
		&packet.Publish{Topic: []byte("t"), Payload: make([]byte, 200)},
		&packet.Puback{PacketID: 1},
		&packet.Pubrec{PacketID: 0x1234},
		&packet.Pubrel{PacketID: 0xffff},
		&packet.Pubcomp{PacketID: 7},
		&packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: []byte("a/+"), QoS: 1}}},
		&packet.Subscribe{PacketID: 2, Subscriptions: []packet.Subscription{{Filter: []byte("#")}, {Filter: []byte("$SYS/x"), QoS: 2}}},
		&packet.Suback{PacketID: 1, ReturnCodes: []byte{0, 1, 2, packet.SubackFailure}},
		&packet.Unsubscribe{PacketID: 3, Filters: [][]byte{[]byte("a/+"), []byte("b/#")}},
		&packet.Unsuback{PacketID: 3},
		&packet.Pingreq{},
		&packet.Pingresp{},
		&packet.Disconnect{},
	}
}

func seedBytes(tb testing.TB) [][]byte {
	var out [][]byte
	for _, p := range seedPackets() {
		b, err := p.Append(nil)
		if err != nil {
			tb.Fatalf("seed %v: %v", p, err)
		}
		out = append(out, b)
	}
	return out
}

// reused holds one value of each type that every decode goes through, so
// that a field left over from an earlier packet shows up as a difference.
var reused = map[packet.Type]packet.Packet{}

// FuzzDecode checks that Decode never panics, that every failure is an
// *packet.Error, and that whatever decodes encodes to the same bytes, with
// Size equal to their length, and decodes again to an equal value.
func FuzzDecode(f *testing.F) {
	for _, b := range seedBytes(f) {
		f.Add(b)
		f.Add(b[:len(b)-1])
	}
	f.Add([]byte{0x30, 0x80, 0x00})                   // non-minimal remaining length
	f.Add([]byte{0x30, 0xff, 0xff, 0xff, 0xff, 0x01}) // five length bytes
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := packet.Decode(b)
		if err != nil {
			var pe *packet.Error
			if !errors.As(err, &pe) {
				t.Fatalf("error %v is not a *packet.Error", err)
			}
			switch pe.Kind {
			case packet.ErrMalformed, packet.ErrProtocol, packet.ErrTooLarge, packet.ErrUnsupportedVersion, packet.ErrIdentifierRejected:
			default:
				t.Fatalf("error %v has kind %v", err, pe.Kind)
			}
			if pe.Rule == "" || pe.Reason == "" {
				t.Fatalf("error %v lacks a rule or a reason", err)
			}
			if p != nil {
				t.Fatalf("Decode returned %v with error %v", p, err)
			}
			return
		}
		if p.Size() != len(b) {
			t.Fatalf("%v: Size %d, decoded from %d bytes", p, p.Size(), len(b))
		}
		prefix := []byte("prefix")
		out, err := p.Append(prefix)
		if err != nil {
			t.Fatalf("%v decodes but does not encode: %v", p, err)
		}
		if !bytes.Equal(out[len(prefix):], b) || !bytes.Equal(out[:len(prefix)], []byte("prefix")) {
			t.Fatalf("%v: encodes to\n%x\nnot\n%x", p, out, b)
		}
		q := reused[p.Type()]
		if q == nil {
			q = packet.New(p.Type())
			reused[p.Type()] = q
		}
		if err := q.Decode(out[len(prefix):]); err != nil {
			t.Fatalf("re-decode of %v: %v", p, err)
		}
		if diff := cmp.Diff(p, q); diff != "" {
			t.Fatalf("decode into a used value differs (-fresh +used):\n%s", diff)
		}
		if c := clone(p); c != nil {
			if diff := cmp.Diff(p, c); diff != "" {
				t.Fatalf("Clone differs (-original +clone):\n%s", diff)
			}
		}
		_ = p.String()
	})
}

func clone(p packet.Packet) packet.Packet {
	switch p := p.(type) {
	case *packet.Connect:
		return p.Clone()
	case *packet.Publish:
		return p.Clone()
	case *packet.Subscribe:
		return p.Clone()
	case *packet.Suback:
		return p.Clone()
	case *packet.Unsubscribe:
		return p.Clone()
	}
	return nil
}

// chunkReader returns a stream in reads whose sizes come from cuts, in a
// cycle; a cut of 0 is a read of no bytes. It records the largest buffer
// it was asked to fill, which is the size of the Reader's buffer.
type chunkReader struct {
	data    []byte
	cuts    []byte
	i       int
	zeros   int
	largest int
	reads   int
}

func (r *chunkReader) Read(p []byte) (int, error) {
	r.reads++
	r.largest = max(r.largest, len(p))
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := len(r.data)
	if len(r.cuts) > 0 {
		n = int(r.cuts[r.i%len(r.cuts)])
		r.i++
		if n == 0 {
			r.zeros++
			if r.zeros < 50 { // under the Reader's patience for empty reads
				return 0, nil
			}
			n = 1
		}
		r.zeros = 0
	}
	n = copy(p, r.data[:min(n, len(r.data))])
	r.data = r.data[n:]
	return n, nil
}

type result struct {
	raw []byte
	err string
}

// readAll reads packets with Next until an error.
func readAll(r *packet.Reader) []result {
	var out []result
	for {
		b, err := r.Next()
		if err != nil {
			return append(out, result{err: err.Error()})
		}
		out = append(out, result{raw: bytes.Clone(b)})
	}
}

// readChunked is readAll on chunked reads, checking before every packet that
// HasPacket tells whether Next can return it without reading.
func readChunked(t *testing.T, r *packet.Reader, src *chunkReader) []result {
	var out []result
	for {
		has, reads := r.HasPacket(), src.reads
		b, err := r.Next()
		switch {
		case has && src.reads != reads:
			t.Fatalf("HasPacket was true, then Next read %d times", src.reads-reads)
		case !has && err == nil && src.reads == reads:
			t.Fatalf("HasPacket was false, then Next returned % x without reading", b)
		}
		if err != nil {
			return append(out, result{err: err.Error()})
		}
		out = append(out, result{raw: bytes.Clone(b)})
	}
}

// FuzzReader checks that a Reader finds the same packets and the same
// error whether the stream arrives at once or in chunks of any size, that
// the packets are the stream cut at the lengths their headers give, that
// no packet exceeds the limit, that the buffer never grows past
// max(4096, limit), that HasPacket is right, and that ReadPacket decodes as
// Decode does.
func FuzzReader(f *testing.F) {
	seeds := seedBytes(f)
	all := bytes.Join(seeds, nil)
	f.Add(all, []byte{}, uint16(0))
	f.Add(all, []byte{1}, uint16(0))
	f.Add(all, []byte{3, 0, 7, 1, 200}, uint16(64))
	f.Add(all, []byte{2, 5}, uint16(10))
	for _, s := range seeds {
		f.Add(append(bytes.Clone(s), s...), []byte{1, 0, 2}, uint16(len(s)))
	}
	f.Add([]byte{0x30, 0xff, 0xff, 0xff, 0x7f}, []byte{1}, uint16(100)) // 256 MB announced
	f.Fuzz(func(t *testing.T, stream, cuts []byte, limit uint16) {
		oneShot := packet.NewReader(bytes.NewReader(stream), int(limit))
		want := readAll(oneShot)
		src := &chunkReader{data: stream, cuts: cuts}
		chunked := packet.NewReader(src, int(limit))
		got := readChunked(t, chunked, src)
		if diff := cmp.Diff(want, got, cmp.AllowUnexported(result{})); diff != "" {
			t.Fatalf("chunked reads differ from one read (-one +chunked):\n%s", diff)
		}
		limitSize := chunked.MaxSize()
		if src.largest > 4096 && src.largest > limitSize {
			t.Fatalf("buffer of %d bytes, limit %d", src.largest, limitSize)
		}
		// The buffer grows with the bytes that arrived, not with the
		// lengths announced.
		if size := chunked.Size(); size > 4096 && size > 2*len(stream) {
			t.Fatalf("buffer of %d bytes after %d bytes of stream", size, len(stream))
		}
		rest := stream
		for _, r := range want {
			if r.raw == nil {
				break
			}
			if len(r.raw) > limitSize {
				t.Fatalf("packet of %d bytes, limit %d", len(r.raw), limitSize)
			}
			if !bytes.HasPrefix(rest, r.raw) {
				t.Fatalf("packet %x is not the next bytes of the stream", r.raw)
			}
			n, used := 0, 0
			for shift := 0; ; shift += 7 {
				c := r.raw[1+used]
				used++
				n |= int(c&0x7f) << shift
				if c < 0x80 {
					break
				}
			}
			if 1+used+n != len(r.raw) {
				t.Fatalf("packet %x is not as long as its header says", r.raw)
			}
			rest = rest[len(r.raw):]
		}
		if last := want[len(want)-1].err; last == io.EOF.Error() && len(rest) != 0 {
			t.Fatalf("EOF with %d bytes left", len(rest))
		} else if last == io.ErrUnexpectedEOF.Error() && len(rest) == 0 {
			t.Fatalf("unexpected EOF with no bytes left")
		}

		// ReadPacket on chunks gives what Decode gives on each packet.
		pr := packet.NewReader(&chunkReader{data: stream, cuts: cuts}, int(limit))
		for _, r := range want {
			p, err := pr.ReadPacket()
			if r.raw == nil {
				if err == nil || err.Error() != r.err {
					t.Fatalf("ReadPacket at the end: %v, %v; Next: %s", p, err, r.err)
				}
				break
			}
			wp, werr := packet.Decode(r.raw)
			if (err == nil) != (werr == nil) || err != nil && err.Error() != werr.Error() {
				t.Fatalf("ReadPacket error %v, Decode error %v", err, werr)
			}
			if err != nil {
				if p == nil || p.Type() != packet.Type(r.raw[0]>>4) {
					t.Fatalf("ReadPacket returned %v with its error", p)
				}
				break
			}
			if diff := cmp.Diff(wp, p); diff != "" {
				t.Fatalf("ReadPacket differs from Decode (-Decode +ReadPacket):\n%s", diff)
			}
		}
	})
}

// FuzzEncode builds packets of every type from fuzzed fields and checks
// the other direction: whatever Append accepts, Decode accepts and gives
// back, and Size is the length Append wrote; whatever it refuses, it
// refuses with an *packet.Error and leaves dst alone.
func FuzzEncode(f *testing.F) {
	f.Add(uint8(packet.CONNECT), uint8(0xc6), uint16(60), []byte("client"), []byte("will/topic"), []byte("will"), []byte("user"))
	f.Add(uint8(packet.CONNECT), uint8(0x00), uint16(0), []byte{}, []byte{}, []byte{}, []byte{})
	f.Add(uint8(packet.CONNACK), uint8(1), uint16(0), []byte{}, []byte{}, []byte{}, []byte{})
	f.Add(uint8(packet.PUBLISH), uint8(0x0b), uint16(7), []byte("a/b"), []byte("payload"), []byte{}, []byte{})
	f.Add(uint8(packet.PUBLISH), uint8(0x00), uint16(0), []byte("a/+"), []byte{}, []byte{}, []byte{})
	f.Add(uint8(packet.PUBREL), uint8(0), uint16(1), []byte{}, []byte{}, []byte{}, []byte{})
	f.Add(uint8(packet.SUBSCRIBE), uint8(2), uint16(1), []byte("a/#"), []byte("\x00"), []byte("é"), []byte{})
	f.Add(uint8(packet.SUBACK), uint8(0), uint16(1), []byte{0, 1, 2, 0x80}, []byte{}, []byte{}, []byte{})
	f.Add(uint8(packet.UNSUBSCRIBE), uint8(0), uint16(1), []byte("x"), []byte("y"), []byte{}, []byte{})
	f.Add(uint8(packet.PINGREQ), uint8(0), uint16(0), []byte{}, []byte{}, []byte{}, []byte{})
	f.Add(uint8(packet.PUBLISH), uint8(0x02), uint16(9), []byte("big"), make([]byte, 5000), []byte{}, []byte{})
	f.Add(uint8(packet.CONNECT), uint8(0x06), uint16(0), []byte("c"), []byte("t"), make([]byte, 5000), []byte{})
	f.Fuzz(func(t *testing.T, ty, flags uint8, n uint16, a, b, c, d []byte) {
		var p packet.Packet
		switch packet.Type(ty % 16) {
		case packet.CONNECT:
			p = &packet.Connect{Level: 3 + flags&1, CleanSession: flags&2 != 0, KeepAlive: n, ClientID: a,
				Will: flags&4 != 0, WillQoS: flags >> 3 & 3, WillRetain: flags&0x20 != 0, WillTopic: b, WillMessage: c,
				HasUsername: flags&0x80 != 0, Username: d, HasPassword: flags&0x40 != 0, Password: a}
		case packet.CONNACK:
			p = &packet.Connack{SessionPresent: flags&0x80 != 0, ReturnCode: packet.ReturnCode(flags & 0x7f)}
		case packet.PUBLISH:
			p = &packet.Publish{Dup: flags&8 != 0, QoS: flags >> 1 & 3, Retain: flags&1 != 0, PacketID: n, Topic: a, Payload: b}
		case packet.PUBACK:
			p = &packet.Puback{PacketID: n}
		case packet.PUBREC:
			p = &packet.Pubrec{PacketID: n}
		case packet.PUBREL:
			p = &packet.Pubrel{PacketID: n}
		case packet.PUBCOMP:
			p = &packet.Pubcomp{PacketID: n}
		case packet.SUBSCRIBE:
			s := &packet.Subscribe{PacketID: n}
			for i, f := range [][]byte{a, b, c, d}[:flags%5] {
				s.Subscriptions = append(s.Subscriptions, packet.Subscription{Filter: f, QoS: flags >> (i + 3) & 3})
			}
			p = s
		case packet.SUBACK:
			p = &packet.Suback{PacketID: n, ReturnCodes: a}
		case packet.UNSUBSCRIBE:
			p = &packet.Unsubscribe{PacketID: n, Filters: [][]byte{a, b, c, d}[:flags%5]}
		case packet.UNSUBACK:
			p = &packet.Unsuback{PacketID: n}
		case packet.PINGREQ:
			p = &packet.Pingreq{}
		case packet.PINGRESP:
			p = &packet.Pingresp{}
		case packet.DISCONNECT:
			p = &packet.Disconnect{}
		default:
			return
		}
		dst := []byte("dst")
		out, err := p.Append(dst)
		// Into a dst with room to spare, the encoders that write in one
		// pass take another way to the same bytes or error.
		roomy := append(make([]byte, 0, 3+p.Size()+8), "dst"...)
		if out2, err2 := p.Append(roomy); !bytes.Equal(out2, out) || fmt.Sprint(err2) != fmt.Sprint(err) {
			t.Fatalf("Append(%v) with room gives % x, %v; without, % x, %v", p, out2, err2, out, err)
		}
		if err != nil {
			var pe *packet.Error
			if !errors.As(err, &pe) || pe.Rule == "" {
				t.Fatalf("Append(%v): %v is not an *packet.Error with a rule", p, err)
			}
			if string(out) != "dst" {
				t.Fatalf("Append(%v) failed and changed dst to %q", p, out)
			}
			return
		}
		wire := out[3:]
		if len(wire) != p.Size() {
			t.Fatalf("%v: Size %d, Append wrote %d bytes", p, p.Size(), len(wire))
		}
		q, err := packet.Decode(wire)
		if err != nil {
			t.Fatalf("%v encodes to % x, which does not decode: %v", p, wire, err)
		}
		if diff := cmp.Diff(p, q, cmp.Comparer(bytes.Equal)); diff != "" {
			t.Fatalf("decoded packet differs (-encoded +decoded):\n%s", diff)
		}

		// A Writer sends the same bytes, whatever was buffered before.
		var stream bytes.Buffer
		w := packet.NewWriter(&stream)
		for _, x := range []packet.Packet{p, &packet.Pingreq{}, p, p} {
			if err := w.WritePacket(x); err != nil {
				t.Fatalf("WritePacket(%v): %v", x, err)
			}
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		want := bytes.Join([][]byte{wire, {0xc0, 0x00}, wire, wire}, nil)
		if !bytes.Equal(stream.Bytes(), want) {
			t.Fatalf("Writer wrote\n% x\nwant\n% x", stream.Bytes(), want)
		}
	})
}
