package mqtttest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/ternmq/mqtt/packet"
)

// patience bounds every wait in these tests, so that a broken proxy fails
// a test instead of hanging it. It is never a speed requirement.
const patience = 10 * time.Second

// peer is a tiny broker-like server for the tests: it answers CONNECT with
// CONNACK, PUBLISH QoS 1 with PUBACK, QoS 2 with PUBREC, PUBREL with
// PUBCOMP, PINGREQ with PINGRESP and SUBSCRIBE with SUBACK, and records
// every byte and packet it receives. Replies to packets that arrive
// together leave together, so the proxy sees several packets per read.
type peer struct {
	ln    net.Listener
	wg    sync.WaitGroup
	conns chan *peerConn // every accepted connection, in order
}

type peerConn struct {
	nc   net.Conn
	done chan struct{} // closed when the connection has ended

	mu  sync.Mutex
	raw []byte        // every byte received
	got []packet.Type // every packet read
	err error         // why reading stopped
}

func newPeer(t *testing.T) *peer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &peer{ln: ln, conns: make(chan *peerConn, 64)}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			pc := &peerConn{nc: nc, done: make(chan struct{})}
			p.conns <- pc
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				pc.serve()
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		for {
			select {
			case pc := <-p.conns:
				pc.nc.Close()
				continue
			default:
			}
			break
		}
		p.wg.Wait()
	})
	return p
}

func (p *peer) addr() string { return p.ln.Addr().String() }

// next returns the next connection the peer accepted.
func (p *peer) next(t *testing.T) *peerConn {
	t.Helper()
	select {
	case pc := <-p.conns:
		t.Cleanup(func() { pc.nc.Close() })
		return pc
	case <-time.After(patience):
		t.Fatal("the peer accepted no connection")
		return nil
	}
}

func (pc *peerConn) Read(b []byte) (int, error) {
	n, err := pc.nc.Read(b)
	pc.mu.Lock()
	pc.raw = append(pc.raw, b[:n]...)
	pc.mu.Unlock()
	return n, err
}

func (pc *peerConn) serve() {
	defer close(pc.done)
	defer pc.nc.Close()
	r := packet.NewReader(pc, 0)
	w := packet.NewWriter(pc.nc)
	defer w.Flush()
	for {
		p, err := r.ReadPacket()
		if err != nil {
			pc.mu.Lock()
			pc.err = err
			pc.mu.Unlock()
			return
		}
		pc.mu.Lock()
		pc.got = append(pc.got, p.Type())
		pc.mu.Unlock()
		var reply packet.Packet
		switch p := p.(type) {
		case *packet.Connect:
			reply = &packet.Connack{}
		case *packet.Publish:
			switch p.QoS {
			case 1:
				reply = &packet.Puback{PacketID: p.PacketID}
			case 2:
				reply = &packet.Pubrec{PacketID: p.PacketID}
			}
		case *packet.Pubrel:
			reply = &packet.Pubcomp{PacketID: p.PacketID}
		case *packet.Pingreq:
			reply = &packet.Pingresp{}
		case *packet.Subscribe:
			codes := make([]byte, len(p.Subscriptions))
			for i, s := range p.Subscriptions {
				codes[i] = s.QoS
			}
			reply = &packet.Suback{PacketID: p.PacketID, ReturnCodes: codes}
		case *packet.Disconnect:
			return
		}
		if reply != nil && w.WritePacket(reply) != nil {
			return
		}
		if r.Buffered() == 0 && w.Flush() != nil {
			return
		}
	}
}

// wait waits until the connection has ended and returns what it received.
func (pc *peerConn) wait(t *testing.T) (raw []byte, got []packet.Type, err error) {
	t.Helper()
	select {
	case <-pc.done:
	case <-time.After(patience):
		t.Fatal("the peer's connection did not end")
	}
	return pc.received()
}

func (pc *peerConn) received() (raw []byte, got []packet.Type, err error) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	return bytes.Clone(pc.raw), append([]packet.Type(nil), pc.got...), pc.err
}

// waitGot waits until the peer has read n packets on the connection.
func (pc *peerConn) waitGot(t *testing.T, n int) {
	t.Helper()
	eventually(t, fmt.Sprintf("the peer to read %d packets", n), func() bool {
		_, got, _ := pc.received()
		return len(got) >= n
	})
}

// eventually polls cond until it holds, failing the test after patience.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(patience)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// client is the client side of a test: a raw connection and a packet reader.
type client struct {
	t  *testing.T
	nc net.Conn
	r  *packet.Reader
}

func dial(t *testing.T, p *Proxy) *client {
	t.Helper()
	nc, err := net.Dial("tcp", p.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(patience))
	return &client{t: t, nc: nc, r: packet.NewReader(nc, 0)}
}

// encode returns the wire form of ps, one after the other.
func encode(t *testing.T, ps ...packet.Packet) []byte {
	t.Helper()
	var b []byte
	for _, p := range ps {
		var err error
		if b, err = p.Append(b); err != nil {
			t.Fatalf("encoding %v: %v", p, err)
		}
	}
	return b
}

// send writes ps in one write, so that they arrive together.
func (c *client) send(ps ...packet.Packet) error {
	_, err := c.nc.Write(encode(c.t, ps...))
	return err
}

// expect reads the next packet and checks its type.
func (c *client) expect(want packet.Type) packet.Packet {
	c.t.Helper()
	p, err := c.r.ReadPacket()
	if err != nil {
		c.t.Fatalf("waiting for %v: %v", want, err)
	}
	if p.Type() != want {
		c.t.Fatalf("got %v, want %v", p, want)
	}
	return p
}

// expectEnd reads until the connection ends and checks that nothing more
// arrived and that it ended with EOF or a reset, not a timeout.
func (c *client) expectEnd() {
	c.t.Helper()
	p, err := c.r.ReadPacket()
	if err == nil {
		c.t.Fatalf("got %v, want the connection to end", p)
	}
	if !isEnd(err) {
		c.t.Fatalf("connection did not end: %v", err)
	}
}

// quiet checks that nothing arrives for d. A failure here means traffic
// flowed that should have been held; a pass proves nothing on its own.
func (c *client) quiet(d time.Duration) {
	c.t.Helper()
	if n := c.r.Buffered(); n > 0 {
		c.t.Fatalf("%d bytes arrived", n)
	}
	c.nc.SetReadDeadline(time.Now().Add(d))
	var b [1]byte
	n, err := c.nc.Read(b[:])
	if n > 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		c.t.Fatalf("read %d bytes, %v; want nothing", n, err)
	}
	c.nc.SetReadDeadline(time.Now().Add(patience))
}

func isEnd(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// proxyGoroutines counts the goroutines running the proxy's code.
func proxyGoroutines() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "mqtttest.(*Proxy).") || strings.Contains(g, "mqtttest.(*conn).") {
			count++
		}
	}
	return count
}

var (
	connect = &packet.Connect{CleanSession: true, ClientID: []byte("tern")}
	pingreq = &packet.Pingreq{}
)

func publish(id uint16) *packet.Publish {
	return &packet.Publish{QoS: 1, Topic: []byte("a/b"), PacketID: id, Payload: []byte("hello")}
}

// exchange plays the lockstep conversation of the cut tests: CONNECT, then
// PUBLISH 1 to 5, each sent only once the answer to the one before has
// arrived. It returns the number of answers received before the
// connection ended.
func exchange(t *testing.T, c *client) int {
	t.Helper()
	out := []packet.Packet{connect, publish(1), publish(2), publish(3), publish(4), publish(5)}
	for i, p := range out {
		if err := c.send(p); err != nil {
			if !isEnd(err) {
				t.Fatalf("sending %v: %v", p, err)
			}
			return i
		}
		if _, err := c.r.ReadPacket(); err != nil {
			if !isEnd(err) {
				t.Fatalf("waiting for the answer to %v: %v", p, err)
			}
			return i
		}
	}
	t.Fatal("the connection was not cut")
	return 0
}

func TestProxyForwards(t *testing.T) {
	peer := newPeer(t)
	p := NewProxy(t, peer.addr())
	c := dial(t, p)

	// Six packets in one write, so the proxy reads several at once; the
	// peer answers them in one write too.
	first := []packet.Packet{connect, publish(1), publish(2), publish(3), publish(4), publish(5)}
	if err := c.send(first...); err != nil {
		t.Fatal(err)
	}
	pc := peer.next(t)
	c.expect(packet.CONNACK)
	for id := uint16(1); id <= 5; id++ {
		if got := c.expect(packet.PUBACK).(*packet.Puback).PacketID; got != id {
			t.Fatalf("PUBACK for %d, want %d", got, id)
		}
	}

	// A packet sent one byte at a time, so the proxy reads it in pieces.
	last := encode(t, publish(6))
	for i := range last {
		if _, err := c.nc.Write(last[i : i+1]); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
	if got := c.expect(packet.PUBACK).(*packet.Puback).PacketID; got != 6 {
		t.Fatalf("PUBACK for %d, want 6", got)
	}

	if err := c.send(&packet.Disconnect{}); err != nil {
		t.Fatal(err)
	}
	c.expectEnd()
	raw, got, _ := pc.wait(t)
	sent := append(encode(t, first...), last...)
	sent = append(sent, encode(t, &packet.Disconnect{})...)
	if !bytes.Equal(raw, sent) {
		t.Errorf("the peer received\n%x\nwant\n%x", raw, sent)
	}
	want := []packet.Type{packet.CONNECT, packet.PUBLISH, packet.PUBLISH, packet.PUBLISH,
		packet.PUBLISH, packet.PUBLISH, packet.PUBLISH, packet.DISCONNECT}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("the peer read (-want +got):\n%s", diff)
	}

	// The log has every packet of both directions, numbered per direction.
	var up, down []Frame
	for _, f := range p.Frames() {
		if f.Conn != 0 {
			t.Errorf("%v: want conn 0", f)
		}
		switch f.Dir {
		case ClientToServer:
			up = append(up, f)
		case ServerToClient:
			down = append(down, f)
		default:
			t.Errorf("%v: bad direction", f)
		}
	}
	var offset int64
	var prev time.Time
	for i, f := range up {
		if f.Time.Before(prev) || time.Since(f.Time) < 0 {
			t.Errorf("%v read at %v, before the one before it at %v", f, f.Time, prev)
		}
		prev = f.Time
		if f.Index != i || f.Type != want[i] || f.Offset != offset {
			t.Errorf("frame %v at offset %d, want #%d %v at offset %d", f, f.Offset, i, want[i], offset)
		}
		if end := int(offset) + len(f.Bytes); end > len(sent) || !bytes.Equal(f.Bytes, sent[offset:end]) {
			t.Errorf("frame %v holds %x", f, f.Bytes)
		}
		offset += int64(len(f.Bytes))
	}
	if len(up) != len(want) {
		t.Errorf("%d client->server frames, want %d", len(up), len(want))
	}
	wantDown := []packet.Type{packet.CONNACK, packet.PUBACK, packet.PUBACK, packet.PUBACK,
		packet.PUBACK, packet.PUBACK, packet.PUBACK}
	var gotDown []packet.Type
	for i, f := range down {
		gotDown = append(gotDown, f.Type)
		if f.Index != i || f.Offset != int64(4*i) {
			t.Errorf("frame %v at offset %d, want #%d at offset %d", f, f.Offset, i, 4*i)
		}
	}
	if diff := cmp.Diff(wantDown, gotDown); diff != "" {
		t.Errorf("server->client frames (-want +got):\n%s", diff)
	}
	if n := p.Accepted(); n != 1 {
		t.Errorf("Accepted() = %d, want 1", n)
	}
}

func TestProxyCut(t *testing.T) {
	for _, dir := range []Direction{ClientToServer, ServerToClient} {
		for _, action := range []Action{Cut, CutAfter} {
			for _, index := range []int{0, 1, 4} {
				t.Run(fmt.Sprintf("%v/%v/%d", dir, action, index), func(t *testing.T) {
					peer := newPeer(t)
					p := NewProxy(t, peer.addr())
					p.SetFilter(At(dir, index, action))
					c := dial(t, p)
					answers := exchange(t, c)
					_, got, _ := peer.next(t).wait(t)

					// The conversation is in lockstep: packet i goes up,
					// answer i comes down. Cut stops the packet of that
					// index, CutAfter the one after it.
					passed := index // packets of dir forwarded
					if action == CutAfter {
						passed++
					}
					switch dir {
					case ClientToServer:
						if len(got) != passed {
							t.Errorf("the server read %d packets %v, want %d", len(got), got, passed)
						}
						// With CutAfter the server may answer the last packet
						// before the proxy has closed its side.
						if answers != index && !(action == CutAfter && answers == index+1) {
							t.Errorf("the client got %d answers, want %d", answers, index)
						}
					case ServerToClient:
						if answers != passed {
							t.Errorf("the client got %d answers, want %d", answers, passed)
						}
						// With CutAfter the client may send its next packet
						// before the proxy has closed its side.
						if len(got) != index+1 && !(action == CutAfter && len(got) == index+2) {
							t.Errorf("the server read %d packets %v, want %d", len(got), got, index+1)
						}
					}
				})
			}
		}
	}
}

// TestProxyCutFirstConnOnly cuts the first connection and lets a second
// through, as a test of a client's reconnection would.
func TestProxyCutFirstConnOnly(t *testing.T) {
	peer := newPeer(t)
	p := NewProxy(t, peer.addr())
	p.SetFilter(OnConn(0, OnType(ServerToClient, packet.PUBACK, Cut)))

	c := dial(t, p)
	if err := c.send(connect); err != nil {
		t.Fatal(err)
	}
	c.expect(packet.CONNACK)
	if err := c.send(publish(1)); err != nil {
		t.Fatal(err)
	}
	c.expectEnd()
	if _, got, _ := peer.next(t).wait(t); !cmp.Equal(got, []packet.Type{packet.CONNECT, packet.PUBLISH}) {
		t.Errorf("the server read %v, want CONNECT PUBLISH", got)
	}

	c = dial(t, p)
	if err := c.send(connect, publish(1)); err != nil {
		t.Fatal(err)
	}
	c.expect(packet.CONNACK)
	c.expect(packet.PUBACK)
	if n := p.Accepted(); n != 2 {
		t.Errorf("Accepted() = %d, want 2", n)
	}
}

func TestProxyDrop(t *testing.T) {
	tests := []struct {
		name      string
		filter    Filter
		wantPeer  []packet.Type
		wantReply []packet.Type
	}{{
		name:      "PUBACK to client",
		filter:    OnType(ServerToClient, packet.PUBACK, Drop),
		wantPeer:  []packet.Type{packet.CONNECT, packet.PUBLISH, packet.PUBLISH, packet.PINGREQ},
		wantReply: []packet.Type{packet.CONNACK, packet.PINGRESP},
	}, {
		name:      "PUBLISH to server",
		filter:    OnType(ClientToServer, packet.PUBLISH, Drop),
		wantPeer:  []packet.Type{packet.CONNECT, packet.PINGREQ},
		wantReply: []packet.Type{packet.CONNACK, packet.PINGRESP},
	}, {
		name:      "second packet either way",
		filter:    At(Both, 1, Drop),
		wantPeer:  []packet.Type{packet.CONNECT, packet.PUBLISH, packet.PINGREQ},
		wantReply: []packet.Type{packet.CONNACK, packet.PINGRESP},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			peer := newPeer(t)
			p := NewProxy(t, peer.addr())
			p.SetFilter(tt.filter)
			c := dial(t, p)
			if err := c.send(connect, publish(1), publish(2), pingreq); err != nil {
				t.Fatal(err)
			}
			for _, want := range tt.wantReply {
				c.expect(want)
			}
			// The connection goes on after a drop.
			if err := c.send(&packet.Disconnect{}); err != nil {
				t.Fatal(err)
			}
			c.expectEnd()
			_, got, _ := peer.next(t).wait(t)
			want := append(tt.wantPeer, packet.DISCONNECT)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("the server read (-want +got):\n%s", diff)
			}
		})
	}
}

func TestProxyDelay(t *testing.T) {
	const delay = 100 * time.Millisecond
	peer := newPeer(t)
	p := NewProxy(t, peer.addr())
	p.SetFilter(OnType(ServerToClient, packet.CONNACK, Delay(delay)))
	c := dial(t, p)
	start := time.Now()
	if err := c.send(connect); err != nil {
		t.Fatal(err)
	}
	// The server has the CONNECT long before the client has its answer.
	pc := peer.next(t)
	pc.waitGot(t, 1)
	c.expect(packet.CONNACK)
	if took := time.Since(start); took < delay {
		t.Errorf("CONNACK arrived after %v, want at least %v", took, delay)
	}
	for _, f := range p.Frames() {
		if f.Type == packet.CONNACK && (f.Time.Before(start) || time.Since(f.Time) < delay) {
			t.Errorf("CONNACK read at %v, want between %v and %v", f.Time, start, time.Now().Add(-delay))
		}
	}
	// Packets behind a delayed one are not lost.
	if err := c.send(pingreq); err != nil {
		t.Fatal(err)
	}
	c.expect(packet.PINGRESP)
}

func TestProxyTear(t *testing.T) {
	t.Run("client->server mid-packet", func(t *testing.T) {
		peer := newPeer(t)
		p := NewProxy(t, peer.addr())
		stream := encode(t, connect, publish(1), pingreq)
		n := len(encode(t, connect)) + 5
		p.SetFilter(TearAt(ClientToServer, int64(n)))
		c := dial(t, p)
		if _, err := c.nc.Write(stream); err != nil {
			t.Fatal(err)
		}
		raw, got, err := peer.next(t).wait(t)
		if !bytes.Equal(raw, stream[:n]) {
			t.Errorf("the server received %x, want %x", raw, stream[:n])
		}
		if !cmp.Equal(got, []packet.Type{packet.CONNECT}) || err != io.ErrUnexpectedEOF {
			t.Errorf("the server read %v then %v, want CONNECT then a torn packet", got, err)
		}
		// The client may or may not get the CONNACK, depending on timing,
		// but then the connection ends.
		if _, err := c.r.ReadPacket(); err == nil {
			c.expectEnd()
		} else if !isEnd(err) {
			t.Errorf("connection did not end: %v", err)
		}
	})
	t.Run("server->client mid-packet", func(t *testing.T) {
		peer := newPeer(t)
		p := NewProxy(t, peer.addr())
		p.SetFilter(TearAt(ServerToClient, 6))
		c := dial(t, p)
		if err := c.send(connect, publish(7)); err != nil {
			t.Fatal(err)
		}
		raw, err := io.ReadAll(c.nc)
		if err != nil && !isEnd(err) {
			t.Fatal(err)
		}
		want := append(encode(t, &packet.Connack{}), encode(t, &packet.Puback{PacketID: 7})[:2]...)
		if !bytes.Equal(raw, want) {
			t.Errorf("the client received %x, want %x", raw, want)
		}
	})
	t.Run("between packets", func(t *testing.T) {
		peer := newPeer(t)
		p := NewProxy(t, peer.addr())
		stream := encode(t, connect, publish(1))
		n := len(encode(t, connect))
		p.SetFilter(TearAt(ClientToServer, int64(n)))
		c := dial(t, p)
		if _, err := c.nc.Write(stream); err != nil {
			t.Fatal(err)
		}
		raw, got, err := peer.next(t).wait(t)
		if !bytes.Equal(raw, stream[:n]) || !cmp.Equal(got, []packet.Type{packet.CONNECT}) || err != io.EOF {
			t.Errorf("the server received %x, read %v then %v; want %x, CONNECT then EOF", raw, got, err, stream[:n])
		}
	})
}

// TestProxyTornInput checks that a packet torn by the sender itself reaches
// the other side as it is, and that a half-close is passed on while the
// other direction still flows.
func TestProxyTornInput(t *testing.T) {
	peer := newPeer(t)
	p := NewProxy(t, peer.addr())
	c := dial(t, p)
	sent := append(encode(t, connect), encode(t, publish(1))[:7]...)
	if _, err := c.nc.Write(sent); err != nil {
		t.Fatal(err)
	}
	if err := c.nc.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	raw, got, err := peer.next(t).wait(t)
	if !bytes.Equal(raw, sent) {
		t.Errorf("the server received %x, want %x", raw, sent)
	}
	if !cmp.Equal(got, []packet.Type{packet.CONNECT}) || err != io.ErrUnexpectedEOF {
		t.Errorf("the server read %v then %v, want CONNECT then a torn packet", got, err)
	}
	c.expect(packet.CONNACK)
	c.expectEnd()
	for _, f := range p.Frames() {
		if f.Dir == ClientToServer && f.Type != packet.CONNECT {
			t.Errorf("the torn packet was logged as %v", f)
		}
	}
}

// hasFrame reports whether p has logged a packet of type typ going in dir
// on connection conn.
func hasFrame(p *Proxy, conn int, dir Direction, typ packet.Type) bool {
	for _, f := range p.Frames() {
		if f.Conn == conn && f.Dir == dir && f.Type == typ {
			return true
		}
	}
	return false
}

func TestProxyHold(t *testing.T) {
	const quiet = 100 * time.Millisecond
	t.Run("one direction", func(t *testing.T) {
		peer := newPeer(t)
		p := NewProxy(t, peer.addr())
		c := dial(t, p)
		if err := c.send(connect); err != nil {
			t.Fatal(err)
		}
		c.expect(packet.CONNACK)
		pc := peer.next(t)

		p.Hold(ServerToClient)
		if err := c.send(publish(1)); err != nil {
			t.Fatal(err)
		}
		pc.waitGot(t, 2) // the other direction flows
		eventually(t, "the proxy to read the PUBACK", func() bool { return hasFrame(p, 0, ServerToClient, packet.PUBACK) })
		c.quiet(quiet)
		p.Release(ServerToClient)
		c.expect(packet.PUBACK)
	})
	t.Run("both before connecting", func(t *testing.T) {
		peer := newPeer(t)
		p := NewProxy(t, peer.addr())
		p.Hold(Both)
		c := dial(t, p)
		if err := c.send(connect); err != nil {
			t.Fatal(err)
		}
		pc := peer.next(t) // accepted and dialed while held
		eventually(t, "the proxy to read the CONNECT", func() bool { return hasFrame(p, 0, ClientToServer, packet.CONNECT) })
		c.quiet(quiet)
		if _, got, _ := pc.received(); len(got) != 0 {
			t.Errorf("the server read %v while held", got)
		}
		p.Release(ClientToServer)
		pc.waitGot(t, 1)
		eventually(t, "the proxy to read the CONNACK", func() bool { return hasFrame(p, 0, ServerToClient, packet.CONNACK) })
		c.quiet(quiet)
		p.Release(ServerToClient)
		c.expect(packet.CONNACK)
	})
	t.Run("then cut", func(t *testing.T) {
		// The test of a client whose PUBLISH is lost with its connection.
		peer := newPeer(t)
		p := NewProxy(t, peer.addr())
		c := dial(t, p)
		if err := c.send(connect); err != nil {
			t.Fatal(err)
		}
		c.expect(packet.CONNACK)
		p.Hold(ClientToServer)
		if err := c.send(publish(1)); err != nil {
			t.Fatal(err)
		}
		eventually(t, "the proxy to read the PUBLISH", func() bool { return hasFrame(p, 0, ClientToServer, packet.PUBLISH) })
		p.CutAll()
		p.Release(ClientToServer)
		c.expectEnd()
		if _, got, _ := peer.next(t).wait(t); !cmp.Equal(got, []packet.Type{packet.CONNECT}) {
			t.Errorf("the server read %v, want only CONNECT", got)
		}
	})
	t.Run("during a delay", func(t *testing.T) {
		const delay = 200 * time.Millisecond
		peer := newPeer(t)
		p := NewProxy(t, peer.addr())
		p.SetFilter(OnType(ServerToClient, packet.CONNACK, Delay(delay)))
		c := dial(t, p)
		if err := c.send(connect); err != nil {
			t.Fatal(err)
		}
		var read time.Time
		eventually(t, "the proxy to read the CONNACK", func() bool {
			for _, f := range p.Frames() {
				if f.Type == packet.CONNACK {
					read = f.Time
					return true
				}
			}
			return false
		})
		p.Hold(ServerToClient)
		if time.Since(read) >= delay {
			t.Skip("this machine is too busy: the delay ended before Hold")
		}
		// The delay ends while held, and the CONNACK stays.
		c.quiet(time.Until(read.Add(delay)) + quiet)
		p.Release(ServerToClient)
		c.expect(packet.CONNACK)
	})
}

func TestProxyCutAll(t *testing.T) {
	peer := newPeer(t)
	p := NewProxy(t, peer.addr())
	var clients []*client
	var peers []*peerConn
	for range 2 {
		c := dial(t, p)
		if err := c.send(connect); err != nil {
			t.Fatal(err)
		}
		c.expect(packet.CONNACK)
		clients = append(clients, c)
		peers = append(peers, peer.next(t))
	}
	p.CutAll()
	for i, c := range clients {
		c.expectEnd()
		if _, got, _ := peers[i].wait(t); len(got) != 1 {
			t.Errorf("server side %d read %v, want CONNECT", i, got)
		}
	}
	// New connections still go through.
	c := dial(t, p)
	if err := c.send(connect); err != nil {
		t.Fatal(err)
	}
	c.expect(packet.CONNACK)
	if n := p.Accepted(); n != 3 {
		t.Errorf("Accepted() = %d, want 3", n)
	}
}

func TestProxyClose(t *testing.T) {
	peer := newPeer(t)
	p, err := StartProxy("mqtt://" + peer.addr())
	if err != nil {
		t.Fatal(err)
	}
	// Connection 0 is idle, 1 waits in an hour's delay, 2 is held.
	p.SetFilter(OnConn(1, OnType(ClientToServer, packet.PINGREQ, Delay(time.Hour))))
	var clients []*client
	for i := range 3 {
		c := dial(t, p)
		if err := c.send(connect); err != nil {
			t.Fatal(err)
		}
		c.expect(packet.CONNACK)
		peer.next(t)
		clients = append(clients, c)
		switch i {
		case 1:
			if err := c.send(pingreq); err != nil {
				t.Fatal(err)
			}
			eventually(t, "the PINGREQ to be read", func() bool {
				for _, f := range p.Frames() {
					if f.Conn == 1 && f.Type == packet.PINGREQ {
						return true
					}
				}
				return false
			})
		case 2:
			p.Hold(ClientToServer)
			if err := c.send(pingreq); err != nil {
				t.Fatal(err)
			}
		}
	}
	if n := proxyGoroutines(); n < 1+2*3 {
		t.Fatalf("%d goroutines run the proxy before Close, want at least 7", n)
	}

	p.Close()
	// Close waits for its goroutines; the poll only covers the instant
	// between a goroutine's last deferred call and its exit.
	eventually(t, "the proxy's goroutines to end", func() bool { return proxyGoroutines() == 0 })
	for _, c := range clients {
		c.expectEnd()
	}
	p.Close() // again: a no-op
	if c, err := net.Dial("tcp", p.Addr().String()); err == nil {
		c.Close()
		t.Error("the proxy still accepts connections after Close")
	}
}

func TestProxyDialFailure(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	p := NewProxy(t, addr)
	c := dial(t, p)
	c.expectEnd()
	if n := p.Accepted(); n != 1 {
		t.Errorf("Accepted() = %d, want 1", n)
	}
}

// TestProxyGarbage checks that bytes that cannot be framed end the
// connection on both sides, and that malformed packets that can be framed
// pass through unchanged for the receiver to judge.
func TestProxyGarbage(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		forward bool
	}{
		{"length over four bytes", []byte{0x30, 0xff, 0xff, 0xff, 0xff, 0x01}, false},
		{"packet over MaxPacketSize", []byte{0x30, 0x80, 0x80, 0x80, 0x08, 1, 2, 3}, false},
		{"reserved type 0", []byte{0x00, 0x00}, true},                            // 2.2.1
		{"reserved type 15", []byte{0xf0, 0x01, 0xff}, true},                     // 2.2.1
		{"PUBLISH QoS 3", []byte{0x36, 0x05, 0x00, 0x01, 'a', 0x00, 0x01}, true}, // [MQTT-3.3.1-4]
		{"PUBREL flags 0000", []byte{0x60, 0x02, 0x00, 0x01}, true},              // [MQTT-3.6.1-1]
		{"remaining length not shortest", []byte{0xc0, 0x80, 0x00}, true},        // 2.2.3
		{"CONNECT with a garbage body", []byte{0x10, 0x04, 0xde, 0xad, 0xbe, 0xef}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			peer := newPeer(t)
			p := NewProxy(t, peer.addr())
			c := dial(t, p)
			if _, err := c.nc.Write(tt.in); err != nil {
				t.Fatal(err)
			}
			raw, got, err := peer.next(t).wait(t)
			if tt.forward {
				var perr *packet.Error
				if !bytes.Equal(raw, tt.in) || len(got) != 0 || !errors.As(err, &perr) {
					t.Errorf("the server received %x, read %v then %v; want %x and a malformed packet", raw, got, err, tt.in)
				}
				frames := p.Frames()
				if len(frames) != 1 || frames[0].Type != packet.Type(tt.in[0]>>4) || !bytes.Equal(frames[0].Bytes, tt.in) {
					t.Errorf("frames %v, want one of the garbage", frames)
				}
			} else if len(raw) != 0 {
				t.Errorf("the server received %x, want nothing", raw)
			}
			c.expectEnd()
		})
	}
}

// TestProxyFilterSerialized runs a filter that keeps state without locking
// on several connections at once: the race detector checks that the proxy
// calls it from one goroutine at a time.
func TestProxyFilterSerialized(t *testing.T) {
	peer := newPeer(t)
	p := NewProxy(t, peer.addr())
	seen := map[Direction]int{}
	p.SetFilter(func(f Frame) Action {
		// A slow read-modify-write, which loses counts if calls overlap.
		n := seen[f.Dir]
		time.Sleep(50 * time.Microsecond)
		seen[f.Dir] = n + 1
		return Forward
	})
	out := []packet.Packet{connect}
	for id := uint16(1); id <= 20; id++ {
		out = append(out, publish(id))
	}
	stream := encode(t, out...)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		nc, err := net.Dial("tcp", p.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		nc.SetDeadline(time.Now().Add(patience))
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := nc.Write(stream); err != nil {
				errs <- err
				return
			}
			r := packet.NewReader(nc, 0)
			for range out {
				if _, err := r.ReadPacket(); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	p.SetFilter(nil)
	if seen[ClientToServer] != 4*21 || seen[ServerToClient] != 4*21 {
		t.Errorf("the filter saw %v, want 84 packets each way", seen)
	}
}

func TestTargetAddr(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"127.0.0.1:1883", "127.0.0.1:1883"},
		{"localhost:1884", "localhost:1884"},
		{"[::1]:1883", "[::1]:1883"},
		{"tcp://127.0.0.1:9", "127.0.0.1:9"},
		{"mqtt://broker.example:1885", "broker.example:1885"},
		{"mqtt://broker.example", "broker.example:1883"},
		{"mqtt://[::1]", "[::1]:1883"},
	}
	for _, tt := range tests {
		got, err := targetAddr(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("targetAddr(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	for _, in := range []string{"", "localhost", "mqtts://h:8883", "ssl://h", "ws://h:80/mqtt", "unix:///tmp/s", "mqtt:///path"} {
		if got, err := targetAddr(in); err == nil {
			t.Errorf("targetAddr(%q) = %q, want an error", in, got)
		}
	}
	if _, err := StartProxy("ws://127.0.0.1:1/mqtt"); err == nil {
		t.Error("StartProxy accepted a WebSocket target")
	}
}

func TestProxyAddr(t *testing.T) {
	p := NewProxy(t, "127.0.0.1:1")
	addr := p.Addr().(*net.TCPAddr)
	if !addr.IP.Equal(net.IPv4(127, 0, 0, 1)) || addr.Port == 0 {
		t.Errorf("Addr() = %v, want 127.0.0.1 and a port", addr)
	}
	if want := "mqtt://" + addr.String(); p.URL() != want {
		t.Errorf("URL() = %q, want %q", p.URL(), want)
	}
}
