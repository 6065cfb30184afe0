package broker

import (
	"net"
	"os"
	"syscall"

	"github.com/ternmq/mqtt/internal/rawio"
)

// A connection that can park (plain TCP and Unix, on Linux) is read and
// written with raw system calls (package rawio): a net.Conn's calls wake
// the runtime's monitor thread whenever the broker comes out of idle,
// which a broker whose publishers each send a packet at a time does per
// packet. The others use their net.Conn.

// readNet reads from c's connection; only the reader calls it.
func (c *conn) readNet(p []byte) (int, error) {
	rc := c.pk.raw()
	if rc == nil {
		return c.nc.Read(p)
	}
	n, err := c.router.raw.Read(rc, p)
	return n, opError("read", c.nc, err)
}

// writeNet writes buf to nc, with w when rc, nc's raw connection, is not
// nil.
func writeNet(nc net.Conn, rc syscall.RawConn, w *rawio.Writer, buf []byte) (int, error) {
	if rc == nil {
		return nc.Write(buf)
	}
	n, err := w.Write(rc, buf)
	return n, opError("write", nc, err)
}

// opError gives a failed system call the form a net.Conn's error has, with
// the connection's addresses; other errors (io.EOF, a passed deadline, a
// closed connection) come as they are.
func opError(op string, nc net.Conn, err error) error {
	if _, ok := err.(*os.SyscallError); !ok {
		return err
	}
	return &net.OpError{Op: op, Net: nc.LocalAddr().Network(), Source: nc.LocalAddr(), Addr: nc.RemoteAddr(), Err: err}
}

// writeBuf is a write buffer lent for a batch, with the scratch of its raw
// writes: an idle connection holds neither.
type writeBuf struct {
	b   []byte
	raw rawio.Writer
}
