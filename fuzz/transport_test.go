package fuzz_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"runtime/metrics"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/ternmq/mqtt/transport"
)

// streamConn is a net.Conn that reads a fixed byte stream and keeps what
// is written to it.
type streamConn struct {
	r *bytes.Reader
	w bytes.Buffer
}

func (c *streamConn) Read(p []byte) (int, error)       { return c.r.Read(p) }
func (c *streamConn) Write(p []byte) (int, error)      { return c.w.Write(p) }
func (c *streamConn) Close() error                     { return nil }
func (c *streamConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *streamConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *streamConn) SetDeadline(time.Time) error      { return nil }
func (c *streamConn) SetReadDeadline(time.Time) error  { return nil }
func (c *streamConn) SetWriteDeadline(time.Time) error { return nil }

// refFrames is a plain reading of RFC 6455 section 5 and MQTT 6.0.0-1 for
// a receiver: it returns the payload bytes a receiver delivers before the
// stream ends or breaks, and whether it ends cleanly (io.EOF: end between
// frames or a normal close frame).
func refFrames(in []byte, client bool, maxFrame uint64) (data []byte, clean bool) {
	fragmented := false
	for {
		if len(in) == 0 {
			return data, true
		}
		if len(in) < 2 {
			return data, false
		}
		fin, rsv, op := in[0]&0x80 != 0, in[0]&0x70, in[0]&0x0f
		masked, n := in[1]&0x80 != 0, uint64(in[1]&0x7f)
		control := op >= 8
		switch {
		case rsv != 0, masked == client, op > 2 && op < 8, op > 10, op == 1:
			return data, false
		case op == 0 && !fragmented, op == 2 && fragmented:
			return data, false
		case control && (!fin || n > 125):
			return data, false
		}
		in = in[2:]
		switch n {
		case 126:
			if len(in) < 2 {
				return data, false
			}
			n, in = uint64(binary.BigEndian.Uint16(in)), in[2:]
		case 127:
			if len(in) < 8 {
				return data, false
			}
			n, in = binary.BigEndian.Uint64(in), in[8:]
			if n>>63 != 0 {
				return data, false
			}
		}
		var key []byte
		if masked {
			if len(in) < 4 {
				return data, false
			}
			key, in = in[:4], in[4:]
		}
		if !control && n > maxFrame {
			return data, false
		}
		payload := in[:min(uint64(len(in)), n)]
		unmasked := make([]byte, len(payload))
		for i := range payload {
			unmasked[i] = payload[i]
			if masked {
				unmasked[i] ^= key[i%4]
			}
		}
		if uint64(len(payload)) < n {
			if !control {
				data = append(data, unmasked...) // a data frame's head is delivered
			}
			return data, false
		}
		in = in[n:]
		switch op {
		case 0, 2:
			data = append(data, unmasked...)
			fragmented = !fin
		case 8:
			if n == 0 {
				return data, true
			}
			if n == 1 {
				return data, false
			}
			code := int(binary.BigEndian.Uint16(unmasked))
			valid := code >= 1000 && code <= 1003 || code >= 1007 && code <= 1014 || code >= 3000 && code <= 4999
			if !valid || !utf8.Valid(unmasked[2:]) {
				return data, false
			}
			return data, code == 1000 || code == 1001
		}
	}
}

var heapAllocs = []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}

func allocatedBytes() uint64 {
	metrics.Read(heapAllocs)
	return heapAllocs[0].Value.Uint64()
}

// FuzzWebSocket feeds arbitrary bytes to the frame reader of either side.
// It must never panic, must deliver exactly the payload the reference
// reading of RFC 6455 delivers, end the same way, and never allocate in
// proportion to a length it was told rather than given: a header
// announcing 2^62 bytes costs nothing.
func FuzzWebSocket(f *testing.F) {
	key := []byte{0x37, 0xfa, 0x21, 0x3d}
	for _, seed := range [][]byte{
		{0x82, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58}, // RFC 6455 5.7 masked Hello, binary
		{0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58}, // the same as text [MQTT-6.0.0-1]
		{0x82, 0x05, 'H', 'e', 'l', 'l', 'o'},
		{0x02, 0x03, 'H', 'e', 'l', 0x89, 0x05, 'H', 'e', 'l', 'l', 'o', 0x80, 0x02, 'l', 'o'},
		{0x82, 0x7e, 0x01, 0x00},
		{0x82, 0x7f, 0x40, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3},                         // 2^62 bytes announced
		{0x82, 0xff, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4}, // 2^63-1, masked
		{0x88, 0x02, 0x03, 0xe8},
		{0x88, 0x05, 0x0f, 0xa0, 'b', 'y', 'e'},
		append([]byte{0x82, 0x8e}, append(key, 0x10^0x37, 0x0c^0xfa, 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 60, 0, 0)...),
	} {
		f.Add(seed, false, uint16(64))
		f.Add(seed, true, uint16(1))
	}
	f.Fuzz(func(t *testing.T, in []byte, client bool, bufSize uint16) {
		const maxFrame = 1 << 20
		want, clean := refFrames(in, client, maxFrame)

		sc, got, err := readStream(in, client, int(bufSize)%4096+1, maxFrame)
		if err == nil {
			t.Fatalf("no error after reading %d bytes of a %d-byte input", len(got), len(in))
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("delivered % x, reference % x", got, want)
		}
		if clean != (err == io.EOF) {
			t.Fatalf("ended with %v, reference clean end: %v", err, clean)
		}
		var ce *transport.CloseError
		if !clean && !errors.Is(err, transport.ErrProtocol) && !errors.Is(err, transport.ErrNotBinary) &&
			!errors.Is(err, transport.ErrFrameTooLarge) && err != io.ErrUnexpectedEOF && !errors.As(err, &ce) {
			t.Fatalf("unexpected error type %T: %v", err, err)
		}
		// Allocation is fixed (the reader, the buffer, an error message,
		// the copy of the data) and never follows a frame's announced
		// length. The metric counts whole spans and sees the fuzzing
		// worker's own allocations, hence the slack and the best of three.
		limit := 256<<10 + 4*uint64(len(in))
		for try := 0; ; try++ {
			before := allocatedBytes()
			readStream(in, client, int(bufSize)%4096+1, maxFrame)
			a := allocatedBytes() - before
			if a <= limit {
				break
			}
			if try == 2 {
				t.Fatalf("allocated %d bytes for a %d-byte input", a, len(in))
			}
		}
		// Anything written back is control frames of the right side:
		// pongs and at most one close.
		w := sc.w.Bytes()
		for len(w) > 0 {
			if len(w) < 2 || w[0]&0xf0 != 0x80 || (w[0]&0x0f != 0x8 && w[0]&0x0f != 0xa) || (w[1]&0x80 != 0) != client {
				t.Fatalf("wrote a bad control frame: % x", w)
			}
			l := 2 + int(w[1]&0x7f)
			if client {
				l += 4
			}
			if len(w) < l {
				t.Fatalf("wrote a truncated frame: % x", w)
			}
			w = w[l:]
		}
	})
}

// readStream reads in to its end through a WebSocketConn, with reads of
// bufSize bytes.
func readStream(in []byte, client bool, bufSize int, maxFrame int64) (*streamConn, []byte, error) {
	sc := &streamConn{r: bytes.NewReader(in)}
	c := transport.NewWebSocketConn(sc, client, &transport.Options{MaxFrameSize: maxFrame})
	defer c.Close()
	buf := make([]byte, bufSize)
	var got []byte
	for range len(in) + 2 { // each Read consumes input or ends
		n, err := c.Read(buf)
		if n > len(buf) {
			panic("Read returned more than the buffer")
		}
		got = append(got, buf[:n]...)
		if err != nil {
			return sc, got, err
		}
	}
	return sc, got, nil
}

// FuzzWebSocketRoundTrip writes chunks through one side and reads them back
// through the other: the byte stream must survive masking and framing
// intact [MQTT-6.0.0-2].
func FuzzWebSocketRoundTrip(f *testing.F) {
	f.Add([]byte("hello"), uint8(3), true)
	f.Add(bytes.Repeat([]byte{0xa5}, 300), uint8(126), false)
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8, fromClient bool) {
		sc := &streamConn{r: bytes.NewReader(nil)}
		w := transport.NewWebSocketConn(sc, fromClient, nil)
		step := int(chunk) + 1
		for rest := data; len(rest) > 0; rest = rest[min(step, len(rest)):] {
			p := rest[:min(step, len(rest))]
			if n, err := w.Write(p); n != len(p) || err != nil {
				t.Fatalf("Write: %d, %v", n, err)
			}
		}
		r := transport.NewWebSocketConn(&streamConn{r: bytes.NewReader(sc.w.Bytes())}, !fromClient, nil)
		got, err := io.ReadAll(r)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("read back %d bytes, %v; want the %d bytes written", len(got), err, len(data))
		}
	})
}
