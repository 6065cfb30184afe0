//go:build linux

package broker

import (
	"context"
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

// nextMessage reads the next packet from nc, with r, and fails unless it is
// a PUBLISH whose payload starts with the message number want.
func nextMessage(t *testing.T, nc net.Conn, r *packet.Reader, want uint32) *packet.Publish {
	t.Helper()
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	p, err := r.ReadPacket()
	if err != nil {
		t.Fatalf("message %d: %v", want, err)
	}
	pp, ok := p.(*packet.Publish)
	if !ok || len(pp.Payload) < 4 || binary.BigEndian.Uint32(pp.Payload) != want {
		t.Fatalf("got %v, want message %d", p, want)
	}
	return pp
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
		nextMessage(t, sub, r, want)
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

// TestReadAcks: the reader of a client whose window of messages in flight
// is full waits for half the window's acknowledgements, not the first: the
// mark of its socket is 4 bytes (a PUBACK) for each, and acknowledgements
// that come that many at a time are read at once. What the client sends
// besides waits BatchDelay at most, not for the linger that parking puts on
// the read (made a minute here): a PINGREQ sent with the window full is
// answered. Every message arrives once, in order; and a Shutdown that comes
// while the reader waits ends it at once.
func TestReadAcks(t *testing.T) {
	defer func(d time.Duration) { parkAfter = d }(parkAfter)
	parkAfter = time.Minute
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rl := &tcpRecording{Listener: l}
	const (
		window = 8
		half   = window / 2
		delay  = 2 * time.Second // long, so that the wait can be seen
	)
	s := New(Options{MaxInflight: window, BatchDelay: delay})
	go s.Serve(rl)
	defer s.Close()
	defer rl.Close()
	sub := rawConnect(t, l.Addr().String(), "sub", true) // subscribes to sub/cmd at QoS 1
	pub := rawConnect(t, l.Addr().String(), "pub", false)
	const n = 3 * window
	var out []byte
	for i := range uint32(n) {
		payload := binary.BigEndian.AppendUint32(nil, i)
		out, err = (&packet.Publish{QoS: 1, PacketID: uint16(i + 1), Topic: []byte("sub/cmd"), Payload: payload}).Append(out)
		if err != nil {
			t.Fatal(err)
		}
	}
	if _, err := pub.Write(out); err != nil {
		t.Fatal(err)
	}
	r := packet.NewReader(sub, 0)
	var ids []uint16
	next := func(want uint32) {
		t.Helper()
		p := nextMessage(t, sub, r, want)
		if p.QoS != 1 {
			t.Fatalf("got %v, want message %d at QoS 1", p, want)
		}
		ids = append(ids, p.PacketID)
	}
	acked := 0
	ack := func(k int) { // the k oldest, in one write
		t.Helper()
		acked += k
		var b []byte
		for _, id := range ids[:k] {
			b, _ = (&packet.Puback{PacketID: id}).Append(b)
		}
		ids = ids[k:]
		if _, err := sub.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	for i := range uint32(window) {
		next(i)
	}
	// The window is full; the reader, waiting since the SUBSCRIBE, reads
	// the first acknowledgement alone, and the message it lets through
	// fills the window again. Now the reader waits for half of them.
	ack(1)
	next(window)
	mark := 0
	for start := time.Now(); time.Since(start) < 5*time.Second && mark != 4*half; time.Sleep(time.Millisecond) {
		mark = rl.mark(t, 0)
	}
	if mark != 4*half {
		t.Fatalf("SO_RCVLOWAT %d with the window full, want %d", mark, 4*half)
	}
	// A PINGREQ is fewer bytes than that.
	if _, err := sub.Write([]byte{0xc0, 0x00}); err != nil {
		t.Fatal(err)
	}
	sub.SetReadDeadline(time.Now().Add(5 * time.Second))
	if p, err := r.ReadPacket(); err != nil || p.Type() != packet.PINGRESP {
		t.Fatalf("answer to a PINGREQ with the window full: %v, %v; want a PINGRESP", p, err)
	}
	start := time.Now()
	for i := uint32(window + 1); i < n; {
		ack(half)
		for range half {
			if i < n {
				next(i)
				i++
			}
		}
	}
	if d := time.Since(start); d >= delay {
		t.Errorf("%d messages acknowledged half a window at a time took %v: the reader waited for more", n-window-1, d)
	}
	// Every byte read counts, those of the waits for acknowledgements
	// too: two CONNECTs of 17 bytes (fixed header 2, variable header 10,
	// client ID 2+3) and a SUBSCRIBE of 14 (2, packet ID 2, filter 2+7,
	// QoS 1), the PUBLISHes, the PINGREQ and 4 bytes a PUBACK.
	want := int64(2*17 + 14 + len(out) + 2 + 4*acked)
	var got int64
	for start := time.Now(); time.Since(start) < 5*time.Second; time.Sleep(time.Millisecond) {
		if got = s.Stats().BytesReceived; got == want {
			break
		}
	}
	if got != want {
		t.Errorf("Stats().BytesReceived = %d, want %d", got, want)
	}
	// The reader waits again, for the rest of the window.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start = time.Now()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown while the reader waits for acknowledgements: %v after %v", err, time.Since(start))
	}
}

// TestReadAcksSlow: a client that does not acknowledge its full window
// quickly makes a wait for acknowledgements run out with none come (only a
// PINGREQ); after that the reader does not wait on its next read, then on
// its next three after a second such wait: a PINGREQ is answered after
// BatchDelay when the reader waits, at once when it does not.
func TestReadAcksSlow(t *testing.T) {
	defer func(d time.Duration) { parkAfter = d }(parkAfter)
	parkAfter = time.Minute // no parking, which would start the reader afresh
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	const (
		window = 8
		delay  = time.Second
	)
	rl := &tcpRecording{Listener: l}
	s := New(Options{MaxInflight: window, BatchDelay: delay})
	go s.Serve(rl)
	defer s.Close()
	defer rl.Close()
	sub := rawConnect(t, l.Addr().String(), "sub", true) // subscribes to sub/cmd at QoS 1
	pub := rawConnect(t, l.Addr().String(), "pub", false)
	var out []byte
	for i := range uint32(window + 1) {
		out, _ = (&packet.Publish{QoS: 1, PacketID: uint16(i + 1), Topic: []byte("sub/cmd"), Payload: binary.BigEndian.AppendUint32(nil, i)}).Append(out)
	}
	if _, err := pub.Write(out); err != nil {
		t.Fatal(err)
	}
	r := packet.NewReader(sub, 0)
	var first uint16
	for i := range uint32(window) {
		p := nextMessage(t, sub, r, i)
		if i == 0 {
			first = p.PacketID
		}
	}
	// One acknowledgement, read at once (the reader was waiting since the
	// SUBSCRIBE), lets the last message through: the window is full again
	// and the reader waits for half of it.
	ack, _ := (&packet.Puback{PacketID: first}).Append(nil)
	if _, err := sub.Write(ack); err != nil {
		t.Fatal(err)
	}
	nextMessage(t, sub, r, window)
	ping := func() time.Duration {
		t.Helper()
		start := time.Now()
		if _, err := sub.Write([]byte{0xc0, 0x00}); err != nil {
			t.Fatal(err)
		}
		sub.SetReadDeadline(time.Now().Add(5 * time.Second))
		if p, err := r.ReadPacket(); err != nil || p.Type() != packet.PINGRESP {
			t.Fatalf("answer to a PINGREQ: %v, %v; want a PINGRESP", p, err)
		}
		return time.Since(start)
	}
	// waiting reports whether the reader has raised the subscriber's mark:
	// it is in a wait for acknowledgements, which a PINGREQ sent before it
	// got there would have ended at once.
	waiting := func() bool {
		for start := time.Now(); time.Since(start) < 5*time.Second; time.Sleep(time.Millisecond) {
			if rl.mark(t, 0) > 1 {
				return true
			}
		}
		return false
	}
	time.Sleep(200 * time.Millisecond) // the reader is at its next read
	for i, waits := range []bool{true, false, true, false, false, false, true} {
		if waits && !waiting() {
			t.Fatalf("before PINGREQ %d: the reader did not start waiting for acknowledgements in 5 s", i)
		}
		d := ping()
		switch {
		case waits && d < delay/2:
			t.Fatalf("PINGREQ %d answered after %v: want the reader waiting for acknowledgements (BatchDelay %v)", i, d, delay)
		case !waits && d >= delay/2:
			t.Fatalf("PINGREQ %d answered after %v: want it at once, after a wait that ran out", i, d)
		}
		time.Sleep(200 * time.Millisecond) // the reader is at its next read
	}
}
