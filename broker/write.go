package broker

import (
	"net"
	"syscall"
	"time"

	"github.com/ternmq/mqtt/internal/rawio"
)

// The write side of a connection: a writer, started when the session has
// packets to send, writes them out in batches.

// wake tells the writer that the session may have packets to send,
// starting it if it does not run.
func (c *conn) wake() {
	if c.claimWriter() {
		go c.writeLoop()
	}
}

// writeHere is wake for the connection's own reader: the writer, if it does
// not run, runs on the caller's goroutine. Only without a store: there a
// batch waits for its fsync before it is written, and the reader must go on
// reading meanwhile, so that the next fsync covers more messages.
func (c *conn) writeHere() {
	if c.srv.dur.st != nil {
		c.wake()
		return
	}
	if c.claimWriter() {
		c.writeLoop()
	}
}

// maxOutgoing bounds the packets a connection's session has waiting for
// its writer before its reader pauses (awaitWriter): every PINGREQ, QoS 1 or
// 2 PUBLISH and PUBREL a client sends queues an answer, and a client that
// sends them without reading what it is sent would otherwise make the
// broker queue answers without end (2.7 GB in 15 s of PINGREQs). A client
// that reads never comes near it: its answers leave with each batch.
const maxOutgoing = 4096

// awaitWriter runs the writer, or, while it runs on another goroutine,
// waits until it has taken what the session has waiting (or ended): the
// reader reads on only as fast as the writer writes. A client that does not
// read then holds its own writes back, until WriteTimeout ends the
// connection.
func (c *conn) awaitWriter() {
	c.router.flushWakes(c)
	c.wmu.Lock()
	if !c.wrunning || c.wclosed {
		c.wmu.Unlock()
		return
	}
	ch := c.nextTake()
	c.wmu.Unlock()
	<-ch
}

// nextTake returns the channel the running writer closes when it next takes
// the session's packets, or ends. c.wmu is held.
func (c *conn) nextTake() chan struct{} {
	if c.wnext == nil {
		c.wnext = make(chan struct{})
	}
	return c.wnext
}

// tookOut closes wnext, if set. c.wmu is held.
func (c *conn) tookOut() {
	if c.wnext != nil {
		close(c.wnext)
		c.wnext = nil
	}
}

// claimWriter reports whether the caller must run the writer: it did not
// run and may start. Otherwise the running writer flushes once more.
func (c *conn) claimWriter() bool {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	switch {
	case c.wclosed:
	case c.wrunning:
		c.wagain = true
	default:
		c.wrunning = true
		c.srv.wg.Add(1) // the reader's own count keeps wg above zero here
		return true
	}
	return false
}

// stopWriter keeps writers from starting and waits for the running one to
// end.
func (c *conn) stopWriter() {
	c.wmu.Lock()
	c.wclosed = true
	for c.wrunning {
		ch := c.nextTake()
		c.wmu.Unlock()
		<-ch
		c.wmu.Lock()
	}
	c.wmu.Unlock()
}

// writeLoop writes what the session has waiting, until a flush leaves
// nothing behind.
func (c *conn) writeLoop() {
	defer c.srv.wg.Done()
	for {
		err := c.flush()
		c.wmu.Lock()
		if err == nil && c.wagain && !c.wclosed {
			c.wagain = false
			c.wmu.Unlock()
			continue
		}
		c.wrunning, c.wagain = false, false
		if err != nil {
			c.wclosed = true
			if c.werr == nil {
				c.werr = err
			}
		}
		c.tookOut() // wakes the waiters for its end too
		c.wmu.Unlock()
		if err != nil {
			// Closing the connection ends the reader, which then
			// cleans up.
			c.closeNet()
			c.unpark()
		} else {
			c.shrinkIfParked()
		}
		return
	}
}

// flush writes out every packet the session has waiting, in batches: one
// write per batch, in a buffer borrowed for the time of the writes.
func (c *conn) flush() error {
	s := c.srv
	cl := c.cl
	var bp *writeBuf
	defer func() {
		if bp != nil {
			s.putBuf(bp)
		}
	}()
	for {
		now := time.Now()
		c.lockOut()
		if cl.ret != nil {
			s.refillRetained(cl)
		}
		if !cl.sess.HasOutgoing() {
			c.unlockOut()
			return nil
		}
		if bp == nil {
			bp = s.getBuf()
		}
		buf, err := cl.sess.AppendOutgoingMax(bp.b[:0], maxBatch, now)
		mark := c.syncMark()
		c.unlockOut()
		c.wmu.Lock()
		c.tookOut()
		c.wmu.Unlock()
		bp.b = buf
		if err != nil {
			return err
		}
		if len(buf) == 0 {
			return nil
		}
		nc, rc, gen, err := c.netConn() // made again if c was detached while parked
		if err != nil {
			return err
		}
		if gen != c.wgen {
			c.wgen, c.wdeadline = gen, 0
		}
		// What the batch acknowledges is durable before it leaves, the
		// fsync outside the session's lock (see durable).
		if err := s.dur.syncTo(mark); err != nil {
			return err
		}
		if n, err := c.writeOut(nc, rc, &bp.raw, buf, now); err != nil {
			// Its QoS 1 and 2 messages stay in flight in the session;
			// its QoS 0 ones not written whole are lost.
			sent := wholePackets(buf, n)
			s.traffic.countOut(buf[:sent])
			c.wlost += countQoS0(buf[sent:])
			return err
		}
		s.traffic.countOut(buf)
	}
}

// maxBatch bounds a batch, one packet at least: a writer then holds at most
// that much of its session's messages (or one message) in its buffer, which
// the pool takes back, not another copy of all of them (up to 20 in flight
// of 16 MiB each, for every subscriber of a large message at once).
const maxBatch = 128 << 10

// writeChunk is the most writeOut writes under one deadline: a client
// that takes less than WriteTimeout/2 for each chunk (64 KiB in 15 s with
// the default, about 4 KB/s) is making progress.
const writeChunk = 64 << 10

// writeOut writes a batch taken at now. With a WriteTimeout it goes a
// chunk at a time, so that the deadline bounds a time without progress,
// as WriteTimeout says, and not the time a large batch takes a client that
// reads it slowly but steadily (16 MiB queued, read at 100 KB/s, takes
// minutes). The deadline moves at most once per half period, which keeps
// each chunk at least half of it without a timer update per batch.
func (c *conn) writeOut(nc net.Conn, rc syscall.RawConn, w *rawio.Writer, buf []byte, now time.Time) (int, error) {
	wt := c.srv.opts.WriteTimeout
	if wt <= 0 {
		return writeNet(nc, rc, w, buf)
	}
	written := 0
	for {
		if at := now.Sub(c.srv.sys.start); c.wdeadline == 0 || at-c.wdeadline > wt/2 {
			nc.SetWriteDeadline(now.Add(wt))
			c.wdeadline = at
		}
		end := min(len(buf), written+writeChunk)
		n, err := writeNet(nc, rc, w, buf[written:end])
		written += n
		if err != nil || written == len(buf) {
			return written, err
		}
		now = time.Now()
	}
}
