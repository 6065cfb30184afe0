//go:build !linux

package broker

// Outside Linux every connection keeps its reading goroutine while idle.

type parking struct{}

func (pk *parking) init(c *conn)     {}
func (pk *parking) forget(s *Server) {}
func (c *conn) unpark()              {}
func (c *conn) shrinkIfParked()      {}
func (c *conn) idleRead() (int, error, bool) {
	n, err := (*connReader)(c).Read(c.router.idle[:])
	return n, err, false
}

type poller struct{}

func (p *poller) stop() {}
