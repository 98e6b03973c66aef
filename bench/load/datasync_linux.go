package main

import (
	"os"
	"syscall"
)

// datasync flushes f's data and size, not its timestamps, as posthorn's
// spool does.
func datasync(f *os.File) error { return syscall.Fdatasync(int(f.Fd())) }
