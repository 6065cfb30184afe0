package broker

import (
	"net"
	"os"
	"syscall"
	"time"
)

// busy records that bytes were read or written, which puts off detaching
// by detachAfter; a connection that never detached detaches when it first
// parks.
func (pk *parking) busy() {
	if pk.since.Load() != 0 {
		pk.since.Store(time.Now().UnixNano())
	}
}

// detach gives back the net.Conn of a connection about to park, keeping a
// duplicate of its socket's descriptor, if it has been idle long enough
// (detachAfter) and no writer runs. It reports whether c is detached. Only
// the reader calls it, with c.pk.mu held.
func (c *conn) detach() bool {
	pk := &c.pk
	if c.nc == nil {
		return true
	}
	if pk.closed || pk.rc == nil || time.Now().UnixNano()-pk.since.Load() < int64(detachAfter) {
		return false
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.wrunning || c.wclosed {
		return false // the writer uses c.nc
	}
	fd := -1
	var err error
	cerr := pk.rc.Control(func(s uintptr) {
		if pk.added {
			c.srv.park.del(int(s))
		}
		fd, err = dupCloexec(int(s))
	})
	if cerr != nil || err != nil {
		return false
	}
	// Closing the net.Conn closes its descriptor only: the socket stays
	// open through fd.
	c.nc.Close()
	c.nc, pk.rc = nil, nil
	pk.fd, pk.added = int32(fd), false
	return true
}

func dupCloexec(fd int) (int, error) {
	r, _, e := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_DUPFD_CLOEXEC, 0)
	if e != 0 {
		return -1, e
	}
	return int(r), nil
}

// attach makes a net.Conn for the socket of a detached connection. c.pk.mu
// is held.
func (c *conn) attach() error {
	pk := &c.pk
	if c.nc != nil {
		return nil
	}
	if pk.closed {
		return net.ErrClosed
	}
	armed := pk.added
	if armed {
		c.srv.park.del(int(pk.fd))
		pk.added = false
	}
	f := os.NewFile(uintptr(pk.fd), "")
	nc, err := net.FileConn(f) // a duplicate of the descriptor
	f.Close()
	pk.fd = -1
	var rc syscall.RawConn
	if err == nil {
		if sc, ok := nc.(syscall.Conn); ok {
			rc, err = sc.SyscallConn()
		} else {
			err = syscall.EINVAL
		}
		if err != nil {
			nc.Close()
		}
	}
	if err != nil {
		pk.closed = true
		return err
	}
	// The keepalive bounds the wait for the rest of a packet (connReader).
	c.cl.mu.Lock()
	d := c.cl.sess.Deadline()
	c.cl.mu.Unlock()
	if c.stop.Load() != running {
		d = time.Unix(1, 0) // as shutdown does
	}
	nc.SetReadDeadline(d)
	c.nc, pk.rc = nc, rc
	pk.since.Store(time.Now().UnixNano())
	pk.gen++
	if armed && pk.state.Load() == parked {
		// The writer attached a parked connection: the poller watches
		// the new descriptor, and wakes the reader to detach again.
		due := time.Unix(0, pk.since.Load()+int64(detachAfter))
		if !d.IsZero() && d.Before(due) {
			due = d
		}
		if err := c.srv.park.arm(c, due); err != nil {
			c.nc.Close()
			pk.closed = true // the reader, unparked, sees the error
			c.unpark()
			return err
		}
	}
	return nil
}

// attachReader gives the reader a net.Conn again, if c is detached.
func (c *conn) attachReader() error {
	c.pk.mu.Lock()
	defer c.pk.mu.Unlock()
	return c.attach()
}

// netConn returns c's net.Conn for the writer, made again if c is detached,
// its raw connection, and its generation: a new one has no write deadline
// yet.
func (c *conn) netConn() (net.Conn, syscall.RawConn, uint32, error) {
	c.pk.mu.Lock()
	defer c.pk.mu.Unlock()
	if err := c.attach(); err != nil {
		return nil, nil, 0, err
	}
	return c.nc, c.pk.rc, c.pk.gen, nil
}

// closeNet closes c's connection, attached or not.
func (c *conn) closeNet() {
	pk := &c.pk
	pk.mu.Lock()
	defer pk.mu.Unlock()
	pk.closed = true
	if c.nc != nil {
		c.nc.Close()
		return
	}
	if pk.fd >= 0 {
		if pk.added {
			c.srv.park.del(int(pk.fd))
			pk.added = false
		}
		syscall.Close(int(pk.fd))
		pk.fd = -1
	}
}

// interruptRead makes a read of c's connection return at once; a detached
// connection has no read under way, and attach looks at c.stop.
func (c *conn) interruptRead() {
	c.pk.mu.Lock()
	if c.nc != nil {
		c.nc.SetReadDeadline(time.Unix(1, 0))
	}
	c.pk.mu.Unlock()
}
