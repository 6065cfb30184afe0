//go:build !linux

package broker

import (
	"net"
	"syscall"
	"time"
)

// Outside Linux every connection keeps its reading goroutine while idle.

type parking struct{}

func (pk *parking) init(c *conn)     {}
func (pk *parking) forget(s *Server) {}
func (pk *parking) busy()            {}
func (c *conn) unpark()              {}
func (c *conn) shrinkIfParked()      {}
func (c *conn) idleRead() (int, error, bool) {
	n, err := (*connReader)(c).Read(c.router.idle[:])
	return n, err, false
}

// Outside Linux a pausing reader's socket wakes the runtime's poller as
// bytes come (see lowat_linux.go).
func (c *conn) raiseLowat()                            {}
func (c *conn) readRaised(p []byte) (int, error, bool) { return 0, nil, false }
func (c *conn) readAcks(p []byte) (int, error, bool)   { return 0, nil, false }

// linger is the Linux connection's wait before parking; elsewhere the
// reader waits in idleRead.
func (c *conn) linger() bool { return false }

type poller struct{}

func (p *poller) stop() {}

// raw is nil: connections are read and written with their net.Conn (see
// rawio.go).
func (pk *parking) raw() syscall.RawConn { return nil }

func (c *conn) netConn() (net.Conn, syscall.RawConn, uint32, error) { return c.nc, nil, 0, nil }
func (c *conn) closeNet()                                           { c.nc.Close() }
func (c *conn) interruptRead()                                      { c.nc.SetReadDeadline(time.Unix(1, 0)) }
