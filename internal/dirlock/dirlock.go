// Package dirlock keeps a directory of durable state to one opener at a
// time, with an advisory lock on a file in it (flock, where the system has
// it): the server's store and a client's session store each use one.
package dirlock

import "errors"

// ErrLocked is returned by Lock when the file is locked already.
var ErrLocked = errors.New("dirlock: locked by another opener")
