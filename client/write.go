package client

import (
	"time"

	"github.com/ternmq/mqtt/packet"
)

// The write side: the writer goroutine sends what the session has waiting,
// in batches, and wakes the calls waiting for room or for their write.

// kick wakes the writer.
func (c *Client) kick() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// broadcast wakes every call waiting for room or for a write. Called with
// c.mu held.
func (c *Client) broadcast() {
	if c.room != nil {
		close(c.room)
		c.room, c.roomQ0 = nil, false
	}
	c.wakeWriteWaiters(true)
}

// roomChan returns a channel closed when the window or queue may have room.
// Called with c.mu held.
func (c *Client) roomChan() chan struct{} {
	if c.room == nil {
		c.room = make(chan struct{})
	}
	return c.room
}

// maxKeptBuffer is the largest write buffer the writer keeps between
// batches. A batch holds everything queued since the last write (up to
// MaxQueued messages), so a smaller limit would make a steady stream of
// large messages grow a new buffer for every batch.
const maxKeptBuffer = 4 << 20

// maxBatch bounds the packets the reader, and the messages the dispatcher,
// handle before the writer is woken for their answers.
const maxBatch = 64

// writer hands the session's packets to the network in batches, and runs
// the keepalive.
func (c *Client) writer(cn *conn) {
	defer cn.wg.Done()
	defer close(cn.wend)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var buf []byte
	keepAlive := time.Duration(c.connect.KeepAlive) * time.Second
	lastWrite := time.Now()
	for {
		now := time.Now()
		busy := false
		c.mu.Lock()
		if d := c.s.Deadline(); !d.IsZero() && !now.Before(d) {
			if err := c.s.Tick(now); err != nil {
				if !cn.readerBusy(now, keepAlive) {
					c.mu.Unlock()
					cn.close(err)
					return
				}
				// The broker's packets wait unread behind a slow
				// consumer: it is not dead. The session stopped its
				// pings, so keep the broker's keepalive satisfied here
				// [MQTT-3.1.2-23].
				busy = true
			}
		}
		var err error
		buf, err = c.s.AppendOutgoing(buf[:0], now)
		if err != nil {
			err = c.sessionFailed(err)
		}
		if busy && len(buf) == 0 && now.Sub(lastWrite) >= keepAlive/2 {
			buf = append(buf, byte(packet.PINGREQ)<<4, 0) // an unsolicited PINGRESP is harmless
		}
		disc := c.discQueued
		gen := c.takenGen
		if len(buf) > 0 {
			c.takenGen++
			gen = c.takenGen
			// QoS 0 messages left the outbox, or queued ones left the queue.
			if c.room != nil && (c.roomQ0 || c.s.Queued() <= c.lowWater) {
				close(c.room)
				c.room, c.roomQ0 = nil, false
			}
		}
		deadline := c.s.Deadline()
		c.mu.Unlock()
		if err != nil {
			cn.close(err)
			return
		}
		if len(buf) > 0 {
			if err := cn.write(buf, keepAlive, now); err != nil {
				cn.close(err)
				return
			}
			lastWrite = now
			cn.recvsAt.Store(cn.recvs.Load())
			c.mu.Lock()
			c.writtenGen = gen
			if len(c.writeWait) > 0 {
				c.wakeWriteWaiters(false)
			}
			c.mu.Unlock()
			if disc {
				close(cn.discSent)
				return
			}
			if cap(buf) > maxKeptBuffer {
				buf = nil // a burst of large messages is over; do not keep its buffer
			}
		}
		switch {
		case busy:
			timer.Reset(keepAlive / 2)
		case !deadline.IsZero():
			timer.Reset(time.Until(deadline))
		default:
			timer.Stop()
		}
		select {
		case <-c.wake:
		case <-timer.C:
		case <-cn.done:
			return
		}
	}
}

// writeChunk is the most one write deadline covers.
const writeChunk = 64 << 10

// write writes a batch taken at now. With a keepalive, each 64 KiB of it
// must be taken within 1.5 times the keepalive, after which the session
// takes a silent broker for dead [MQTT-3.1.2-24]: a broker that stops
// reading while a write is under way, which no ping can then reach, is
// found as surely, and one that reads a large batch slowly but steadily
// keeps its connection. The deadline moves at most once per half its
// length, which leaves each chunk at least 0.75 keepalives without a timer
// update per batch.
func (cn *conn) write(buf []byte, keepAlive time.Duration, now time.Time) error {
	if keepAlive <= 0 {
		_, err := cn.nc.Write(buf)
		return err
	}
	limit := keepAlive * 3 / 2
	for {
		if cn.wdeadline.Sub(now) < limit/2 {
			cn.wdeadline = now.Add(limit)
			cn.nc.SetWriteDeadline(cn.wdeadline)
		}
		n := min(len(buf), writeChunk)
		if _, err := cn.nc.Write(buf[:n]); err != nil {
			return err
		}
		if buf = buf[n:]; len(buf) == 0 {
			return nil
		}
		now = time.Now()
	}
}
