package lowat

import (
	"syscall"

	"github.com/ternmq/mqtt/internal/rawio"
)

const supported = true

// raise raises the socket's SO_RCVLOWAT: to Max, or a quarter of its
// receive buffer if that is less. It returns the mark, 0 if it failed.
func raise(rc syscall.RawConn) (int, error) {
	var n int
	var err error
	if cerr := rc.Control(func(fd uintptr) { n, err = raiseFD(fd) }); cerr != nil {
		return 0, cerr
	}
	return n, err // raiseFD returns 0 with any error
}

// The options are read and set with raw calls (package rawio), as the reads
// around them are.
func raiseFD(fd uintptr) (int, error) {
	buf, err := rawio.GetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_RCVBUF)
	if err != nil {
		return 0, err
	}
	n := min(Max, buf/4)
	if n < 2 {
		return 0, syscall.ENOBUFS // a mark of 1 is no mark
	}
	// A mark that the kernel thinks the buffer too small for (it judges
	// by the overhead of the packets received so far) makes it grow the
	// buffer and clamp the receive window to the mark, for good. The
	// window is put back then: a clamp would cap the connection's
	// throughput long after the pause.
	clamp, err := rawio.GetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_WINDOW_CLAMP)
	if err != nil {
		return 0, err
	}
	if err := rawio.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_RCVLOWAT, n); err != nil {
		return 0, err
	}
	// The mark is raised, whatever comes of this: the caller must lower it.
	if now, err := rawio.GetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_WINDOW_CLAMP); err == nil && now < clamp {
		rawio.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_WINDOW_CLAMP, clamp)
	}
	return n, nil
}

// set sets the socket's SO_RCVLOWAT to n. Setting it back to 1, its
// default, also signals the bytes waiting.
func set(rc syscall.RawConn, n int) error {
	var err error
	if cerr := rc.Control(func(fd uintptr) {
		err = rawio.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_RCVLOWAT, n)
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
