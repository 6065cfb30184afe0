package mqtttest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/ternmq/mqtt/packet"
)

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
		// The proxy may close its side with the CONNACK unread, and then
		// the kernel resets the connection: the raw bytes above show that
		// the server got the torn packet either way.
		if !cmp.Equal(got, []packet.Type{packet.CONNECT}) || err != io.ErrUnexpectedEOF && !errors.Is(err, syscall.ECONNRESET) {
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
		// EOF, or a reset when the proxy closed with the CONNACK unread.
		if !bytes.Equal(raw, stream[:n]) || !cmp.Equal(got, []packet.Type{packet.CONNECT}) || err != io.EOF && !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("the server received %x, read %v then %v; want %x, CONNECT then the end", raw, got, err, stream[:n])
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
