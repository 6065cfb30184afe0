package broker

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
	n, err, ok := c.pk.mark.Read(c.pk.rc, &c.router.raw, p)
	if n > 0 {
		c.srv.traffic.bytesIn.Add(int64(n))
	}
	return n, err, ok
}
