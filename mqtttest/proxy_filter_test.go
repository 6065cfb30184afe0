package mqtttest

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/ternmq/mqtt/packet"
)

func TestActions(t *testing.T) {
	tests := []struct {
		a    Action
		want string
	}{
		{Forward, "forward"},
		{Action{}, "forward"},
		{Drop, "drop"},
		{Cut, "cut"},
		{CutAfter, "cut after"},
		{Delay(time.Second), "delay 1s"},
		{Delay(0), "forward"},
		{Delay(-time.Second), "forward"},
		{Tear(3), "tear after 3 bytes"},
		{Tear(0), "cut"},
		{Tear(-1), "cut"},
	}
	for _, tt := range tests {
		if got := tt.a.String(); got != tt.want {
			t.Errorf("%#v.String() = %q, want %q", tt.a, got, tt.want)
		}
	}
	if Delay(time.Second) != Delay(time.Second) || Delay(time.Second) == Delay(2*time.Second) {
		t.Error("Delay actions do not compare by their duration")
	}
}

func TestDirectionString(t *testing.T) {
	for d, want := range map[Direction]string{
		ClientToServer: "client->server",
		ServerToClient: "server->client",
		Both:           "both",
		0:              "Direction(0)",
	} {
		if got := d.String(); got != want {
			t.Errorf("Direction(%d).String() = %q, want %q", d, got, want)
		}
	}
}

func TestFrameString(t *testing.T) {
	f := Frame{Conn: 2, Dir: ServerToClient, Index: 3, Type: packet.PUBACK, Bytes: []byte{0x40, 2, 0, 1}}
	if got, want := f.String(), "conn 2 server->client #3 PUBACK (4 bytes)"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

// frames returns the frames of a conversation on connection conn: types
// going in dir, each of size bytes.
func frames(conn int, dir Direction, size int, types ...packet.Type) []Frame {
	var fs []Frame
	for i, typ := range types {
		fs = append(fs, Frame{Conn: conn, Dir: dir, Index: i, Offset: int64(i * size), Type: typ, Bytes: make([]byte, size)})
	}
	return fs
}

// actions returns what f does with each frame.
func actions(f Filter, fs []Frame) []Action {
	var as []Action
	for _, fr := range fs {
		as = append(as, f(fr))
	}
	return as
}

func TestFilters(t *testing.T) {
	up := frames(0, ClientToServer, 4, packet.CONNECT, packet.PUBLISH, packet.PUBLISH, packet.PINGREQ)
	down := frames(0, ServerToClient, 4, packet.CONNACK, packet.PUBACK, packet.PUBACK, packet.PINGRESP)
	other := frames(1, ClientToServer, 4, packet.CONNECT, packet.PUBLISH, packet.PUBLISH, packet.PINGREQ)
	fw, d1 := Forward, Delay(time.Second)

	tests := []struct {
		name          string
		f             Filter
		up, down, oth []Action
	}{
		{"At up", At(ClientToServer, 1, Cut),
			[]Action{fw, Cut, fw, fw}, []Action{fw, fw, fw, fw}, []Action{fw, Cut, fw, fw}},
		{"At both", At(Both, 0, Drop),
			[]Action{Drop, fw, fw, fw}, []Action{Drop, fw, fw, fw}, []Action{Drop, fw, fw, fw}},
		{"At past the end", At(ServerToClient, 9, Drop),
			[]Action{fw, fw, fw, fw}, []Action{fw, fw, fw, fw}, []Action{fw, fw, fw, fw}},
		{"OnType", OnType(ClientToServer, packet.PUBLISH, d1),
			[]Action{fw, d1, d1, fw}, []Action{fw, fw, fw, fw}, []Action{fw, d1, d1, fw}},
		{"OnType other way", OnType(ServerToClient, packet.PUBLISH, Drop),
			[]Action{fw, fw, fw, fw}, []Action{fw, fw, fw, fw}, []Action{fw, fw, fw, fw}},
		{"TearAt mid-packet", TearAt(ServerToClient, 6),
			[]Action{fw, fw, fw, fw}, []Action{fw, Tear(2), Tear(0), Tear(0)}, []Action{fw, fw, fw, fw}},
		{"TearAt boundary", TearAt(ClientToServer, 8),
			[]Action{fw, fw, Cut, Cut}, []Action{fw, fw, fw, fw}, []Action{fw, fw, Cut, Cut}},
		{"TearAt 0", TearAt(ClientToServer, 0),
			[]Action{Cut, Cut, Cut, Cut}, []Action{fw, fw, fw, fw}, []Action{Cut, Cut, Cut, Cut}},
		{"OnConn", OnConn(0, At(Both, 2, CutAfter)),
			[]Action{fw, fw, CutAfter, fw}, []Action{fw, fw, CutAfter, fw}, []Action{fw, fw, fw, fw}},
		{"OnConn other", OnConn(1, OnType(Both, packet.CONNECT, Drop)),
			[]Action{fw, fw, fw, fw}, []Action{fw, fw, fw, fw}, []Action{Drop, fw, fw, fw}},
		{"Chain first wins", Chain(nil, OnType(Both, packet.PUBLISH, Drop), At(ClientToServer, 1, Cut), At(Both, 3, d1)),
			[]Action{fw, Drop, Drop, d1}, []Action{fw, fw, fw, d1}, []Action{fw, Drop, Drop, d1}},
		{"Chain empty", Chain(),
			[]Action{fw, fw, fw, fw}, []Action{fw, fw, fw, fw}, []Action{fw, fw, fw, fw}},
	}
	for _, tt := range tests {
		for _, c := range []struct {
			fs   []Frame
			want []Action
		}{{up, tt.up}, {down, tt.down}, {other, tt.oth}} {
			got := actions(tt.f, c.fs)
			for i := range got {
				if got[i] != c.want[i] {
					t.Errorf("%s: %v: %v, want %v", tt.name, c.fs[i], got[i], c.want[i])
				}
			}
		}
	}
}

func TestFramer(t *testing.T) {
	var stream []byte
	var want [][]byte
	for _, p := range []packet.Packet{
		&packet.Connect{CleanSession: true, ClientID: []byte("x")},
		&packet.Publish{Topic: []byte("t"), Payload: bytes.Repeat([]byte("p"), 300)}, // two length bytes
		&packet.Pingreq{},
	} {
		b, err := p.Append(nil)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, b)
		stream = append(stream, b...)
	}
	// Malformed but frameable: framed by length, passed on as they are.
	for _, b := range [][]byte{{0x00, 0x00}, {0xf6, 0x01, 0x00}, {0xc0, 0x80, 0x00}} {
		want = append(want, b)
		stream = append(stream, b...)
	}
	readers := map[string]io.Reader{
		"whole":    bytes.NewReader(stream),
		"one byte": iotest.OneByteReader(bytes.NewReader(stream)),
		"half":     iotest.HalfReader(bytes.NewReader(stream)),
	}
	for name, r := range readers {
		fr := framer{r: bufio.NewReaderSize(r, 16)}
		for i, w := range want {
			b, err := fr.next()
			if err != nil || !bytes.Equal(b, w) {
				t.Errorf("%s: packet %d: %x, %v; want %x", name, i, b, err, w)
			}
		}
		if b, err := fr.next(); err != io.EOF || b != nil {
			t.Errorf("%s: at the end: %x, %v; want io.EOF", name, b, err)
		}
	}
}

func TestFramerErrors(t *testing.T) {
	errRead := errors.New("read failed")
	tests := []struct {
		name    string
		in      io.Reader
		wantB   []byte
		wantErr error
	}{
		{"empty", strings.NewReader(""), nil, io.EOF},
		{"torn in the length", strings.NewReader("\x30\x80"), []byte{0x30, 0x80}, io.ErrUnexpectedEOF},
		{"torn after the type", strings.NewReader("\x30"), []byte{0x30}, io.ErrUnexpectedEOF},
		{"torn in the body", strings.NewReader("\x30\x05\x00\x01a"), []byte{0x30, 0x05, 0x00, 0x01, 'a'}, io.ErrUnexpectedEOF},
		{"length over four bytes", strings.NewReader("\x30\xff\xff\xff\xff\x01"), nil, errUnframeable},
		{"over MaxPacketSize", strings.NewReader("\x30\x80\x80\x80\x08"), nil, errUnframeable},
		{"read error", iotest.ErrReader(errRead), nil, errRead},
		{"read error in the body", io.MultiReader(strings.NewReader("\x30\x05\x00"), iotest.ErrReader(errRead)), []byte{0x30, 0x05, 0x00}, errRead},
	}
	for _, tt := range tests {
		fr := framer{r: bufio.NewReader(tt.in)}
		b, err := fr.next()
		if !bytes.Equal(b, tt.wantB) || err != tt.wantErr {
			t.Errorf("%s: %x, %v; want %x, %v", tt.name, b, err, tt.wantB, tt.wantErr)
		}
	}

	// The largest packet passes: MaxPacketSize exactly.
	body := MaxPacketSize - 5
	hdr := []byte{0x30, byte(body) | 0x80, byte(body>>7) | 0x80, byte(body>>14) | 0x80, byte(body >> 21)}
	fr := framer{r: bufio.NewReader(io.MultiReader(bytes.NewReader(hdr), io.LimitReader(zeros{}, int64(body))))}
	if b, err := fr.next(); err != nil || len(b) != MaxPacketSize {
		t.Errorf("a packet of MaxPacketSize: %d bytes, %v", len(b), err)
	}
}

// TestFramerGrowth checks that the framer's memory follows the bytes that
// arrive, not the length a peer announces.
func TestFramerGrowth(t *testing.T) {
	// A PUBLISH announcing 10 MiB, of which 100 bytes come.
	in := append([]byte{0x30, 0x80, 0x80, 0x80, 0x05}, make([]byte, 100)...)
	fr := framer{r: bufio.NewReader(bytes.NewReader(in))}
	b, err := fr.next()
	if err != io.ErrUnexpectedEOF || len(b) != len(in) {
		t.Fatalf("%d bytes, %v; want %d bytes and io.ErrUnexpectedEOF", len(b), err, len(in))
	}
	if c := cap(fr.buf); c > 4096 {
		t.Errorf("the framer holds %d bytes for %d received", c, len(in))
	}
}

type zeros struct{}

func (zeros) Read(b []byte) (int, error) {
	clear(b)
	return len(b), nil
}

func TestFrameLogBounds(t *testing.T) {
	p := &Proxy{}
	for i := range logMaxFrames + 100 {
		p.appendLog(Frame{Index: i, Bytes: []byte{0xc0, 0x00}})
	}
	log := p.Frames()
	if len(log) != logMaxFrames || log[0].Index != 100 || log[len(log)-1].Index != logMaxFrames+99 {
		t.Fatalf("the log holds %d frames, %d to %d; want the latest %d", len(log), log[0].Index, log[len(log)-1].Index, logMaxFrames)
	}

	// Large frames push out the old ones to stay within logMaxBytes.
	big := make([]byte, logMaxBytes/3)
	for i := range 4 {
		p.appendLog(Frame{Index: -i, Bytes: big})
	}
	log = p.Frames()
	total := 0
	for _, f := range log {
		total += len(f.Bytes)
	}
	if total > logMaxBytes || log[len(log)-1].Index != -3 || p.logBytes != total {
		t.Errorf("the log holds %d frames of %d bytes (counted %d), the last %v", len(log), total, p.logBytes, log[len(log)-1])
	}

	// A frame larger than the limit is kept alone.
	p.appendLog(Frame{Index: 7, Bytes: make([]byte, logMaxBytes+1)})
	if log = p.Frames(); len(log) != 1 || log[0].Index != 7 {
		t.Errorf("the log holds %d frames, want only the huge one", len(log))
	}

	// Frames returns copies.
	log[0].Bytes[0] = 1
	if p.Frames()[0].Bytes[0] != 0 {
		t.Error("Frames shares its bytes with the log")
	}
}

// chunks reads b in pieces of random sizes.
type chunks struct {
	b   []byte
	rng *rand.Rand
}

func (c *chunks) Read(p []byte) (int, error) {
	if len(c.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), 1+c.rng.IntN(64))], c.b)
	c.b = c.b[n:]
	return n, nil
}

// TestFramerRandom frames random packets read in random pieces, then
// random bytes: the packets come back exactly, and the bytes never make it
// fail in any way but the documented ones.
func TestFramerRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 200 {
		var stream []byte
		var want [][]byte
		for range rng.IntN(20) {
			n := rng.IntN(300)
			if rng.IntN(10) == 0 {
				n = rng.IntN(20000)
			}
			p := []byte{byte(rng.Uint32())}
			for v := n; ; v >>= 7 {
				if v < 128 {
					p = append(p, byte(v))
					break
				}
				p = append(p, byte(v)|0x80)
			}
			for range n {
				p = append(p, byte(rng.Uint32()))
			}
			want = append(want, p)
			stream = append(stream, p...)
		}
		tail := make([]byte, rng.IntN(12))
		for i := range tail {
			tail[i] = byte(rng.Uint32())
		}
		in := append(stream, tail...)

		fr := framer{r: bufio.NewReaderSize(&chunks{b: in, rng: rng}, 16)}
		for i, w := range want {
			if b, err := fr.next(); err != nil || !bytes.Equal(b, w) {
				t.Fatalf("round %d: packet %d: %x, %v; want %x", round, i, b, err, w)
			}
		}
		// The tail: packets that fit, then an end of the documented kinds.
		off := len(stream)
		for {
			b, err := fr.next()
			if err == nil {
				if !bytes.Equal(b, in[off:off+len(b)]) {
					t.Fatalf("round %d: %x is not the input at %d", round, b, off)
				}
				off += len(b)
				continue
			}
			switch err {
			case io.EOF:
				if off != len(in) {
					t.Fatalf("round %d: EOF at %d of %d", round, off, len(in))
				}
			case io.ErrUnexpectedEOF:
				if !bytes.Equal(b, in[off:]) {
					t.Fatalf("round %d: torn packet %x, want %x", round, b, in[off:])
				}
			case errUnframeable:
			default:
				t.Fatalf("round %d: %v", round, err)
			}
			break
		}
	}
}
