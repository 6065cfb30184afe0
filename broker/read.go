package broker

import (
	"errors"
	"os"
	"time"

	"github.com/ternmq/mqtt/internal/pace"
	"github.com/ternmq/mqtt/packet"
	"github.com/ternmq/mqtt/session"
	"github.com/ternmq/mqtt/topic"
)

// The read side of a connection: its packets read, handed to the session,
// and acted on.

// readLoop reads packets until the connection ends, and returns why (nil
// after DISCONNECT); or returns parked when the connection went idle and
// waits without a goroutine.
func (c *conn) readLoop() (error, bool) {
	s := c.srv
	cl := c.cl
	for {
		empty := c.pr == nil || c.pr.r.Buffered() == 0 && len(c.router.pending) == 0
		if empty && (c.pr == nil || !c.linger()) {
			// Idle until the next bytes: the connection gives its
			// Reader back, so that an idle connection holds no read
			// buffer, and waits on a small one of its own, or with
			// no goroutine at all where it can (parking).
			if c.pr != nil {
				s.putReader(c.pr)
				c.pr = nil
			}
			n, err, parked := c.idleRead()
			if parked {
				return nil, true
			}
			if n == 0 {
				if err == nil {
					continue // a read of nothing: read again
				}
				return err, false
			}
			c.router.pending, c.router.readErr = c.router.idle[:n], err
			c.pr = s.getReader(c)
		}
		p, err := c.pr.r.ReadPacket()
		if err == errLinger {
			// Nothing came while lingering: the Reader, which holds
			// nothing, forgets the error, and the connection waits as
			// an idle one.
			c.pr.r.Reset(&c.pr.src)
			continue
		}
		if err != nil {
			return err, false
		}
		s.traffic.packetsIn.Add(1)
		c.router.paceBatch.Add(p)
		c.holdAcks(p)
		cl.mu.Lock()
		err = cl.sess.Receive(p, time.Now())
		evs := c.router.evs[:0]
		for ev, ok := cl.sess.NextEvent(); ok; ev, ok = cl.sess.NextEvent() {
			evs = append(evs, ev)
		}
		c.router.evs = evs
		out := cl.sess.HasOutgoing()
		backlog := cl.sess.Outgoing() > maxOutgoing
		cl.mu.Unlock()
		if out {
			c.router.later(c)
		}
		if backlog {
			c.awaitWriter()
		}
		if err != nil {
			return err, false // a protocol violation, a second CONNECT among them [MQTT-3.1.0-2]
		}
		for i := range evs {
			if done, err := c.handle(&evs[i]); done || err != nil {
				clear(evs)
				return err, false
			}
		}
		clear(evs) // drop the references into the read buffer
		c.releaseAcks()
	}
}

// handle acts on one session event; it reports whether the client sent
// DISCONNECT, or the protocol violation that ends the connection.
func (c *conn) handle(ev *session.Event) (bool, error) {
	s := c.srv
	switch ev.Kind {
	case session.EventMessage:
		p := ev.Publish
		if tooDeep(p.Topic) {
			return false, errTooDeep
		}
		if s.sysReserved(p.Topic) || s.opts.AuthorizePublish != nil && !s.opts.AuthorizePublish(&c.info, p.Topic, p.QoS, p.Retain) {
			// Acknowledged by the session as usual, and dropped
			// [MQTT-3.3.5-2].
			return false, nil
		}
		s.received.Add(1)
		if c.info.Bridge {
			c.router.noLocal = c.cl // a bridge's messages do not come back to it
		}
		n := c.router.route(s, p)
		c.router.noLocal = nil
		if s.opts.OnEvent != nil {
			s.emit(&Event{Kind: EventPublish, Client: &c.info, Topic: p.Topic, QoS: p.QoS, Retain: p.Retain, PayloadSize: len(p.Payload), Subscribers: n})
		}
	case session.EventSubscribe:
		if err := c.subscribe(ev.Subscribe); err != nil {
			return false, err
		}
	case session.EventUnsubscribe:
		cl := c.cl
		cl.mu.Lock()
		for _, f := range ev.Unsubscribe.Filters {
			s.removeSub(cl, f) // [MQTT-3.10.4-6]
		}
		cl.sess.Unsuback(ev.Unsubscribe.PacketID) // [MQTT-3.10.4-4] [MQTT-3.10.4-5]
		cl.mu.Unlock()
		c.wake()
	case session.EventDisconnect:
		c.will = nil // [MQTT-3.1.2-10] [MQTT-3.14.4-3]
		return true, nil
	}
	return false, nil
}

// subscribe handles a SUBSCRIBE: each filter in turn [MQTT-3.8.4-4], then one
// SUBACK with a code per filter in order [MQTT-3.8.4-1] [MQTT-3.8.4-5]
// [MQTT-3.9.3-1], then the matching retained messages [MQTT-3.3.1-6].
//
// A filter that breaks the syntax of section 4.7 is a protocol violation:
// the connection is closed [MQTT-4.8.0-1], as mosquitto does, and none of the
// packet's filters is acted on. A malformed "$share/" form, an extension of
// 3.1.1, gets the failure code instead.
func (c *conn) subscribe(sp *packet.Subscribe) error {
	s := c.srv
	cl := c.cl
	for _, sb := range sp.Subscriptions {
		if topic.IsShared(sb.Filter) {
			continue
		}
		if err := topic.ValidFilter(sb.Filter); err != nil { // [MQTT-4.7.1-2] [MQTT-4.7.1-3] [MQTT-4.7.3-1]
			return err
		}
	}
	codes := c.router.codes[:0]
	for _, sb := range sp.Subscriptions {
		g := sb.QoS
		if topic.IsShared(sb.Filter) {
			if _, _, err := topic.ParseShared(sb.Filter); err != nil {
				g = packet.SubackFailure
			}
		}
		if f := sb.Filter; tooDeep(f) {
			if topic.IsShared(f) {
				_, f, _ = topic.ParseShared(f) // the levels after $share/{group}/ count
			}
			if tooDeep(f) {
				g = packet.SubackFailure
			}
		}
		if g != packet.SubackFailure && s.opts.AuthorizeSubscribe != nil {
			a := s.opts.AuthorizeSubscribe(&c.info, sb.Filter, sb.QoS)
			if a != packet.SubackFailure {
				a = min(a, sb.QoS)
			}
			g = a
		}
		if g != packet.SubackFailure {
			cl.mu.Lock()
			if err := s.addSub(cl, sb.Filter, g); err != nil {
				g = packet.SubackFailure
			}
			cl.mu.Unlock()
		}
		codes = append(codes, g)
	}
	c.router.codes = codes
	cl.mu.Lock()
	cl.sess.Suback(sp.PacketID, codes) // [MQTT-3.8.4-2]
	cl.mu.Unlock()
	for i, sb := range sp.Subscriptions {
		if codes[i] != packet.SubackFailure && !topic.IsShared(sb.Filter) {
			s.sendRetained(cl, &c.info, c.router, string(sb.Filter), codes[i]) // [MQTT-3.8.4-3]
		}
	}
	c.wake()
	return nil
}

// errLinger ends a read that lingered in vain (see linger).
var errLinger = errors.New("broker: nothing came while lingering")

// connReader is the conn as the io.Reader under its packet.Reader: it runs
// the keepalive when a read deadline passes, so that the packet.Reader, whose
// errors are final, sees only the errors that end the connection.
type connReader conn

func (r *connReader) Read(p []byte) (int, error) {
	c := (*conn)(r)
	if r := c.router; len(r.pending) > 0 {
		n := copy(p, r.pending)
		r.pending = r.pending[n:]
		return n, nil
	}
	if err := c.router.readErr; err != nil {
		return 0, err
	}
	// Every packet read so far is handled: wake the writers that have
	// something to send before waiting for more.
	c.router.flushWakes(c)
	if n, err, ok := c.readAcks(p); ok {
		if n > 0 {
			c.srv.traffic.bytesIn.Add(int64(n))
		}
		return n, err
	}
	if r := c.router; r.paceOn && r.pace.Pausing() {
		c.raiseLowat() // no wake-ups for the bytes of the pause (lowat_linux.go)
	}
	start := c.paceRead()
	for {
		n, err, raw := c.readRaised(p)
		if !raw {
			n, err = c.readNet(p)
		}
		if n > 0 {
			c.srv.traffic.bytesIn.Add(int64(n))
		}
		if !start.IsZero() {
			c.router.pace.Read(start)
		}
		if r := c.router; r.lingering && (n > 0 || err != nil) {
			r.lingering = false
			if n == 0 && errors.Is(err, os.ErrDeadlineExceeded) && c.stop.Load() == running {
				r.lingered = true
				return 0, errLinger
			}
			c.pk.busy()
		}
		if err == nil || n > 0 || c.cl == nil || !errors.Is(err, os.ErrDeadlineExceeded) {
			return n, err
		}
		if c.stop.Load() != running {
			return 0, errShutdown
		}
		now := time.Now()
		c.cl.mu.Lock()
		terr := c.cl.sess.Tick(now) // [MQTT-3.1.2-24]
		d := c.cl.sess.Deadline()
		c.cl.mu.Unlock()
		if terr != nil {
			return 0, terr
		}
		c.nc.SetReadDeadline(d)
		if c.stop.Load() != running {
			// Shutdown may have set its deadline just before ours.
			return 0, errShutdown
		}
	}
}

// paceRead waits, if the connection's read pacer says so, before a read
// from the network, and returns when the read starts (zero if it was not
// asked). Only between whole packets: a packet half read is not delayed.
func (c *conn) paceRead() time.Time {
	r := c.router
	if c.pr != nil && c.pr.r.Buffered() > 0 {
		return time.Time{}
	}
	if !r.paceOn {
		r.pace, r.paceOn = pace.New(c.srv.opts.BatchDelay), true
	}
	start := r.pace.Wait(r.paceBatch.Kind(c.srv.opts.MaxInflight), r.paceBatch.Packets)
	r.paceBatch = pace.Batch{}
	return start
}

// pooledReader is a packet.Reader lent to a connection while it has bytes to
// read: an idle connection holds none, since the read buffer would be most of
// its memory.
type pooledReader struct {
	r   *packet.Reader
	src connSource
}

// connSource reads from the connection the reader is lent to.
type connSource struct{ c *conn }

func (s *connSource) Read(p []byte) (int, error) { return (*connReader)(s.c).Read(p) }

func (s *Server) getReader(c *conn) *pooledReader {
	pr, _ := s.readers.Get().(*pooledReader)
	if pr == nil {
		pr = new(pooledReader)
		pr.r = packet.NewReader(&pr.src, s.opts.MaxPacketSize)
	}
	pr.src.c = c
	return pr
}

// putReader takes back a reader with nothing buffered and no error: one
// that failed keeps its error, and is left to the garbage collector.
func (s *Server) putReader(pr *pooledReader) {
	pr.src.c = nil
	if pr.r.Size() > maxPooledReader {
		return // grown by a large packet: let its memory go
	}
	s.readers.Put(pr)
}

// maxPooledReader is the largest read buffer kept for the next connection.
const maxPooledReader = 256 << 10
