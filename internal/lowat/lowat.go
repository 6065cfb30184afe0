// Package lowat holds back the wake-ups of a TCP socket whose reader pauses
// between reads, as the client's and the broker's readers do (see package
// pace).
//
// The Go runtime watches every socket, edge-triggered, whether a goroutine
// waits on it or not, so while a reader pauses, each packet that arrives
// wakes a thread in the runtime's poller for nothing. On a busy connection
// those thread switches cost more than the reads that pausing saves. So a
// reader raises the socket's receive low-water mark (SO_RCVLOWAT) before a
// pause: the kernel then signals readiness only once that many bytes wait, the
// receive buffer runs short or the peer closes; the read after the pause
// takes what came without waiting, and if nothing came, lowers the mark
// before it waits in the poller. Lowering the mark signals the bytes
// already there, so none is missed. Only on Linux; elsewhere nothing is
// raised.
package lowat

import (
	"net"
	"syscall"

	"github.com/ternmq/mqtt/internal/rawio"
)

// Max is the highest mark: a pause that gathers more wakes the poller once,
// to no harm. Under it, the mark is kept to a quarter of the socket's
// receive buffer, so that the kernel neither grows the buffer nor clamps the
// receive window for it.
const Max = 64 << 10

// State is whether a socket's mark is raised, and to what, for a reader
// whose net.Conn may be made again under it (the broker's, after a
// detach); Reader holds one for a fixed connection. Its methods are for one
// goroutine.
type State struct{ mark int } // 0: not raised

// Raised reports whether the mark is raised.
func (s *State) Raised() bool { return s.mark > 0 }

// Raise raises the mark of rc's socket for a pause, if it can and it is not
// raised already.
func (s *State) Raise(rc syscall.RawConn) {
	if s.mark == 0 {
		s.mark, _ = raise(rc)
	}
}

// RaiseTo sets the mark of rc's socket to n bytes, for a reader that knows
// how much it waits for (the broker, for acknowledgements); n is at least 2
// and small beside the receive buffer (a few KiB at most), so that the
// kernel has no cause to clamp the receive window, as Raise must watch
// for. Setting the mark it has already costs nothing.
func (s *State) RaiseTo(rc syscall.RawConn, n int) error {
	if s.mark == n {
		return nil
	}
	if err := set(rc, n); err != nil {
		return err
	}
	s.mark = n
	return nil
}

// Lower lowers the mark again, if raised. An error leaves the socket unable
// to wake a waiting read: the caller ends the connection with it.
func (s *State) Lower(rc syscall.RawConn) error {
	if s.mark == 0 {
		return nil
	}
	s.mark = 0
	return set(rc, 1)
}

// Read is the read after a pause: with the mark raised, what the socket
// holds, without waiting. It reports false, having lowered the mark, when
// the socket holds nothing (or the mark was not raised): the caller then
// waits for bytes in the runtime's poller. It reads with raw, the
// caller's.
func (s *State) Read(rc syscall.RawConn, raw *rawio.Reader, p []byte) (int, error, bool) {
	if s.mark == 0 {
		return 0, nil, false
	}
	n, err, empty := raw.ReadNow(rc, p)
	if !empty {
		return n, err, true
	}
	if err := s.Lower(rc); err != nil {
		return 0, err, true
	}
	return 0, nil, false
}

// Reader reads a connection for a reader that pauses: Raise before a pause,
// and the next Read takes what came without waiting, or lowers the mark and
// waits. Its methods are for one goroutine.
type Reader struct {
	nc   net.Conn
	rc   syscall.RawConn // nil: the mark is never raised
	mark State
	raw  rawio.Reader
}

// NewReader returns a Reader of nc. Only a plain TCP connection has its mark
// raised; others are read as they are.
func NewReader(nc net.Conn) *Reader {
	r := &Reader{nc: nc}
	if tc, ok := nc.(*net.TCPConn); ok && supported {
		if rc, err := tc.SyscallConn(); err == nil {
			r.rc = rc
		}
	}
	return r
}

// Raise raises the mark for a pause, if it can.
func (r *Reader) Raise() {
	if r.rc != nil {
		r.mark.Raise(r.rc)
	}
}

// Read reads into p: with the mark raised, what the socket holds without
// waiting, or, if it holds nothing, it lowers the mark and waits as
// net.Conn.Read does.
func (r *Reader) Read(p []byte) (int, error) {
	if n, err, ok := r.mark.Read(r.rc, &r.raw, p); ok {
		return n, err
	}
	return r.nc.Read(p)
}
