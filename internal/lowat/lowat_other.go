//go:build !linux

package lowat

import (
	"errors"
	"syscall"
)

const supported = false

func raise(rc syscall.RawConn) (int, error) { return 0, errors.ErrUnsupported }
func set(rc syscall.RawConn, n int) error   { return errors.ErrUnsupported }

// Mark is not supported outside Linux.
func Mark(rc syscall.RawConn) (int, error) { return 0, errors.ErrUnsupported }
