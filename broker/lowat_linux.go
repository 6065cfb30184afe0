package broker

import "syscall"

// While a connection's reader pauses between reads (Options.BatchDelay), the
// bytes arriving meanwhile would still wake the Go runtime's poller, once
// per packet: the runtime watches every socket, edge-triggered, whether a
// goroutine waits on it or not. On a busy broker those wake-ups, a thread
// switch each, cost more than the reads that pausing saves. So while it
// pauses, a TCP connection raises its socket's receive low-water mark
// (SO_RCVLOWAT): the kernel then signals readiness only once raisedLowat
// bytes wait, the receive buffer runs short or the peer closes, and the
// read after the pause takes what came without waiting. Before any read that
// may wait in a poller the mark comes down again; lowering it signals the
// bytes already there.

// raisedLowat is the mark while pausing: a pause that gathers more wakes the
// poller once, to no harm. It is far under the receive buffer, so that the
// kernel neither grows the buffer nor clamps the window for it.
const raisedLowat = 16 << 10

// raiseLowat raises the mark of a TCP connection about to pause.
func (c *conn) raiseLowat() {
	pk := &c.pk
	if !pk.tcp || pk.raised || pk.rc == nil {
		return
	}
	pk.raised = setLowat(pk.rc, raisedLowat) == nil
}

// lowerLowat lowers the mark again, if raised. An error leaves the socket
// unable to wake its reader: the connection ends with it.
func (c *conn) lowerLowat() error {
	pk := &c.pk
	if !pk.raised {
		return nil
	}
	pk.raised = false
	return setLowat(pk.rc, 1)
}

// readRaised is the read after a pause with the mark raised: what the socket
// holds, without waiting. It reports false, having lowered the mark, when
// the socket holds nothing (or the mark was not raised): the caller then
// waits for bytes in the runtime's poller.
func (c *conn) readRaised(p []byte) (int, error, bool) {
	if !c.pk.raised {
		return 0, nil, false
	}
	n, err, empty := c.tryRead(p)
	if !empty {
		return n, err, true
	}
	if err := c.lowerLowat(); err != nil {
		return 0, err, true
	}
	return 0, nil, false
}

func setLowat(rc syscall.RawConn, n int) error {
	var err error
	if cerr := rc.Control(func(fd uintptr) {
		err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVLOWAT, n)
	}); cerr != nil {
		return cerr
	}
	return err
}
