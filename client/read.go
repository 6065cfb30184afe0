package client

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/ternmq/mqtt/internal/pace"
	"github.com/ternmq/mqtt/packet"
	"github.com/ternmq/mqtt/session"
)

// The read side: the reader goroutine reads packets, hands them to the
// session, and acts on the events that come out.

// readBuffer is the size of the buffer between the connection and the
// packet reader.
const readBuffer = 32 << 10

// readerBusy reports whether the reader waits, or waited recently, for room
// in the delivery queue: the broker's packets then sit unread, so its
// silence is not a sign of death.
func (cn *conn) readerBusy(now time.Time, keepAlive time.Duration) bool {
	if cn.stalled.Load() {
		return true
	}
	return now.Sub(time.Unix(0, cn.resumed.Load())) < keepAlive*3/2
}

// reader feeds the session with the packets read from cn and delivers
// messages to the dispatcher.
func (c *Client) reader(cn *conn) {
	defer cn.wg.Done()
	// The packets of one read are handled as a batch: their messages go
	// to the dispatcher together and their answers (PUBREL, or the PUBACK
	// of a handled message) leave in one write, once no complete packet is
	// left in the buffer (the next may be slow to come), or after maxBatch
	// packets.
	var batch []*Message
	answers := false // a packet of the batch queued an answer
	packets := 0
	flush := func() {
		if len(batch) == 0 && !answers {
			return
		}
		if answers {
			c.kick()
		}
		c.disp.push(batch)
		clear(batch)
		batch, answers, packets = batch[:0], false, 0
	}
	defer flush() // what was received before an error is delivered
	pacer := pace.New(orDefault(c.opts.BatchDelay, DefaultBatchDelay))
	var read pace.Batch // what the last read from the network brought
	window := orDefault(c.opts.MaxInflight, DefaultMaxInflight)
	for {
		if !cn.r.HasPacket() {
			flush()
		}
		var start time.Time
		fromNet := cn.r.Buffered()+cn.br.Buffered() == 0
		if fromNet {
			if pacer.Pausing() {
				cn.lr.Raise() // no wake-ups for the bytes of the pause
			}
			start = pacer.Wait(read.Kind(window), read.Packets)
			read = pace.Batch{}
		}
		p, err := cn.r.ReadPacket()
		if fromNet {
			pacer.Read(start)
		}
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF // the broker closes only after a protocol error
			}
			if errors.Is(err, packet.ErrTooLarge) {
				// The broker will send it again on the next connection,
				// and again: say what to change.
				c.log.Error("packet from the broker over Options.MaxPacketSize: raise it to receive this message", "limit", orDefault(c.opts.MaxPacketSize, DefaultMaxPacketSize), "err", err)
			}
			cn.close(err)
			return
		}
		read.Add(p)
		cn.recvs.Add(1)
		if !cn.progress.Load() {
			cn.progress.Store(true)
		}
		pub, isPub := p.(*packet.Publish)
		slot := false
		if isPub {
			var ok bool
			if slot, ok = c.disp.reserve(cn, flush); !ok {
				return // the PUBLISH is left unread (see reserve)
			}
			if !slot && pub.QoS == 0 && c.disp.overFull(overCost(len(pub.Topic), len(pub.Payload))) {
				c.dropOverQoS0(pub)
				continue
			}
		}
		c.mu.Lock()
		err = c.s.Receive(p, time.Now())
		if err == nil {
			c.drainEvents()
			if slot {
				if len(c.inbox) == 1 {
					c.inbox[0].slot = true
				} else {
					c.disp.release() // a QoS 2 message received before
				}
			}
			batch = append(batch, c.inbox...)
			clear(c.inbox)
			c.inbox = c.inbox[:0]
			answers = answers || c.s.HasOutgoing()
		} else {
			err = c.sessionFailed(err)
		}
		c.mu.Unlock()
		if err != nil {
			if !errors.Is(err, ErrStoreFailed) {
				c.log.Warn("protocol error", "err", err)
			}
			cn.close(err)
			return
		}
		if packets++; packets >= maxBatch {
			flush()
		}
	}
}

// dropOverQoS0 drops a QoS 0 message read while a handler waits in a call
// of the client, with as much queued past MaxPending already as
// dispatcher.overFull allows: counted, and logged once a second at most.
func (c *Client) dropOverQoS0(p *packet.Publish) {
	c.stats.received.Add(1)
	n := c.stats.discarded.Add(1)
	now := time.Now().UnixNano()
	if last := c.overLog.Load(); now-last >= int64(time.Second) && c.overLog.CompareAndSwap(last, now) {
		c.log.Warn("QoS 0 message dropped: MaxPacketSize of messages wait past MaxPending while a handler waits in a call of the client",
			"topic", string(p.Topic), "discarded", n)
	}
}

// drainEvents acts on the session's events. Called with c.mu held.
func (c *Client) drainEvents() {
	for ev, ok := c.s.NextEvent(); ok; ev, ok = c.s.NextEvent() {
		c.event(ev)
	}
}

// dropEvents acts on the events of Disconnected. Called with c.mu held.
func (c *Client) dropEvents() { c.drainEvents() }

// event acts on one session event. Called with c.mu held.
func (c *Client) event(ev session.Event) {
	switch ev.Kind {
	case session.EventMessage:
		c.stats.received.Add(1)
		c.inbox = append(c.inbox, c.newMessage(ev))
	case session.EventPublished:
		if ev.Handle == c.suspect {
			c.suspect, c.cuts = 0, 0
		}
		if t, ok := c.tokens[ev.Handle]; ok {
			delete(c.tokens, ev.Handle)
			t.complete(nil, ev.PacketID)
		}
		// A publisher that filled the queue is woken once some room is
		// free (see lowWater), not for every acknowledgement.
		if c.room != nil && c.s.Queued() <= c.lowWater {
			close(c.room)
			c.room, c.roomQ0 = nil, false
		}
	case session.EventDropped:
		err := ErrClosed
		switch {
		case errors.Is(ev.Err, session.ErrSessionEnded):
			err = ErrSessionEnded
			if c.lost != nil {
				err = fmt.Errorf("%w: %w", ErrSessionEnded, c.lost)
			}
			c.stats.sessionEnded.Add(1)
			c.log.Warn("QoS 2 message given up: the session ended during its exchange (KeepSession false)", "packet_id", ev.PacketID)
		case c.gaveUp != nil:
			err = c.gaveUp
		}
		if t, ok := c.tokens[ev.Handle]; ok {
			delete(c.tokens, ev.Handle)
			t.complete(err, ev.PacketID)
		}
		if r, ok := c.reqs[ev.Handle]; ok {
			delete(c.reqs, ev.Handle)
			r.err = ErrConnectionLost
			if c.lost != nil {
				r.err = c.lost
			}
			close(r.done)
		}
	case session.EventSubscribed, session.EventUnsubscribed:
		r, ok := c.reqs[ev.Handle]
		if !ok {
			return
		}
		delete(c.reqs, ev.Handle)
		if r.answered != nil {
			r.answered(ev.ReturnCodes)
		}
		r.codes = bytes.Clone(ev.ReturnCodes)
		close(r.done)
	}
}
