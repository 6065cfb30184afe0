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
