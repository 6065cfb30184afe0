//go:build !unix

package idleconn

import "errors"

// RaiseFileLimit is not supported outside Unix systems.
func RaiseFileLimit(n uint64) error {
	return errors.New("idleconn: no file limit to raise on this system")
}
