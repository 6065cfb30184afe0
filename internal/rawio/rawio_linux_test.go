package rawio

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// pair returns the two ends of a loopback connection on network ("tcp" or
// "unix").
func pair(t *testing.T, network string) (peer, c net.Conn) {
	t.Helper()
	addr := "127.0.0.1:0"
	if network == "unix" {
		addr = filepath.Join(t.TempDir(), "s")
	}
	l, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	peer, err = net.Dial(network, l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c, err = l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { peer.Close(); c.Close() })
	return peer, c
}

func rawConn(t *testing.T, c net.Conn) syscall.RawConn {
	t.Helper()
	rc, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	return rc
}

// TestReadWaits: a read of an empty socket waits in the poller and returns
// the bytes that come; a write goes out whole.
func TestReadWaits(t *testing.T) {
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network, func(t *testing.T) {
			peer, c := pair(t, network)
			rc := rawConn(t, c)
			type result struct {
				b   []byte
				err error
			}
			done := make(chan result, 1)
			go func() {
				var r Reader
				p := make([]byte, 64)
				n, err := r.Read(rc, p)
				done <- result{p[:n], err}
			}()
			select {
			case r := <-done:
				t.Fatalf("read returned %q, %v before anything was sent", r.b, r.err)
			case <-time.After(50 * time.Millisecond):
			}
			var w Writer
			if n, err := w.Write(rawConn(t, peer), []byte("hello")); n != 5 || err != nil {
				t.Fatalf("write: %d, %v; want 5, nil", n, err)
			}
			select {
			case r := <-done:
				if string(r.b) != "hello" || r.err != nil {
					t.Fatalf("read %q, %v; want \"hello\", nil", r.b, r.err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("read still waiting 5 s after the bytes were sent")
			}
		})
	}
}

// TestWriteWaits: a write larger than the socket's buffers takes several
// calls, waiting in the poller while the buffer is full; every byte
// arrives, in order.
func TestWriteWaits(t *testing.T) {
	peer, c := pair(t, "tcp")
	data := make([]byte, 16<<20)
	for i := range data {
		data[i] = byte(i * 7 / 5)
	}
	got := make(chan []byte, 1)
	go func() {
		time.Sleep(100 * time.Millisecond) // let the buffers fill
		b, _ := io.ReadAll(peer)
		got <- b
	}()
	var w Writer
	n, err := w.Write(rawConn(t, c), data)
	if n != len(data) || err != nil {
		t.Fatalf("write: %d, %v; want %d, nil", n, err, len(data))
	}
	c.Close()
	if b := <-got; !bytes.Equal(b, data) {
		t.Fatalf("peer read %d bytes, not the %d written (or not in order)", len(b), len(data))
	}
}

// TestEnds: the ways a read or write ends without bytes.
func TestEnds(t *testing.T) {
	t.Run("eof", func(t *testing.T) {
		peer, c := pair(t, "tcp")
		peer.Close()
		var r Reader
		if n, err := r.Read(rawConn(t, c), make([]byte, 8)); n != 0 || err != io.EOF {
			t.Fatalf("read after the peer closed: %d, %v; want 0, io.EOF", n, err)
		}
	})
	t.Run("reset", func(t *testing.T) {
		peer, c := pair(t, "tcp")
		peer.(*net.TCPConn).SetLinger(0) // close sends a reset
		peer.Close()
		time.Sleep(20 * time.Millisecond)
		var r Reader
		_, err := r.Read(rawConn(t, c), make([]byte, 8))
		var se *os.SyscallError
		if !errors.Is(err, syscall.ECONNRESET) || !errors.As(err, &se) || se.Syscall != "read" {
			t.Fatalf("read after a reset: %v; want read's ECONNRESET as an *os.SyscallError", err)
		}
		var w Writer
		if _, err := w.Write(rawConn(t, c), []byte("x")); !errors.Is(err, syscall.EPIPE) && !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("write after a reset: %v; want EPIPE or ECONNRESET", err)
		}
	})
	t.Run("read deadline", func(t *testing.T) {
		_, c := pair(t, "tcp")
		c.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
		var r Reader
		if _, err := r.Read(rawConn(t, c), make([]byte, 8)); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("read past its deadline: %v; want os.ErrDeadlineExceeded", err)
		}
	})
	t.Run("write deadline", func(t *testing.T) {
		_, c := pair(t, "tcp") // the peer never reads
		c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
		var w Writer
		data := make([]byte, 64<<20)
		n, err := w.Write(rawConn(t, c), data)
		// n may be 0: under memory pressure the kernel may take nothing.
		if !errors.Is(err, os.ErrDeadlineExceeded) || n < 0 || n >= len(data) {
			t.Fatalf("write past its deadline: %d, %v; want less than %d bytes and os.ErrDeadlineExceeded", n, err, len(data))
		}
	})
	t.Run("closed", func(t *testing.T) {
		_, c := pair(t, "tcp")
		rc := rawConn(t, c)
		done := make(chan error, 1)
		go func() {
			var r Reader
			_, err := r.Read(rc, make([]byte, 8))
			done <- err
		}()
		time.Sleep(30 * time.Millisecond)
		c.Close()
		select {
		case err := <-done:
			if !errors.Is(err, net.ErrClosed) {
				t.Fatalf("read of a connection closed meanwhile: %v; want net.ErrClosed", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("read still waiting 5 s after the connection was closed")
		}
	})
	t.Run("empty", func(t *testing.T) {
		_, c := pair(t, "tcp")
		var r Reader
		var w Writer
		if n, err := r.Read(rawConn(t, c), nil); n != 0 || err != nil {
			t.Fatalf("read into nothing: %d, %v; want 0, nil without waiting", n, err)
		}
		if n, err := w.Write(rawConn(t, c), nil); n != 0 || err != nil {
			t.Fatalf("write of nothing: %d, %v; want 0, nil", n, err)
		}
	})
}

// TestAllocs: a read and a write allocate nothing, which is why Reader and
// Writer hold the call's state.
func TestAllocs(t *testing.T) {
	peer, c := pair(t, "tcp")
	prc, rc := rawConn(t, peer), rawConn(t, c)
	var r Reader
	var w Writer
	msg, buf := []byte("0123456789"), make([]byte, 64)
	allocs := testing.AllocsPerRun(200, func() {
		if _, err := w.Write(prc, msg); err != nil {
			t.Fatal(err)
		}
		if n, err := r.Read(rc, buf); n != len(msg) || err != nil {
			t.Fatalf("read %d, %v", n, err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%.1f allocations per write and read, want 0", allocs)
	}
	allocs = testing.AllocsPerRun(200, func() {
		if _, _, empty := r.ReadNow(rc, buf); !empty {
			t.Fatal("ReadNow found bytes in a socket read empty")
		}
		if _, err := w.Write(prc, msg); err != nil {
			t.Fatal(err)
		}
		for i := 0; ; i++ {
			n, err, empty := r.ReadNow(rc, buf)
			if !empty {
				if n != len(msg) || err != nil {
					t.Fatalf("ReadNow: %d, %v", n, err)
				}
				break
			}
			if i == 1e6 {
				t.Fatal("ReadNow finds nothing after a million tries")
			}
		}
	})
	if allocs != 0 {
		t.Fatalf("%.1f allocations per ReadNow and write, want 0", allocs)
	}
}

// TestReadNow: a read that never waits tells an empty socket from bytes and
// from the peer's close.
func TestReadNow(t *testing.T) {
	peer, c := pair(t, "tcp")
	rc := rawConn(t, c)
	var r Reader
	p := make([]byte, 16)
	if n, err, empty := r.ReadNow(rc, p); n != 0 || err != nil || !empty {
		t.Fatalf("ReadNow of an empty socket: %d, %v, %v; want 0, nil, true", n, err, empty)
	}
	peer.Write([]byte("abc"))
	deadline := time.Now().Add(5 * time.Second)
	for {
		n, err, empty := r.ReadNow(rc, p)
		if !empty {
			if n != 3 || err != nil || string(p[:3]) != "abc" {
				t.Fatalf("ReadNow: %q, %v; want \"abc\", nil", p[:n], err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("ReadNow still finds nothing 5 s after 3 bytes were sent")
		}
		time.Sleep(time.Millisecond)
	}
	c.SetReadDeadline(time.Now().Add(-time.Second))
	if n, err, empty := r.ReadNow(rc, p); n != 0 || err != nil || !empty {
		t.Fatalf("ReadNow past the read deadline: %d, %v, %v; want 0, nil, true (the caller's read reports it)", n, err, empty)
	}
	c.SetReadDeadline(time.Time{})
	peer.Close()
	for {
		n, err, empty := r.ReadNow(rc, p)
		if !empty {
			if n != 0 || err != io.EOF {
				t.Fatalf("ReadNow after the peer closed: %d, %v; want 0, io.EOF", n, err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("ReadNow still finds nothing 5 s after the peer closed")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestSockopt: an option set with SetsockoptInt reads back with
// GetsockoptInt; a bad one fails as the syscall package's would.
func TestSockopt(t *testing.T) {
	_, c := pair(t, "tcp")
	rc := rawConn(t, c)
	var got int
	var gerr, serr, bad error
	rc.Control(func(fd uintptr) {
		serr = SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_RCVLOWAT, 100)
		got, gerr = GetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_RCVLOWAT)
		_, bad = GetsockoptInt(fd, syscall.SOL_SOCKET, -1)
	})
	if serr != nil || gerr != nil || got != 100 {
		t.Fatalf("SO_RCVLOWAT set to 100 reads back %d (set: %v, get: %v)", got, serr, gerr)
	}
	if bad != syscall.ENOPROTOOPT {
		t.Fatalf("an unknown option: %v; want ENOPROTOOPT", bad)
	}
}
