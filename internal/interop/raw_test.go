package interop

import (
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/ternmq/mqtt/packet"
)

// timeout bounds every wait of the tests for a packet, a message or a
// process: nothing hangs longer than this.
const timeout = 10 * time.Second

// message is an application message as a subscriber received it.
type message struct {
	Topic   string
	Payload string
	QoS     byte
	Retain  bool
}

func (m message) String() string {
	return fmt.Sprintf("msg %s %q qos=%d retain=%v", m.Topic, m.Payload, m.QoS, m.Retain)
}

// rawClient is an MQTT client made of raw packets (packet.Reader and
// packet.Writer over TCP), so the test sees exactly what the broker sends.
// A reader goroutine acknowledges incoming PUBLISH packets at once (PUBACK,
// PUBREC, then PUBCOMP on PUBREL) and records them in order; every other
// packet goes to ctrl for the test to expect.
type rawClient struct {
	t    testing.TB
	name string
	conn net.Conn

	wmu sync.Mutex // guards w: the reader goroutine writes acks
	w   *packet.Writer

	ctrl chan packet.Packet // copies of non-PUBLISH packets, in order
	done chan struct{}      // closed when the reader goroutine ends
	quit chan struct{}      // closed at the end of the test: the reader stops

	inbox
	rel map[uint16]bool // QoS 2 ids received and awaiting PUBREL, guarded by inbox.mu

	nextID uint16

	// manual, set by dialManual, turns the automatic acknowledgements
	// off: PUBLISH and PUBREL packets also go to ctrl, and the test
	// answers them itself.
	manual bool
}

// dialRaw opens a TCP connection to addr; the connection is closed, and its
// reader goroutine waited for, when the test ends.
func dialRaw(t testing.TB, addr, name string) *rawClient {
	t.Helper()
	return dial(t, addr, name, false)
}

// dialManual is dialRaw for a client that acknowledges nothing by itself.
func dialManual(t testing.TB, addr, name string) *rawClient {
	t.Helper()
	return dial(t, addr, name, true)
}

func dial(t testing.TB, addr, name string, manual bool) *rawClient {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		t.Fatalf("%s: dial %s: %v", name, addr, err)
	}
	c := &rawClient{
		t: t, name: name, conn: conn, manual: manual,
		w:     packet.NewWriter(conn),
		ctrl:  make(chan packet.Packet, 256),
		done:  make(chan struct{}),
		quit:  make(chan struct{}),
		rel:   make(map[uint16]bool),
		inbox: newInbox(name),
	}
	c.inbox.done = c.done
	go c.read()
	t.Cleanup(func() {
		close(c.quit)
		conn.Close()
		<-c.done
	})
	return c
}

// read is the reader goroutine.
func (c *rawClient) read() {
	defer close(c.done)
	defer c.signal()
	r := packet.NewReader(c.conn, 0)
	for {
		p, err := r.ReadPacket()
		if err != nil {
			c.mu.Lock()
			c.readErr = err
			c.mu.Unlock()
			return
		}
		// A copy for ctrl, since p and its bytes belong to r.
		var keep packet.Packet
		switch p := p.(type) {
		case *packet.Publish:
			if c.manual {
				c.add(message{string(p.Topic), string(p.Payload), p.QoS, p.Retain})
				keep = p.Clone()
				break
			}
			c.mu.Lock()
			// A QoS 2 PUBLISH sent again (DUP) before our PUBREL arrives
			// is the same message, not a new one.
			dup := p.QoS == 2 && c.rel[p.PacketID]
			if !dup {
				c.msgs = append(c.msgs, message{string(p.Topic), string(p.Payload), p.QoS, p.Retain})
			}
			if p.QoS == 2 {
				c.rel[p.PacketID] = true
			}
			c.mu.Unlock()
			c.signal()
			switch p.QoS {
			case 1:
				c.write(&packet.Puback{PacketID: p.PacketID})
			case 2:
				c.write(&packet.Pubrec{PacketID: p.PacketID})
			}
		case *packet.Pubrel:
			if c.manual {
				q := *p
				keep = &q
				break
			}
			c.mu.Lock()
			delete(c.rel, p.PacketID)
			c.mu.Unlock()
			c.write(&packet.Pubcomp{PacketID: p.PacketID})
		case *packet.Suback:
			keep = p.Clone()
		case *packet.Connack:
			q := *p
			keep = &q
		case *packet.Puback:
			q := *p
			keep = &q
		case *packet.Pubrec:
			q := *p
			keep = &q
		case *packet.Pubcomp:
			q := *p
			keep = &q
		case *packet.Unsuback:
			q := *p
			keep = &q
		case *packet.Pingresp:
			keep = &packet.Pingresp{}
		default:
			c.mu.Lock()
			c.readErr = fmt.Errorf("unexpected packet from the broker: %v", p)
			c.mu.Unlock()
			c.conn.Close()
			return
		}
		if keep != nil {
			select {
			case c.ctrl <- keep:
			case <-c.quit: // the test is over and reads no more
				return
			}
		}
	}
}

// write sends p now; errors show up as the reader's end.
func (c *rawClient) write(p packet.Packet) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.conn.SetWriteDeadline(time.Now().Add(timeout))
	if err := c.w.WritePacket(p); err != nil {
		return err
	}
	return c.w.Flush()
}

// sendBytes writes b as it is, to send what the packet package refuses to
// encode.
func (c *rawClient) sendBytes(b []byte) {
	c.t.Helper()
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.conn.SetWriteDeadline(time.Now().Add(timeout))
	if _, err := c.conn.Write(b); err != nil {
		c.t.Fatalf("%s: send % x: %v", c.name, b, err)
	}
}

// send writes p, failing the test on error.
func (c *rawClient) send(p packet.Packet) {
	c.t.Helper()
	if err := c.write(p); err != nil {
		c.t.Fatalf("%s: send %v: %v", c.name, p, err)
	}
}

// recv returns the next packet of ctrl, or nil once the connection has
// ended and every packet the broker sent before the end has been returned;
// ok is false when nothing came within timeout.
func (c *rawClient) recv() (p packet.Packet, ok bool) {
	select {
	case p := <-c.ctrl:
		return p, true
	case <-c.done:
		// The reader queues a packet before it ends: look again.
		select {
		case p := <-c.ctrl:
			return p, true
		default:
			return nil, true
		}
	case <-time.After(timeout):
		return nil, false
	}
}

// expect waits for the next non-PUBLISH packet and checks its type.
func (c *rawClient) expect(want packet.Type) packet.Packet {
	c.t.Helper()
	p, ok := c.recv()
	switch {
	case !ok:
		c.t.Fatalf("%s: no %v within %v", c.name, want, timeout)
	case p == nil:
		c.t.Fatalf("%s: connection ended (%v) while waiting for a %v", c.name, c.err(), want)
	case p.Type() != want:
		c.t.Fatalf("%s: got %v, want a %v", c.name, p, want)
	}
	return p
}

func (c *rawClient) id() uint16 {
	c.nextID++
	if c.nextID == 0 {
		c.nextID = 1
	}
	return c.nextID
}

// connect sends p and returns the broker's CONNACK.
func (c *rawClient) connect(p *packet.Connect) *packet.Connack {
	c.t.Helper()
	c.send(p)
	return c.expect(packet.CONNACK).(*packet.Connack)
}

// mustConnect connects with p and fails unless the CONNACK accepts it with
// the session present flag sessionPresent.
func (c *rawClient) mustConnect(p *packet.Connect, sessionPresent bool) {
	c.t.Helper()
	ack := c.connect(p)
	if ack.ReturnCode != packet.Accepted || ack.SessionPresent != sessionPresent {
		c.t.Fatalf("%s: CONNACK %v, want accepted with session present %v", c.name, ack, sessionPresent)
	}
}

// subscribe subscribes to filter, qos pairs and returns the SUBACK codes.
func (c *rawClient) subscribe(pairs ...any) []byte {
	c.t.Helper()
	sub := &packet.Subscribe{PacketID: c.id()}
	for i := 0; i+1 < len(pairs); i += 2 {
		sub.Subscriptions = append(sub.Subscriptions, packet.Subscription{Filter: []byte(pairs[i].(string)), QoS: byte(pairs[i+1].(int))})
	}
	c.send(sub)
	ack := c.expect(packet.SUBACK).(*packet.Suback)
	if ack.PacketID != sub.PacketID {
		c.t.Fatalf("%s: SUBACK for id %d, want %d [MQTT-3.8.4-2]", c.name, ack.PacketID, sub.PacketID)
	}
	return ack.ReturnCodes
}

// unsubscribe unsubscribes from filters and waits for the UNSUBACK.
func (c *rawClient) unsubscribe(filters ...string) {
	c.t.Helper()
	u := &packet.Unsubscribe{PacketID: c.id()}
	for _, f := range filters {
		u.Filters = append(u.Filters, []byte(f))
	}
	c.send(u)
	if ack := c.expect(packet.UNSUBACK).(*packet.Unsuback); ack.PacketID != u.PacketID {
		c.t.Fatalf("%s: UNSUBACK for id %d, want %d [MQTT-3.10.4-4]", c.name, ack.PacketID, u.PacketID)
	}
}

// publish sends a message and completes its QoS flow, then makes a PINGREQ
// round trip: the broker handles a connection's packets in order, so when
// publish returns the message has been routed, and whatever a later
// publish routes comes after it in every subscriber's stream.
func (c *rawClient) publish(topic, payload string, qos byte, retain bool) {
	c.t.Helper()
	p := &packet.Publish{Topic: []byte(topic), Payload: []byte(payload), QoS: qos, Retain: retain}
	if qos > 0 {
		p.PacketID = c.id()
	}
	c.send(p)
	switch qos {
	case 1:
		if ack := c.expect(packet.PUBACK).(*packet.Puback); ack.PacketID != p.PacketID {
			c.t.Fatalf("%s: PUBACK for id %d, want %d", c.name, ack.PacketID, p.PacketID)
		}
	case 2:
		if ack := c.expect(packet.PUBREC).(*packet.Pubrec); ack.PacketID != p.PacketID {
			c.t.Fatalf("%s: PUBREC for id %d, want %d", c.name, ack.PacketID, p.PacketID)
		}
		c.send(&packet.Pubrel{PacketID: p.PacketID})
		if ack := c.expect(packet.PUBCOMP).(*packet.Pubcomp); ack.PacketID != p.PacketID {
			c.t.Fatalf("%s: PUBCOMP for id %d, want %d", c.name, ack.PacketID, p.PacketID)
		}
	}
	c.ping()
}

// ping makes a PINGREQ round trip.
func (c *rawClient) ping() {
	c.t.Helper()
	c.send(&packet.Pingreq{})
	c.expect(packet.PINGRESP)
}

// disconnect sends DISCONNECT and waits until the broker closes the
// connection, which tells that it has handled the DISCONNECT.
func (c *rawClient) disconnect() {
	c.t.Helper()
	c.send(&packet.Disconnect{})
	c.waitClosed()
}

// drop closes the connection without DISCONNECT, as a client that vanishes.
func (c *rawClient) drop() {
	c.t.Helper()
	c.conn.Close()
	c.waitClosed()
}

// waitClosed waits for the reader goroutine to end.
func (c *rawClient) waitClosed() {
	c.t.Helper()
	select {
	case <-c.done:
	case <-time.After(timeout):
		c.t.Fatalf("%s: the broker did not close the connection within %v", c.name, timeout)
	}
	c.conn.Close()
}
