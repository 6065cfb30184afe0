//go:build !linux

package lowat

import (
	"errors"
	"syscall"
)

const supported = false

// Set is not supported outside Linux.
func Set(rc syscall.RawConn, n int) error { return errors.ErrUnsupported }

// ReadNow reports every socket empty outside Linux: the caller waits.
func ReadNow(rc syscall.RawConn, p []byte) (n int, err error, empty bool) { return 0, nil, true }
