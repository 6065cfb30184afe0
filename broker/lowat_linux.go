package broker

import "github.com/ternmq/mqtt/internal/lowat"

// While a TCP connection's reader pauses between reads (Options.BatchDelay),
// its socket's receive low-water mark is raised, so that the bytes arriving
// meanwhile do not wake the runtime's poller once per packet (see package
// lowat). The connection keeps its own state, rather than a lowat.Reader,
// since its net.Conn is made again after each detach.

// raiseLowat raises the mark of a TCP connection about to pause.
func (c *conn) raiseLowat() {
	pk := &c.pk
	if !pk.tcp || pk.raised || pk.rc == nil {
		return
	}
	pk.raised = lowat.Raise(pk.rc) == nil
}

// lowerLowat lowers the mark again, if raised. An error leaves the socket
// unable to wake its reader: the connection ends with it.
func (c *conn) lowerLowat() error {
	pk := &c.pk
	if !pk.raised {
		return nil
	}
	pk.raised = false
	return lowat.Lower(pk.rc)
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
