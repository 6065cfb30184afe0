// Package dirsync makes the entries of a directory durable: after a file is
// created, renamed or removed, the file's own fsync does not cover the
// directory entry that names it.
package dirsync

import "os"

// Sync fsyncs the directory dir.
func Sync(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
