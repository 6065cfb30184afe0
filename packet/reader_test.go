package packet_test

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"

	"github.com/google/go-cmp/cmp"
	"github.com/ternmq/mqtt/packet"
)

// smallGoldens are the goldens that fit in a default Reader.
func smallGoldens() []golden {
	var out []golden
	for _, g := range allGoldens() {
		if len(g.wire) <= packet.DefaultMaxSize {
			out = append(out, g)
		}
	}
	return out
}

// TestReaderStream reads every golden packet from one stream, whole and
// one byte per read: the same packets in order, then io.EOF.
func TestReaderStream(t *testing.T) {
	gs := smallGoldens()
	var stream []byte
	for _, g := range gs {
		stream = append(stream, g.wire...)
	}
	for _, src := range []struct {
		name string
		r    io.Reader
	}{
		{"whole", bytes.NewReader(stream)},
		{"one byte per read", iotest.OneByteReader(bytes.NewReader(stream))},
		{"half reads", iotest.HalfReader(bytes.NewReader(stream))},
		{"data with EOF", iotest.DataErrReader(bytes.NewReader(stream))},
	} {
		t.Run(src.name, func(t *testing.T) {
			r := packet.NewReader(src.r, 0)
			for _, g := range gs {
				p, err := r.ReadPacket()
				if err != nil {
					t.Fatalf("%s: %v", g.name, err)
				}
				if diff := cmp.Diff(g.p, p, equate); diff != "" {
					t.Fatalf("%s (-want +got):\n%s", g.name, diff)
				}
			}
			if p, err := r.ReadPacket(); err != io.EOF {
				t.Errorf("after the last packet: %v, %v; want io.EOF", p, err)
			}
			if r.Buffered() != 0 {
				t.Errorf("Buffered() = %d at the end", r.Buffered())
			}
		})
	}
}

// TestReaderNext checks that Next returns each packet's bytes exactly,
// capped so that appending to them cannot touch the next packet.
func TestReaderNext(t *testing.T) {
	a, b := ackGoldens[0].wire, publishGoldens[0].wire
	r := packet.NewReader(bytes.NewReader(append(bytes.Clone(a), b...)), 0)
	got, err := r.Next()
	if err != nil || !bytes.Equal(got, a) || cap(got) != len(got) {
		t.Fatalf("Next = % x (cap %d), %v", got, cap(got), err)
	}
	if r.Buffered() != len(b) {
		t.Errorf("Buffered() = %d, want %d", r.Buffered(), len(b))
	}
	got, err = r.Next()
	if err != nil || !bytes.Equal(got, b) {
		t.Fatalf("Next = % x, %v", got, err)
	}
}

func TestReaderUnexpectedEOF(t *testing.T) {
	for _, g := range smallGoldens() {
		if len(g.wire) > 1<<12 {
			continue
		}
		for i := 1; i < len(g.wire); i++ {
			r := packet.NewReader(bytes.NewReader(g.wire[:i]), 0)
			if _, err := r.ReadPacket(); err != io.ErrUnexpectedEOF {
				t.Fatalf("%s cut to %d bytes: %v, want io.ErrUnexpectedEOF", g.name, i, err)
			}
		}
	}
}

// countingReader counts the bytes read from it and the largest read asked.
type countingReader struct {
	r       io.Reader
	n       int
	largest int
}

func (c *countingReader) Read(p []byte) (int, error) {
	c.largest = max(c.largest, len(p))
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// TestReaderTooLarge announces packets over the limit: the Reader refuses
// each as soon as its header is in, without growing its buffer for it.
func TestReaderTooLarge(t *testing.T) {
	for _, c := range []struct {
		limit  int
		header []byte
	}{
		{0, []byte{0x30, 0xff, 0xff, 0xff, 0x7f}},       // 256 MB, default limit 1 MiB
		{0, []byte{0x30, 0xfd, 0xff, 0x3f}},             // 1 + 3 + 1048573: 1 byte over 1 MiB
		{100, []byte{0x30, 0x63}},                       // 101 bytes, limit 100
		{1 << 20, []byte{0x82, 0x80, 0x80, 0x80, 0x01}}, // 256 MiB SUBSCRIBE
		{10, []byte{0xc0, 0x09}},                        // 11 bytes, limit 10
	} {
		src := &countingReader{r: io.MultiReader(bytes.NewReader(c.header), infiniteZeros{})}
		r := packet.NewReader(src, c.limit)
		_, err := r.Next()
		if !errors.Is(err, packet.ErrTooLarge) {
			t.Errorf("% x, limit %d: %v, want ErrTooLarge", c.header, c.limit, err)
		}
		if src.largest > 4096 {
			t.Errorf("% x: the Reader asked for %d bytes at once", c.header, src.largest)
		}
	}
	// At the limit exactly, the packet is read.
	p := wire(0x30, 0x06, 0x00, 0x01, "t", "abc") // 8 bytes
	r := packet.NewReader(bytes.NewReader(p), 8)
	if _, err := r.ReadPacket(); err != nil {
		t.Errorf("packet of the limit's size: %v", err)
	}
	if r.MaxSize() != 8 {
		t.Errorf("MaxSize() = %d", r.MaxSize())
	}
	if m := packet.NewReader(nil, 0).MaxSize(); m != packet.DefaultMaxSize {
		t.Errorf("MaxSize() = %d, want DefaultMaxSize", m)
	}
	if m := packet.NewReader(nil, packet.MaxSize+1).MaxSize(); m != packet.MaxSize {
		t.Errorf("MaxSize() = %d, want MaxSize", m)
	}
}

type infiniteZeros struct{}

func (infiniteZeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// TestReaderGrows reads a packet far larger than the first buffer, in
// small reads, then a small packet after it.
func TestReaderGrows(t *testing.T) {
	big := &packet.Publish{QoS: 1, PacketID: 1, Topic: []byte("big"), Payload: bytes.Repeat([]byte("0123456789"), 30000)}
	b, err := big.Append(nil)
	if err != nil {
		t.Fatal(err)
	}
	b = append(b, ackGoldens[0].wire...)
	src := &countingReader{r: iotest.HalfReader(bytes.NewReader(b))}
	r := packet.NewReader(src, 1<<20)
	p, err := r.ReadPacket()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(big, p, equate); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
	if p, err := r.ReadPacket(); err != nil || p.(*packet.Puback).PacketID != 1 {
		t.Fatalf("after the big packet: %v, %v", p, err)
	}
	if src.largest > 1<<20 {
		t.Errorf("buffer of %d bytes for a limit of 1 MiB", src.largest)
	}
}

// TestReaderBadHeader checks that header errors come from Next, before the
// body is read, as *packet.Error values; the connection ends there
// [MQTT-2.2.2-2].
func TestReaderBadHeader(t *testing.T) {
	for _, c := range []struct {
		head []byte
		rule string
	}{
		{[]byte{0x00, 0x00}, "2.2.1"},
		{[]byte{0xf0, 0x00}, "2.2.1"},
		{[]byte{0x41, 0x02}, "MQTT-2.2.2-1"},
		{[]byte{0x60, 0x02}, "MQTT-3.6.1-1"},
		{[]byte{0x36, 0x05}, "MQTT-3.3.1-4"},
		{[]byte{0x30, 0xff, 0xff, 0xff, 0xff}, "2.2.3"},
		{[]byte{0x30, 0x80, 0x00}, "2.2.3"},
	} {
		src := &countingReader{r: io.MultiReader(bytes.NewReader(c.head), infiniteZeros{})}
		r := packet.NewReader(iotest.OneByteReader(src), 0)
		_, err := r.ReadPacket()
		check(t, "ReadPacket", err, packet.ErrMalformed, c.rule)
		if src.n > len(c.head) {
			t.Errorf("% x: read %d bytes for a bad header", c.head, src.n)
		}
		// The error sticks.
		if _, err2 := r.Next(); err2 == nil || err2.Error() != err.Error() {
			t.Errorf("% x: second Next: %v", c.head, err2)
		}
	}
}

// TestReaderDecodeError checks that a body error leaves the stream usable:
// the bad packet's bytes are consumed and the next packet reads.
func TestReaderDecodeError(t *testing.T) {
	bad := publish(0x30, "a/+")
	r := packet.NewReader(bytes.NewReader(append(bad, emptyGoldens[0].wire...)), 0)
	if _, err := r.ReadPacket(); !errors.Is(err, packet.ErrProtocol) {
		t.Fatalf("ReadPacket: %v", err)
	}
	if p, err := r.ReadPacket(); err != nil || p.Type() != packet.PINGREQ {
		t.Fatalf("after a bad packet: %v, %v", p, err)
	}
}

// TestReaderReadError checks that packets read before a read error are
// returned, then the error; and that an endless run of empty reads ends.
func TestReaderReadError(t *testing.T) {
	boom := errors.New("boom")
	stream := append(bytes.Clone(ackGoldens[0].wire), 0x40) // a packet and a byte
	r := packet.NewReader(io.MultiReader(bytes.NewReader(stream), iotest.ErrReader(boom)), 0)
	if p, err := r.ReadPacket(); err != nil || p.Type() != packet.PUBACK {
		t.Fatalf("ReadPacket: %v, %v", p, err)
	}
	if _, err := r.ReadPacket(); err != boom {
		t.Fatalf("ReadPacket: %v, want boom", err)
	}
	if _, err := r.ReadPacket(); err != boom {
		t.Fatalf("ReadPacket again: %v, want boom", err)
	}
	r = packet.NewReader(emptyReader{}, 0)
	if _, err := r.ReadPacket(); err != io.ErrNoProgress {
		t.Fatalf("ReadPacket from empty reads: %v, want io.ErrNoProgress", err)
	}
}

type emptyReader struct{}

func (emptyReader) Read([]byte) (int, error) { return 0, nil }

// Reset drops what was buffered and the error that ended the last stream.
func TestReaderReset(t *testing.T) {
	r := packet.NewReader(bytes.NewReader([]byte{0xc0, 0x00, 0xd0}), 0) // PINGREQ, then a torn PINGRESP
	if _, err := r.Next(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Next(); err != io.ErrUnexpectedEOF {
		t.Fatalf("torn packet: err = %v, want io.ErrUnexpectedEOF", err)
	}
	r.Reset(bytes.NewReader([]byte{0xe0, 0x00}))
	if r.Buffered() != 0 {
		t.Fatalf("Buffered after Reset = %d, want 0", r.Buffered())
	}
	p, err := r.ReadPacket()
	if err != nil || p.Type() != packet.DISCONNECT {
		t.Fatalf("after Reset: %v, %v; want DISCONNECT", p, err)
	}
	if _, err := r.Next(); err != io.EOF {
		t.Fatalf("end of new stream: err = %v, want io.EOF", err)
	}
}

// chunkReader returns its chunks one per Read.
type chunkReader [][]byte

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(*c) == 0 {
		return 0, io.EOF
	}
	n := copy(p, (*c)[0])
	(*c)[0] = (*c)[0][n:]
	if len((*c)[0]) == 0 {
		*c = (*c)[1:]
	}
	return n, nil
}

func TestReaderHasPacket(t *testing.T) {
	puback := []byte{0x40, 0x02, 0x00, 0x01}
	publish := []byte{0x30, 0x06, 0x00, 0x01, 'a', 'x', 'y', 'z'}
	// A PUBACK split after its type byte, a PUBLISH split inside its topic,
	// then two PUBACKs in one read.
	src := chunkReader{
		puback[:1],
		append(append([]byte{}, puback[1:]...), publish[:3]...),
		publish[3:],
		append(append([]byte{}, puback...), puback...),
	}
	r := packet.NewReader(&src, packet.DefaultMaxSize)
	next := func(want []byte, has bool) {
		t.Helper()
		b, err := r.Next()
		if err != nil || !bytes.Equal(b, want) {
			t.Fatalf("Next = % x, %v; want % x", b, err, want)
		}
		if r.HasPacket() != has {
			t.Fatalf("after % x: HasPacket = %v, want %v (%d bytes buffered)", want, !has, has, r.Buffered())
		}
	}
	if r.HasPacket() {
		t.Fatal("HasPacket before any read")
	}
	next(puback, false)  // the PUBLISH's first 3 bytes are buffered
	next(publish, false) // nothing buffered
	next(puback, true)   // the second PUBACK is buffered whole
	next(puback, false)
}
