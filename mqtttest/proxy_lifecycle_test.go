package mqtttest

import (
	"bytes"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/ternmq/mqtt/packet"
)

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
