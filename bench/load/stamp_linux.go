package main

import (
	"io"
	"net"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// stampReader reads a TCP connection with recvmsg and keeps the kernel's
// receive timestamp (SO_TIMESTAMPNS) of the last segment each read
// consumed: when a reply reached the client's socket, whatever the
// client's own scheduling delay before it read it. On one machine under
// saturation that delay is the load generator waiting for a CPU, not
// the server's latency.
type stampReader struct {
	rc   syscall.RawConn
	oob  []byte
	last time.Time // the receive time of the newest octets read; zero if the kernel gave none
}

// newStampReader turns on receive timestamps on c. It fails where the
// kernel does not offer them; the caller then times with its own clock.
func newStampReader(c net.Conn) (*stampReader, error) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return nil, syscall.EINVAL
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nil, err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1)
	}); err != nil {
		return nil, err
	}
	if serr != nil {
		return nil, serr
	}
	return &stampReader{rc: rc, oob: make([]byte, unix.CmsgSpace(int(unsafe.Sizeof(unix.Timespec{}))))}, nil
}

func (r *stampReader) Read(p []byte) (int, error) {
	var n, oobn int
	var rerr error
	err := r.rc.Read(func(fd uintptr) bool {
		n, oobn, _, _, rerr = unix.Recvmsg(int(fd), p, r.oob, 0)
		return rerr != unix.EAGAIN
	})
	if err == nil {
		err = rerr
	}
	if err != nil {
		return 0, err
	}
	if n == 0 {
		return 0, io.EOF
	}
	r.last = time.Time{} // these octets' time, or none
	if msgs, perr := unix.ParseSocketControlMessage(r.oob[:oobn]); perr == nil {
		for _, m := range msgs {
			if m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SCM_TIMESTAMPNS && len(m.Data) >= int(unsafe.Sizeof(unix.Timespec{})) {
				ts := (*unix.Timespec)(unsafe.Pointer(&m.Data[0]))
				r.last = time.Unix(ts.Unix())
			}
		}
	}
	return n, nil
}
