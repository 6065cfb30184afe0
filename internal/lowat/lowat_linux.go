package lowat

import (
	"errors"
	"io"
	"os"
	"syscall"
)

const supported = true

// Raise raises the socket's SO_RCVLOWAT: to Max, or a quarter of its
// receive buffer if that is less.
func Raise(rc syscall.RawConn) error {
	var err error
	if cerr := rc.Control(func(fd uintptr) {
		var buf int
		if buf, err = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF); err != nil {
			return
		}
		n := min(Max, buf/4)
		if n < 2 {
			err = syscall.ENOBUFS // a mark of 1 is no mark
			return
		}
		err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVLOWAT, n)
	}); cerr != nil {
		return cerr
	}
	return err
}

// Lower sets the socket's SO_RCVLOWAT back to 1, its default, which also
// signals the bytes waiting.
func Lower(rc syscall.RawConn) error {
	var err error
	if cerr := rc.Control(func(fd uintptr) {
		err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVLOWAT, 1)
	}); cerr != nil {
		return cerr
	}
	return err
}

// ReadNow reads what the socket holds into p without waiting in the
// runtime's poller; empty reports that it holds nothing, or that the read
// deadline has passed (a read that may wait reports it).
func ReadNow(rc syscall.RawConn, p []byte) (n int, err error, empty bool) {
	var rerr error
	if cerr := rc.Read(func(fd uintptr) bool {
		n, rerr = syscall.Read(int(fd), p)
		return true // never wait
	}); cerr != nil {
		if errors.Is(cerr, os.ErrDeadlineExceeded) {
			return 0, nil, true
		}
		return 0, cerr, false
	}
	switch {
	case rerr == syscall.EAGAIN || rerr == syscall.EINTR:
		return 0, nil, true
	case rerr != nil:
		return 0, rerr, false
	case n == 0:
		return 0, io.EOF, false
	}
	return n, nil, false
}
