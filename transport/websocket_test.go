package transport

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// memConn is a net.Conn reading from r and recording writes.
type memConn struct {
	r      io.Reader
	mu     sync.Mutex
	w      bytes.Buffer
	closed bool
}

func (c *memConn) Read(p []byte) (int, error) { return c.r.Read(p) }
func (c *memConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.w.Write(p)
}
func (c *memConn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	return nil
}
func (c *memConn) written() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Clone(c.w.Bytes())
}
func (c *memConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *memConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *memConn) SetDeadline(time.Time) error      { return nil }
func (c *memConn) SetReadDeadline(time.Time) error  { return nil }
func (c *memConn) SetWriteDeadline(time.Time) error { return nil }

// cat joins byte slices and strings into one input.
func cat(parts ...any) []byte {
	var b []byte
	for _, p := range parts {
		switch p := p.(type) {
		case string:
			b = append(b, p...)
		case []byte:
			b = append(b, p...)
		case int:
			b = append(b, byte(p))
		case rune:
			b = append(b, byte(p))
		default:
			panic("cat: bad part")
		}
	}
	return b
}

// masked returns a client frame header+payload with the given first byte
// and masking key.
func maskedFrame(b0 byte, key [4]byte, payload []byte) []byte {
	out := []byte{b0}
	switch {
	case len(payload) > 0xffff:
		out = append(out, 0x80|127)
		out = binary.BigEndian.AppendUint64(out, uint64(len(payload)))
	case len(payload) > 125:
		out = append(out, 0x80|126)
		out = binary.BigEndian.AppendUint16(out, uint16(len(payload)))
	default:
		out = append(out, 0x80|byte(len(payload)))
	}
	out = append(out, key[:]...)
	for i, c := range payload {
		out = append(out, c^key[i%4])
	}
	return out
}

var rfcKey = [4]byte{0x37, 0xfa, 0x21, 0x3d}

// readAll reads c to its end with a small buffer, so reads cross frames.
func readAll(c *WebSocketConn, bufSize int) ([]byte, error) {
	var out []byte
	buf := make([]byte, bufSize)
	for {
		n, err := c.Read(buf)
		out = append(out, buf[:n]...)
		if err != nil {
			return out, err
		}
	}
}

func TestRFC6455Examples(t *testing.T) {
	// RFC 6455 section 5.7. The RFC's examples are text frames, which MQTT
	// refuses [MQTT-6.0.0-1]; their binary twins (first byte 0x82 for 0x81)
	// are accepted.
	hello := []byte("Hello")
	tests := []struct {
		name   string
		client bool // the side reading the bytes
		in     []byte
		want   string
	}{
		{"masked binary Hello (client to server)", false,
			[]byte{0x82, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58}, "Hello"},
		{"unmasked binary Hello (server to client)", true,
			[]byte{0x82, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f}, "Hello"},
		{"fragmented binary Hello", true,
			[]byte{0x02, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f}, "Hello"},
		{"256 bytes, 16-bit length", true,
			cat(0x82, 0x7e, 0x01, 0x00, strings.Repeat("a", 256)), strings.Repeat("a", 256)},
		{"64 KiB, 64-bit length", true,
			cat(0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0, strings.Repeat("b", 65536)), strings.Repeat("b", 65536)},
		{"masked, fragmented in three", false,
			cat(maskedFrame(0x02, rfcKey, hello[:1]), maskedFrame(0x00, [4]byte{1, 2, 3, 4}, hello[1:3]), maskedFrame(0x80, [4]byte{}, hello[3:])), "Hello"},
		{"empty frames between", true,
			cat(0x82, 0x00, 0x82, 0x02, "He", 0x82, 0x00, 0x82, 0x03, "llo"), "Hello"},
		{"pong ignored", true, cat(0x8a, 0x00, 0x82, 0x02, "hi"), "hi"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, size := range []int{1, 3, 4096} {
				mc := &memConn{r: bytes.NewReader(tt.in)}
				c := NewWebSocketConn(mc, tt.client, nil)
				got, err := readAll(c, size)
				if err != io.EOF {
					t.Fatalf("buffer %d: read error %v, want io.EOF after the data", size, err)
				}
				if string(got) != tt.want {
					t.Fatalf("buffer %d: read %q, want %q", size, got, tt.want)
				}
				if w := mc.written(); len(w) != 0 {
					t.Fatalf("buffer %d: wrote % x, want nothing", size, w)
				}
			}
		})
	}
}

func TestSeveralPacketsInOneFrame(t *testing.T) {
	// [MQTT-6.0.0-2] One frame may hold several packets, or part of one:
	// a PINGREQ (c0 00) and half a CONNECT in frame 1, the rest in frame 2.
	connect := []byte{0x10, 0x0c, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x02, 0x00, 0x3c, 0x00, 0x00}
	stream := cat([]byte{0xc0, 0x00}, connect)
	in := cat(0x82, 7, stream[:7], 0x82, len(stream)-7, stream[7:])
	c := NewWebSocketConn(&memConn{r: bytes.NewReader(in)}, true, nil)
	got := make([]byte, len(stream))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, stream) {
		t.Fatalf("read % x, want % x", got, stream)
	}
}

func TestPingAnswered(t *testing.T) {
	// A ping in the middle of a fragmented message is answered with a pong
	// carrying the same payload (RFC 6455 sections 5.4 and 5.5.2).
	t.Run("server", func(t *testing.T) {
		in := cat(
			maskedFrame(0x02, rfcKey, []byte("Hel")),
			[]byte{0x89, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58}, // masked ping "Hello"
			maskedFrame(0x80, rfcKey, []byte("lo")),
		)
		mc := &memConn{r: bytes.NewReader(in)}
		got, err := readAll(NewWebSocketConn(mc, false, nil), 64)
		if err != io.EOF || string(got) != "Hello" {
			t.Fatalf("read %q, %v; want Hello, io.EOF", got, err)
		}
		want := []byte{0x8a, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f} // unmasked pong "Hello", RFC 6455 5.7
		if w := mc.written(); !bytes.Equal(w, want) {
			t.Fatalf("wrote % x, want % x", w, want)
		}
	})
	t.Run("client", func(t *testing.T) {
		in := cat(0x02, 0x03, "Hel", 0x89, 0x05, "Hello", 0x80, 0x02, "lo")
		mc := &memConn{r: bytes.NewReader(in)}
		got, err := readAll(NewWebSocketConn(mc, true, nil), 64)
		if err != io.EOF || string(got) != "Hello" {
			t.Fatalf("read %q, %v; want Hello, io.EOF", got, err)
		}
		w := mc.written()
		if len(w) != 11 || w[0] != 0x8a || w[1] != 0x85 {
			t.Fatalf("wrote % x, want a masked pong of 5 bytes", w)
		}
		for i := range 5 {
			w[6+i] ^= w[2+i%4]
		}
		if string(w[6:]) != "Hello" {
			t.Fatalf("pong payload %q, want Hello", w[6:])
		}
	})
}

func TestCloseHandshake(t *testing.T) {
	tests := []struct {
		name    string
		payload []byte
		wantErr error // io.EOF, or a *CloseError
		echo    []byte
	}{
		{"normal", []byte{0x03, 0xe8}, io.EOF, []byte{0x88, 0x02, 0x03, 0xe8}},
		{"going away with reason", cat(0x03, 0xe9, "bye"), io.EOF, []byte{0x88, 0x02, 0x03, 0xe9}},
		{"no status", nil, io.EOF, []byte{0x88, 0x00}},
		{"application status", cat(0x0f, 0xa0, "quota"), &CloseError{Code: 4000, Reason: "quota"}, []byte{0x88, 0x02, 0x0f, 0xa0}},
		{"protocol error status", []byte{0x03, 0xea}, &CloseError{Code: 1002}, []byte{0x88, 0x02, 0x03, 0xea}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := cat(maskedFrame(0x82, rfcKey, []byte("ab")), maskedFrame(0x88, rfcKey, tt.payload), maskedFrame(0x82, rfcKey, []byte("ignored")))
			mc := &memConn{r: bytes.NewReader(in)}
			c := NewWebSocketConn(mc, false, nil)
			got, err := readAll(c, 64)
			if string(got) != "ab" {
				t.Fatalf("read %q before the close, want ab", got)
			}
			var ce *CloseError
			if want, ok := tt.wantErr.(*CloseError); ok {
				if !errors.As(err, &ce) || *ce != *want {
					t.Fatalf("error %v, want %v", err, want)
				}
			} else if err != tt.wantErr {
				t.Fatalf("error %v, want %v", err, tt.wantErr)
			}
			if w := mc.written(); !bytes.Equal(w, tt.echo) {
				t.Fatalf("wrote % x, want the close echo % x", w, tt.echo)
			}
			// Reads stay at their end; writes after the close are refused
			// and Close sends no second close frame.
			if _, err2 := c.Read(make([]byte, 4)); err2 != err {
				t.Fatalf("second read: %v, want %v", err2, err)
			}
			if _, err := c.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
				t.Fatalf("write after close: %v, want net.ErrClosed", err)
			}
			if err := c.Close(); err != nil || !mc.closed {
				t.Fatalf("Close: %v, underlying closed %v", err, mc.closed)
			}
			if w := mc.written(); !bytes.Equal(w, tt.echo) {
				t.Fatalf("after Close wrote % x, want only % x", w, tt.echo)
			}
		})
	}
}

func TestCloseSendsNormalClosure(t *testing.T) {
	mc := &memConn{r: bytes.NewReader(nil)}
	c := NewWebSocketConn(mc, false, nil)
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	want := []byte{0x82, 0x01, 'x', 0x88, 0x02, 0x03, 0xe8}
	if w := mc.written(); !bytes.Equal(w, want) || !mc.closed {
		t.Fatalf("wrote % x (closed %v), want % x and closed", w, mc.closed, want)
	}
	if _, err := c.Write([]byte("x")); err == nil {
		t.Fatal("Write after Close succeeded")
	}
}

func TestFrameRejected(t *testing.T) {
	long := bytes.Repeat([]byte("x"), 126)
	tests := []struct {
		name   string
		client bool
		in     []byte
		want   error
		status int // close status sent back
	}{
		{"text frame, RFC 6455 5.7 masked Hello [MQTT-6.0.0-1]", false,
			[]byte{0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58}, ErrNotBinary, 1003},
		{"text frame to client [MQTT-6.0.0-1]", true, []byte{0x81, 0x05, 'H', 'e', 'l', 'l', 'o'}, ErrNotBinary, 1003},
		{"unmasked client frame", false, []byte{0x82, 0x05, 'H', 'e', 'l', 'l', 'o'}, ErrProtocol, 1002},
		{"masked server frame", true, maskedFrame(0x82, rfcKey, []byte("Hello")), ErrProtocol, 1002},
		{"RSV1 set", true, []byte{0xc2, 0x01, 'a'}, ErrProtocol, 1002},
		{"RSV3 set", true, []byte{0x92, 0x01, 'a'}, ErrProtocol, 1002},
		{"reserved data opcode 3", true, []byte{0x83, 0x00}, ErrProtocol, 1002},
		{"reserved control opcode 0xb", true, []byte{0x8b, 0x00}, ErrProtocol, 1002},
		{"fragmented ping", true, []byte{0x09, 0x00}, ErrProtocol, 1002},
		{"fragmented close", true, []byte{0x08, 0x00}, ErrProtocol, 1002},
		{"ping of 126 bytes", true, cat(0x89, 0x7e, 0x00, 0x7e, long), ErrProtocol, 1002},
		{"continuation with nothing to continue", true, []byte{0x80, 0x01, 'a'}, ErrProtocol, 1002},
		{"binary inside a fragmented message", true, []byte{0x02, 0x01, 'a', 0x82, 0x01, 'b'}, ErrProtocol, 1002},
		{"text continuing a fragmented message", true, []byte{0x02, 0x01, 'a', 0x01, 0x01, 'b'}, ErrProtocol, 1002},
		{"64-bit length with top bit set", true, []byte{0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0}, ErrProtocol, 1002},
		{"2^62 bytes announced", true, []byte{0x82, 0x7f, 0x40, 0, 0, 0, 0, 0, 0, 0}, ErrFrameTooLarge, 1009},
		{"close with 1-byte payload", true, []byte{0x88, 0x01, 0x03}, ErrProtocol, 1002},
		{"close status 999", true, []byte{0x88, 0x02, 0x03, 0xe7}, ErrProtocol, 1002},
		{"close status 1004", true, []byte{0x88, 0x02, 0x03, 0xec}, ErrProtocol, 1002},
		{"close status 1005", true, []byte{0x88, 0x02, 0x03, 0xed}, ErrProtocol, 1002},
		{"close status 1006", true, []byte{0x88, 0x02, 0x03, 0xee}, ErrProtocol, 1002},
		{"close status 1015", true, []byte{0x88, 0x02, 0x03, 0xf7}, ErrProtocol, 1002},
		{"close status 2000", true, []byte{0x88, 0x02, 0x07, 0xd0}, ErrProtocol, 1002},
		{"close status 5000", true, []byte{0x88, 0x02, 0x13, 0x88}, ErrProtocol, 1002},
		{"close reason not UTF-8", true, []byte{0x88, 0x04, 0x03, 0xe8, 0xc3, 0x28}, ErrProtocol, 1007},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mc := &memConn{r: bytes.NewReader(tt.in)}
			c := NewWebSocketConn(mc, tt.client, nil)
			_, err := readAll(c, 64)
			if !errors.Is(err, tt.want) {
				t.Fatalf("error %v, want %v", err, tt.want)
			}
			w := mc.written()
			if tt.client {
				// Client frames are masked: unmask to compare.
				if len(w) != 8 || w[0] != 0x88 || w[1] != 0x82 {
					t.Fatalf("wrote % x, want a masked close frame with a status", w)
				}
				w = []byte{0x88, 0x02, w[6] ^ w[2], w[7] ^ w[3]}
			}
			want := []byte{0x88, 0x02, byte(tt.status >> 8), byte(tt.status)}
			if !bytes.Equal(w, want) {
				t.Fatalf("wrote % x, want close % x", w, want)
			}
			if _, err2 := c.Read(make([]byte, 1)); err2 != err {
				t.Fatalf("second read %v, want the same error %v", err2, err)
			}
		})
	}
}

func TestMaxFrameSize(t *testing.T) {
	opts := &Options{MaxFrameSize: 10}
	ok := cat(0x82, 10, "0123456789")
	c := NewWebSocketConn(&memConn{r: bytes.NewReader(ok)}, true, opts)
	if got, err := readAll(c, 64); err != io.EOF || string(got) != "0123456789" {
		t.Fatalf("frame at the limit: %q, %v", got, err)
	}
	over := cat(0x82, 11, "0123456789a")
	mc := &memConn{r: bytes.NewReader(over)}
	c = NewWebSocketConn(mc, true, opts)
	if got, err := readAll(c, 64); !errors.Is(err, ErrFrameTooLarge) || len(got) != 0 {
		t.Fatalf("frame over the limit: %q, %v; want ErrFrameTooLarge and no data", got, err)
	}
}

func TestTruncatedStream(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"clean end between frames", cat(0x82, 0x01, 'a'), io.EOF},
		{"end inside the header", cat(0x82, 0x01, 'a', 0x82), io.ErrUnexpectedEOF},
		{"end inside the extended length", cat(0x82, 0x7e, 0x01), io.ErrUnexpectedEOF},
		{"end inside the payload", cat(0x82, 0x05, "He"), io.ErrUnexpectedEOF},
		{"end inside a ping", cat(0x89, 0x05, "He"), io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewWebSocketConn(&memConn{r: bytes.NewReader(tt.in)}, true, nil)
			if _, err := readAll(c, 64); err != tt.want {
				t.Fatalf("error %v, want %v", err, tt.want)
			}
		})
	}
}

func TestWriteFrames(t *testing.T) {
	// Server frames are unmasked, so their bytes are exact (RFC 6455 5.7).
	for _, tt := range []struct {
		n      int
		header []byte
	}{
		{1, []byte{0x82, 0x01}},
		{125, []byte{0x82, 0x7d}},
		{126, []byte{0x82, 0x7e, 0x00, 0x7e}},
		{256, []byte{0x82, 0x7e, 0x01, 0x00}},
		{65535, []byte{0x82, 0x7e, 0xff, 0xff}},
		{65536, []byte{0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0}},
		{200000, []byte{0x82, 0x7f, 0, 0, 0, 0, 0, 0x03, 0x0d, 0x40}},
	} {
		p := make([]byte, tt.n)
		for i := range p {
			p[i] = byte(i * 7)
		}
		mc := &memConn{}
		c := NewWebSocketConn(mc, false, nil)
		if n, err := c.Write(p); n != tt.n || err != nil {
			t.Fatalf("Write(%d bytes) = %d, %v", tt.n, n, err)
		}
		if want := cat(tt.header, p); !bytes.Equal(mc.written(), want) {
			t.Fatalf("%d bytes: wrote header % x, want % x", tt.n, mc.written()[:len(tt.header)], tt.header)
		}

		// A client frame has the mask bit and a key; the server side must
		// read back exactly p.
		mc = &memConn{}
		c = NewWebSocketConn(mc, true, nil)
		if n, err := c.Write(p); n != tt.n || err != nil {
			t.Fatalf("client Write(%d bytes) = %d, %v", tt.n, n, err)
		}
		w := mc.written()
		if w[0] != 0x82 || w[1]&0x80 == 0 || len(w) != len(tt.header)+4+tt.n {
			t.Fatalf("client frame of %d bytes: header % x, length %d", tt.n, w[:min(len(w), 14)], len(w))
		}
		s := NewWebSocketConn(&memConn{r: bytes.NewReader(w)}, false, nil)
		got, err := readAll(s, 1000)
		if err != io.EOF || !bytes.Equal(got, p) {
			t.Fatalf("client frame of %d bytes read back as %d bytes, %v", tt.n, len(got), err)
		}
	}
}

func TestWriteEmpty(t *testing.T) {
	mc := &memConn{}
	c := NewWebSocketConn(mc, true, nil)
	if n, err := c.Write(nil); n != 0 || err != nil || len(mc.written()) != 0 {
		t.Fatalf("Write(nil) = %d, %v, wrote % x; want nothing sent", n, err, mc.written())
	}
}

// cycleReader returns data over and over.
type cycleReader struct {
	data []byte
	off  int
}

func (r *cycleReader) Read(p []byte) (int, error) {
	n := copy(p, r.data[r.off:])
	r.off = (r.off + n) % len(r.data)
	return n, nil
}

func TestSteadyStateAllocs(t *testing.T) {
	msg := make([]byte, 1024)
	for _, client := range []bool{true, false} {
		c := NewWebSocketConn(&memConn{r: &cycleReader{data: []byte{0}}}, client, nil)
		c.conn = discardConn{c.conn}
		c.Write(msg) // the first write sizes the buffer
		if n := testing.AllocsPerRun(100, func() { c.Write(msg) }); n != 0 {
			t.Errorf("client=%v: Write allocates %v times per call", client, n)
		}
	}

	// Reading: a stream of masked 1 KiB frames, read 100 bytes at a time
	// and whole.
	frame := maskedFrame(0x82, rfcKey, msg)
	c := NewWebSocketConn(&memConn{r: &cycleReader{data: frame}}, false, nil)
	buf := make([]byte, len(msg))
	if n := testing.AllocsPerRun(100, func() {
		if _, err := io.ReadFull(c, buf); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("Read allocates %v times per message", n)
	}
	if n := testing.AllocsPerRun(100, func() {
		if _, err := io.ReadFull(c, buf[:100]); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("Read of 100 bytes allocates %v times", n)
	}
}

// discardConn drops writes.
type discardConn struct{ net.Conn }

func (discardConn) Write(p []byte) (int, error) { return len(p), nil }

// TestPipeRoundTrip sends frames of every length class both ways: the byte
// stream arrives whole and in order [MQTT-7.1.1-1] [MQTT-7.1.2-1].
func TestPipeRoundTrip(t *testing.T) {
	a, b := net.Pipe()
	client, server := NewWebSocketConn(a, true, nil), NewWebSocketConn(b, false, nil)
	defer client.Close()
	defer server.Close()
	sizes := []int{1, 2, 125, 126, 1000, 65535, 65536, 70000, 200000}
	var want []byte
	for i, n := range sizes {
		want = append(want, bytes.Repeat([]byte{byte(i + 1)}, n)...)
	}
	errc := make(chan error, 1)
	go func() {
		for i, n := range sizes {
			if _, err := client.Write(bytes.Repeat([]byte{byte(i + 1)}, n)); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	got := make([]byte, len(want))
	if _, err := io.ReadFull(server, got); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("client to server stream corrupted")
	}

	// And back, with the client closing at the end: the server reads io.EOF.
	go func() {
		_, err := server.Write(want)
		errc <- err
	}()
	if _, err := io.ReadFull(client, got); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("server to client: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	go client.Close()
	if n, err := server.Read(got); n != 0 || err != io.EOF {
		t.Fatalf("after the client closed, server read %d, %v; want io.EOF", n, err)
	}
}

func TestReadDeadlineResumes(t *testing.T) {
	// A read that times out in the middle of a frame header does not lose
	// the bytes already read: the next Read finishes the frame.
	a, b := net.Pipe()
	defer a.Close()
	c := NewWebSocketConn(b, true, nil)
	defer c.Close()
	frame := cat(0x82, 0x7e, 0x00, 0x80, bytes.Repeat([]byte("z"), 128))
	go a.Write(frame[:3]) // header cut after the first length byte
	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	buf := make([]byte, 128)
	_, err := c.Read(buf)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("Read error %v, want a timeout", err)
	}
	c.SetReadDeadline(time.Time{})
	go a.Write(frame[3:])
	if _, err := io.ReadFull(c, buf); err != nil || !bytes.Equal(buf, frame[4:]) {
		t.Fatalf("after the timeout: %v, %q", err, buf)
	}
}

func TestCloseUnblocksWrite(t *testing.T) {
	a, b := net.Pipe() // nobody reads a: writes block
	defer a.Close()
	c := NewWebSocketConn(b, false, nil)
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(make([]byte, 1000))
		errc <- err
	}()
	time.Sleep(20 * time.Millisecond) // let the write block; either order is correct
	c.Close()
	select {
	case err := <-errc:
		if err == nil {
			t.Fatal("blocked Write succeeded after Close")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not unblock a blocked Write")
	}
}

func TestConcurrentReadWritePing(t *testing.T) {
	// Reads answering pings and Writes from several goroutines share the
	// connection without mixing frames; run with -race.
	a, b := net.Pipe()
	client, server := NewWebSocketConn(a, true, nil), NewWebSocketConn(b, false, nil)
	const writers, each = 4, 200
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for range each {
				if _, err := client.Write(bytes.Repeat([]byte{byte('a' + w)}, 10)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	// The server pings while the client is writing; the client's Read
	// answers with pongs, which the server's Read skips.
	go func() {
		for range 50 {
			server.writeControl(opPing, []byte("p"))
		}
	}()
	go io.Copy(io.Discard, client)
	buf := make([]byte, 10)
	counts := map[byte]int{}
	for range writers * each {
		if _, err := io.ReadFull(server, buf); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf, bytes.Repeat(buf[:1], 10)) {
			t.Fatalf("frames mixed: %q", buf)
		}
		counts[buf[0]]++
	}
	wg.Wait()
	client.Close()
	server.Close()
	for w := range writers {
		if counts[byte('a'+w)] != each {
			t.Fatalf("writer %d: %d messages, want %d", w, counts[byte('a'+w)], each)
		}
	}
}

func TestWriteDeadline(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	c := NewWebSocketConn(b, false, nil)
	defer c.Close()
	// Nobody reads a: the write times out before any byte leaves, so the
	// connection stays usable.
	c.SetWriteDeadline(time.Now().Add(20 * time.Millisecond))
	_, err := c.Write([]byte("hi"))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("Write error %v, want a timeout", err)
	}
	c.SetWriteDeadline(time.Time{})
	go c.Write([]byte("hi"))
	got := make([]byte, 4)
	if _, err := io.ReadFull(a, got); err != nil || !bytes.Equal(got, []byte{0x82, 0x02, 'h', 'i'}) {
		t.Fatalf("after the timeout: % x, %v", got, err)
	}
}

// A ping is answered, and a close echoed, even when the caller's write
// deadline passed long ago, as it has on a server that sets one before each
// write and whose client has been idle since (RFC 6455 sections 5.5.2 and
// 5.5.1: both MUST be answered). The caller's own writes keep its deadline.
func TestControlAfterWriteDeadline(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	c := NewWebSocketConn(b, false, nil)
	defer c.Close()
	c.SetWriteDeadline(time.Now().Add(-time.Minute))
	a.SetDeadline(time.Now().Add(5 * time.Second))
	go func() {
		a.Write(maskedFrame(0x89, rfcKey, []byte("hi")))
		a.Write(maskedFrame(0x82, rfcKey, []byte("x")))
	}()
	readc := make(chan string, 1)
	go func() {
		buf := make([]byte, 8)
		n, err := c.Read(buf)
		readc <- fmt.Sprintf("%q %v", buf[:n], err)
	}()
	pong := make([]byte, 4)
	if _, err := io.ReadFull(a, pong); err != nil || !bytes.Equal(pong, []byte{0x8a, 0x02, 'h', 'i'}) {
		t.Fatalf("pong % x, %v; want 8a 02 68 69", pong, err)
	}
	if got := <-readc; got != `"x" <nil>` {
		t.Fatalf("Read after the ping: %s", got)
	}
	_, err := c.Write([]byte("y"))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("Write with the deadline passed: %v, want a timeout", err)
	}
	go a.Write(maskedFrame(0x88, rfcKey, []byte{0x03, 0xe8}))
	go func() {
		_, err := c.Read(make([]byte, 8))
		readc <- fmt.Sprint(err)
	}()
	echo := make([]byte, 4)
	if _, err := io.ReadFull(a, echo); err != nil || !bytes.Equal(echo, []byte{0x88, 0x02, 0x03, 0xe8}) {
		t.Fatalf("close echo % x, %v; want 88 02 03 e8", echo, err)
	}
	if got := <-readc; got != "EOF" {
		t.Fatalf("Read after the close: %s, want EOF", got)
	}
}

// A pong that cannot start within its time, to a peer that does not read,
// is dropped and leaves the connection whole; the caller's deadline is back
// in force after it.
func TestPongToPeerNotReading(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	c := NewWebSocketConn(b, false, nil)
	defer c.Close()
	c.SetWriteDeadline(time.Now().Add(-time.Minute))
	go a.Write(cat(maskedFrame(0x89, rfcKey, []byte("p")), maskedFrame(0x82, rfcKey, []byte("x"))))
	buf := make([]byte, 8)
	start := time.Now()
	n, err := c.Read(buf)
	if err != nil || string(buf[:n]) != "x" {
		t.Fatalf("Read: %q, %v; want x", buf[:n], err)
	}
	if d := time.Since(start); d < controlTimeout/2 {
		t.Fatalf("the unread pong gave up after %v, want about %v", d, controlTimeout)
	}
	c.SetWriteDeadline(time.Time{})
	go c.Write([]byte("y"))
	got := make([]byte, 3)
	if _, err := io.ReadFull(a, got); err != nil || !bytes.Equal(got, []byte{0x82, 0x01, 'y'}) {
		t.Fatalf("after the dropped pong: % x, %v; want 82 01 79", got, err)
	}
}
