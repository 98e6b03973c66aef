//go:build !linux

package ctl

import "net"

// peerUID is not implemented here: the admin socket is then guarded by
// its file mode alone, and submissions carry no uid.
func peerUID(net.Conn) (int, bool) { return -1, false }
