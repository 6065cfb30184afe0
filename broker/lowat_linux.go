package broker

import (
	"errors"
	"os"
	"time"
)

// While a TCP connection's reader pauses between reads (Options.BatchDelay),
// its socket's receive low-water mark is raised, so that the bytes arriving
// meanwhile do not wake the runtime's poller once per packet (see package
// lowat). The mark is kept in c.pk, with the connection's net.Conn, which is
// made again after each detach.

// raiseLowat raises the mark of a TCP connection about to pause.
func (c *conn) raiseLowat() {
	if pk := &c.pk; pk.tcp && pk.rc != nil {
		pk.mark.Raise(pk.rc)
	}
}

// lowerLowat lowers the mark again, if raised. A raised mark means an
// attached connection, whose c.pk.rc the writer leaves alone; otherwise
// c.pk.rc is not the reader's to read without c.pk.mu.
func (c *conn) lowerLowat() error {
	if !c.pk.mark.Raised() {
		return nil
	}
	return c.pk.mark.Lower(c.pk.rc)
}

// readRaised is the read after a pause (lowat.State.Read), if the mark is
// raised.
func (c *conn) readRaised(p []byte) (int, error, bool) {
	if !c.pk.mark.Raised() {
		return 0, nil, false
	}
	return c.pk.mark.Read(c.pk.rc, &c.router.raw, p)
}

// readAcks is the read of a connection with several messages in flight to
// its client: rather than wake for each acknowledgement as it comes, it
// waits, once the socket is empty, with the mark raised to the bytes of half
// of them (each PUBACK, PUBREC or PUBCOMP is 4 bytes), up to
// Options.BatchDelay. If the window (MaxInflight) is full, the other half
// keeps the client busy meanwhile, and the messages the gathered
// acknowledgements let through go out in one write; if it is not, no
// message waits for them. Anything else the client sends arrives with
// them, or at the latest after BatchDelay.
//
// A wait that runs out takes what came meanwhile. A client that
// acknowledges slowly would make every wait run out with less than two
// acknowledgements come, a timer's wake-up and two system calls more per
// acknowledgement; so after such a wait the next reads do not wait: 1,
// then 3, 7 and up to 63 of them after each further one in a row.
//
// It reports false when it did not read: fewer than ackGatherMin messages
// are in flight, the connection cannot raise its mark, does not pace or is
// pausing (a fast publisher's pause gathers its acknowledgements too), the
// last waits ran out with little come, or nothing came by the deadline (the
// mark lowered: the caller waits for any byte).
func (c *conn) readAcks(p []byte) (int, error, bool) {
	pk := &c.pk
	delay := c.srv.opts.BatchDelay
	r := c.router
	if !pk.tcp || pk.rc == nil || c.cl == nil || delay <= 0 || (c.pr != nil && c.pr.r.Buffered() > 0) ||
		r.paceOn && r.pace.Pausing() { // the pause gathers the acknowledgements too
		return 0, nil, false
	}
	if r.ackSkip > 0 {
		r.ackSkip--
		return 0, nil, false
	}
	cl := c.cl
	cl.mu.Lock()
	in := cl.sess.Inflight()
	d := cl.sess.Deadline()
	cl.mu.Unlock()
	if in < ackGatherMin {
		return 0, nil, false
	}
	if pk.mark.RaiseTo(pk.rc, 4*min(in/2, ackGatherMax)) != nil {
		return 0, nil, false // the read that follows meets what is wrong
	}
	if r.lingering {
		d = r.lingerUntil
	}
	// Not past the deadline already set. A Shutdown that comes between
	// setting a deadline and looking at c.stop sets its own after ours
	// (see shutdown).
	until := time.Now().Add(delay)
	if !d.IsZero() && d.Before(until) {
		until = d
	}
	c.nc.SetReadDeadline(until)
	if c.stop.Load() != running {
		return 0, errShutdown, true
	}
	n, err := r.raw.Read(pk.rc, p)
	c.nc.SetReadDeadline(d)
	if c.stop.Load() != running {
		c.nc.SetReadDeadline(time.Unix(1, 0)) // the next read ends at once
	}
	if n == 0 && errors.Is(err, os.ErrDeadlineExceeded) {
		// The wait ran out: take what came meanwhile. Less than two
		// acknowledgements' worth means a client slow to acknowledge.
		var empty bool
		n, err, empty = r.raw.ReadNow(pk.rc, p)
		if n < 8 {
			r.ackMisses = min(r.ackMisses+1, ackMaxMisses)
			r.ackSkip = 1<<r.ackMisses - 1
		} else {
			r.ackMisses = 0
		}
		if empty {
			// Nothing: wait in the poller, for any byte.
			if err := pk.mark.Lower(pk.rc); err != nil {
				return 0, err, true
			}
			return 0, nil, false
		}
	} else {
		r.ackMisses = 0
	}
	if r.lingering {
		// As connReader.Read after any read that brought something.
		r.lingering = false
		pk.busy()
	}
	return n, opError("read", c.nc, err), true
}

// ackGatherMin is the fewest messages in flight that readAcks waits for half
// of; ackGatherMax bounds the half, so that the mark stays a few hundred
// bytes, far below any receive buffer. After ackMaxMisses waits in a row
// that ran out with little come, readAcks waits once every 2^ackMaxMisses
// reads.
const (
	ackGatherMin = 4
	ackGatherMax = 128
	ackMaxMisses = 6
)
