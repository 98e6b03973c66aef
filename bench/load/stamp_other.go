//go:build !linux

package main

import (
	"errors"
	"net"
	"time"
)

// stampReader: kernel receive timestamps are only read on Linux here.
type stampReader struct{ last time.Time }

func newStampReader(net.Conn) (*stampReader, error) {
	return nil, errors.New("receive timestamps are not supported on this system")
}

func (r *stampReader) Read([]byte) (int, error) { return 0, errors.New("unreachable") }
