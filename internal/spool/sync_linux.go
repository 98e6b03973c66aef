package spool

import (
	"errors"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// fdatasync flushes f's data and the metadata needed to read it back (its
// size and blocks), but not its timestamps: an overwrite inside the file
// then costs a data write and a cache flush, not a journal commit.
func fdatasync(f *os.File) error {
	return fdCall(f, "fdatasync", syscall.Fdatasync)
}

// writeOut starts writing f's first n octets to the disk and waits until
// the device has them, without flushing its cache (sync_file_range): the
// next fsync of anything on the file system, which flushes the cache,
// makes them durable. No journal commit.
func writeOut(f *os.File, n int64) error {
	return fdCall(f, "sync_file_range", func(fd int) error {
		return unix.SyncFileRange(fd, 0, n, unix.SYNC_FILE_RANGE_WAIT_BEFORE|unix.SYNC_FILE_RANGE_WRITE|unix.SYNC_FILE_RANGE_WAIT_AFTER)
	})
}

// startWriteOut starts writing f's first n octets to the disk and returns
// at once (sync_file_range without waiting): a batch's writes started
// together reach the device together, and writeOut then only waits.
func startWriteOut(f *os.File, n int64) error {
	return fdCall(f, "sync_file_range", func(fd int) error {
		return unix.SyncFileRange(fd, 0, n, unix.SYNC_FILE_RANGE_WRITE)
	})
}

// fdCall runs the system call call on f's descriptor, again after EINTR.
func fdCall(f *os.File, op string, call func(fd int) error) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		for {
			serr = call(int(fd))
			if !errors.Is(serr, syscall.EINTR) {
				return
			}
		}
	}); err != nil {
		return err
	}
	if serr != nil {
		return &os.PathError{Op: op, Path: f.Name(), Err: serr}
	}
	return nil
}

// renameNoReplace renames old to new unless new exists (fs.ErrExist).
func renameNoReplace(oldpath, newpath string) error {
	err := unix.Renameat2(unix.AT_FDCWD, oldpath, unix.AT_FDCWD, newpath, unix.RENAME_NOREPLACE)
	if err != nil {
		return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: err}
	}
	return nil
}

// openFile is os.OpenFile for message files without the poller: os.OpenFile
// tries to register every file with epoll (which refuses regular files)
// and switches it between blocking modes on the way, five system calls
// more per open; the spool opens three or four files per message.
func openFile(name string, flag int, perm os.FileMode) (*os.File, error) {
	for {
		fd, err := syscall.Open(name, flag|syscall.O_CLOEXEC, uint32(perm.Perm()))
		if err == nil {
			return os.NewFile(uintptr(fd), name), nil
		}
		if !errors.Is(err, syscall.EINTR) {
			return nil, &os.PathError{Op: "open", Path: name, Err: err}
		}
	}
}
