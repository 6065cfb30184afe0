package lowat

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/ternmq/mqtt/internal/rawio"
)

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t *testing.T) (client, server *net.TCPConn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

func mark(t *testing.T, c *net.TCPConn) int {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	v, err := Mark(rc)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestReader: with the mark raised, a read takes the few bytes that came
// without waiting for the mark's worth, and keeps the mark; a read that finds
// nothing lowers the mark before it waits, so that one byte wakes it.
func TestReader(t *testing.T) {
	peer, c := tcpPair(t)
	r := NewReader(c)
	if got := mark(t, c); got > 1 {
		t.Fatalf("mark %d before Raise, want the default (0 or 1)", got)
	}
	r.Raise()
	raised := mark(t, c)
	if raised <= 5 || raised > Max {
		t.Fatalf("mark %d after Raise, want more than the 5 bytes sent below, up to %d", raised, Max)
	}
	if _, err := peer.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond) // the bytes are in c's receive queue
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 64)
	n, err := r.Read(buf)
	if err != nil || !bytes.Equal(buf[:n], []byte("hello")) {
		t.Fatalf("Read = %q, %v; want hello", buf[:n], err)
	}
	if got := mark(t, c); got != raised {
		t.Errorf("mark %d after a read that found bytes, want it still raised (%d)", got, raised)
	}
	go func() {
		time.Sleep(50 * time.Millisecond)
		peer.Write([]byte("!"))
	}()
	n, err = r.Read(buf)
	if err != nil || string(buf[:n]) != "!" {
		t.Fatalf("Read = %q, %v; want ! (a raised mark would wait for %d bytes)", buf[:n], err, raised)
	}
	if got := mark(t, c); got != 1 {
		t.Errorf("mark %d after a read that waited, want 1", got)
	}
}

// TestReaderEOF: a peer that closes during a pause ends the next read.
func TestReaderEOF(t *testing.T) {
	peer, c := tcpPair(t)
	r := NewReader(c)
	r.Raise()
	peer.Write([]byte("x"))
	peer.Close()
	time.Sleep(20 * time.Millisecond)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(r)
	if err != nil || string(got) != "x" {
		t.Fatalf("ReadAll = %q, %v; want x then EOF", got, err)
	}
}

// TestReaderNotTCP: a connection that is not plain TCP is read as it is.
func TestReaderNotTCP(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	r := NewReader(b)
	r.Raise()
	go a.Write([]byte("pipe"))
	buf := make([]byte, 8)
	n, err := r.Read(buf)
	if err != nil || string(buf[:n]) != "pipe" {
		t.Fatalf("Read = %q, %v; want pipe", buf[:n], err)
	}
}

// TestRaiseTo: a mark set to n bytes makes a waiting read sleep through
// fewer (here until its deadline) and wake for n; the read after takes what
// came without waiting, and Lower puts the mark back to 1.
func TestRaiseTo(t *testing.T) {
	peer, c := tcpPair(t)
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var s State
	if err := s.RaiseTo(rc, 16); err != nil {
		t.Fatal(err)
	}
	if got := mark(t, c); got != 16 || !s.Raised() {
		t.Fatalf("mark %d (raised %v) after RaiseTo(16)", got, s.Raised())
	}
	// The bytes come while the read waits: a read finds whatever is
	// there, mark or not; the mark only decides when a waiting one wakes.
	go func() {
		time.Sleep(20 * time.Millisecond)
		peer.Write(make([]byte, 12))
	}()
	buf := make([]byte, 64)
	c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if n, err := c.Read(buf); n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read with the mark at 16, 12 bytes coming: %d, %v; want it to wait out its deadline", n, err)
	}
	c.SetReadDeadline(time.Time{})
	var raw rawio.Reader
	if n, err, ok := s.Read(rc, &raw, buf); n != 12 || err != nil || !ok {
		t.Fatalf("Read after the wait = %d, %v, %v; want the 12 bytes", n, err, ok)
	}
	if _, err := peer.Write(make([]byte, 16)); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := io.ReadAtLeast(c, buf, 16); n != 16 || err != nil {
		t.Fatalf("read of 16 bytes with the mark at 16: %d, %v", n, err)
	}
	if err := s.Lower(rc); err != nil || s.Raised() {
		t.Fatalf("Lower: %v (raised %v)", err, s.Raised())
	}
	if got := mark(t, c); got != 1 {
		t.Errorf("mark %d after Lower, want 1", got)
	}
}
