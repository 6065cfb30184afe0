//go:build linux

package broker

import (
	"encoding/binary"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/ternmq/mqtt/internal/lowat"
	"github.com/ternmq/mqtt/packet"
)

// tcpRecording is a listener that keeps a duplicate descriptor of each TCP
// connection it accepts, so that a test can read the socket's options
// whatever the broker does with its own descriptor (it detaches idle
// connections); the broker gets the connections as they are.
type tcpRecording struct {
	net.Listener
	mu    sync.Mutex
	files []*os.File
}

func (l *tcpRecording) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		f, ferr := tc.File()
		if ferr != nil {
			c.Close()
			return nil, ferr
		}
		l.mu.Lock()
		l.files = append(l.files, f)
		l.mu.Unlock()
	}
	return c, err
}

func (l *tcpRecording) Close() error {
	l.mu.Lock()
	for _, f := range l.files {
		f.Close()
	}
	l.files = nil
	l.mu.Unlock()
	return l.Listener.Close()
}

// mark returns the SO_RCVLOWAT of the i-th accepted connection's socket.
func (l *tcpRecording) mark(t *testing.T, i int) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	// Not File.Fd, which would make the socket blocking.
	rc, err := l.files[i].SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	v, err := lowat.Mark(rc)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestPausedReadLowat: while the broker pauses between the reads of a fast
// publisher, the socket's low-water mark is raised, so that the bytes of the
// pause do not wake the runtime's poller; the mark comes down once the
// stream stops, and a lone message after the stream, then one after the
// connection parked, arrive at once rather than waiting for more bytes.
func TestPausedReadLowat(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rl := &tcpRecording{Listener: l}
	s := New(Options{BatchDelay: 5 * time.Millisecond})
	go s.Serve(rl)
	defer s.Close()
	defer rl.Close()
	sub := rawConnect(t, l.Addr().String(), "sub", true) // subscribes to sub/cmd
	pub := rawConnect(t, l.Addr().String(), "pub", false)
	r := packet.NewReader(sub, 0)
	next := func(want uint32) {
		t.Helper()
		sub.SetReadDeadline(time.Now().Add(5 * time.Second))
		p, err := r.ReadPacket()
		if err != nil {
			t.Fatalf("message %d: %v", want, err)
		}
		pp, ok := p.(*packet.Publish)
		if !ok || len(pp.Payload) < 4 || binary.BigEndian.Uint32(pp.Payload) != want {
			t.Fatalf("got %v, want message %d", p, want)
		}
	}
	payload := make([]byte, 64)
	send := func(i uint32) {
		t.Helper()
		binary.BigEndian.PutUint32(payload, i)
		b, err := (&packet.Publish{Topic: []byte("sub/cmd"), Payload: payload}).Append(nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := pub.Write(b); err != nil {
			t.Fatal(err)
		}
	}

	// A stream of 4000 messages 100 µs apart: paced, with the mark raised
	// during the pauses.
	const n = 4000
	raised := 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range uint32(n) {
			next(i)
		}
	}()
	lastLook := time.Now()
	for i := range uint32(n) {
		send(i)
		for start := time.Now(); time.Since(start) < 100*time.Microsecond; {
		}
		if time.Since(lastLook) > time.Millisecond {
			if rl.mark(t, 1) > 1 {
				raised++
			}
			lastLook = time.Now()
		}
	}
	<-done
	if raised == 0 {
		t.Errorf("the mark of the publisher's socket was never seen raised while its stream was paced")
	}

	// The stream stopped: the reader waits in the poller, the mark low.
	time.Sleep(20 * time.Millisecond)
	if v := rl.mark(t, 1); v != 1 {
		t.Errorf("SO_RCVLOWAT %d after the stream, want 1", v)
	}
	send(n)
	next(n)
	// Parked (after parkAfter without bytes) and detached: the poller of
	// parked connections wakes it for a lone message as well.
	time.Sleep(parkAfter + detachAfter + 50*time.Millisecond)
	send(n + 1)
	next(n + 1)
	t.Logf("mark seen raised %d times during the stream", raised)
}
