//go:build !linux

package spool

import "os"

// fdatasync is fsync where fdatasync(2) is not available.
func fdatasync(f *os.File) error { return f.Sync() }

// renameNoReplace renames old to new unless new exists (fs.ErrExist):
// a hard link, which fails on an existing name, then the unlink.
func renameNoReplace(oldpath, newpath string) error {
	if err := os.Link(oldpath, newpath); err != nil {
		return err
	}
	return os.Remove(oldpath)
}

// openFile is os.OpenFile (see the Linux version).
func openFile(name string, flag int, perm os.FileMode) (*os.File, error) {
	return os.OpenFile(name, flag, perm)
}

// writeOut makes f's first n octets durable (see the Linux version, which
// only writes them out).
func writeOut(f *os.File, n int64) error { return fdatasync(f) }

// startWriteOut does nothing here: writeOut does it all.
func startWriteOut(f *os.File, n int64) error { return nil }
