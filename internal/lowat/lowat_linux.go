package lowat

import (
	"syscall"

	"github.com/ternmq/mqtt/internal/rawio"
)

const supported = true

// raise raises the socket's SO_RCVLOWAT: to Max, or a quarter of its
// receive buffer if that is less.
func raise(rc syscall.RawConn) error {
	var err error
	if cerr := rc.Control(func(fd uintptr) { err = raiseFD(fd) }); cerr != nil {
		return cerr
	}
	return err
}

// The options are read and set with raw calls (package rawio), as the reads
// around them are.
func raiseFD(fd uintptr) error {
	buf, err := rawio.GetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_RCVBUF)
	if err != nil {
		return err
	}
	n := min(Max, buf/4)
	if n < 2 {
		return syscall.ENOBUFS // a mark of 1 is no mark
	}
	// A mark that the kernel thinks the buffer too small for (it judges
	// by the overhead of the packets received so far) makes it grow the
	// buffer and clamp the receive window to the mark, for good. The
	// window is put back then: a clamp would cap the connection's
	// throughput long after the pause.
	clamp, err := rawio.GetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_WINDOW_CLAMP)
	if err != nil {
		return err
	}
	if err := rawio.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_RCVLOWAT, n); err != nil {
		return err
	}
	// The mark is raised, whatever comes of this: the caller must lower it.
	if now, err := rawio.GetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_WINDOW_CLAMP); err == nil && now < clamp {
		rawio.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_WINDOW_CLAMP, clamp)
	}
	return nil
}

// lower sets the socket's SO_RCVLOWAT back to 1, its default, which also
// signals the bytes waiting.
func lower(rc syscall.RawConn) error {
	var err error
	if cerr := rc.Control(func(fd uintptr) {
		err = rawio.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_RCVLOWAT, 1)
	}); cerr != nil {
		return cerr
	}
	return err
}

// Mark returns the socket's SO_RCVLOWAT.
func Mark(rc syscall.RawConn) (int, error) {
	var v int
	var err error
	if cerr := rc.Control(func(fd uintptr) {
		v, err = rawio.GetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_RCVLOWAT)
	}); cerr != nil {
		return 0, cerr
	}
	return v, err
}
