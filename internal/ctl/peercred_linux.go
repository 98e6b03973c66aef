package ctl

import (
	"net"
	"syscall"
)

// peerUID returns the uid of the process at the other end of c, from the
// kernel (SO_PEERCRED), as it was when the peer connected.
func peerUID(c net.Conn) (int, bool) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return -1, false
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return -1, false
	}
	var cred *syscall.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil || credErr != nil {
		return -1, false
	}
	return int(cred.Uid), true
}
