package ctl

import (
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sync"
)

// socket is a listening unix socket at a path we own.
type socket struct {
	*net.UnixListener
	path string
	fi   fs.FileInfo // the socket file, to remove only our own at the end
}

// listenUnix makes a unix socket at path with the given mode. The socket is
// bound in a private directory, given its mode there and then renamed into
// place, so that it is never reachable with other permissions, even for a
// moment (a chmod after bind would leave a window open for whatever the
// umask allowed). A stale socket at path is replaced; any other kind of
// file there is an error.
func listenUnix(path string, mode fs.FileMode) (*socket, error) {
	if fi, err := os.Lstat(path); err == nil && fi.Mode().Type() != fs.ModeSocket {
		return nil, fmt.Errorf("ctl: %s exists and is not a socket", path)
	}
	tmpDir, err := os.MkdirTemp(filepath.Dir(path), ".c")
	if err != nil {
		return nil, fmt.Errorf("ctl: %w", err)
	}
	defer os.RemoveAll(tmpDir)
	tmp := filepath.Join(tmpDir, "s")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("ctl: cannot listen on %s: %w", path, err)
	}
	ln.SetUnlinkOnClose(false) // it will have moved; see close
	if err := os.Chmod(tmp, mode); err != nil {
		ln.Close()
		return nil, fmt.Errorf("ctl: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		ln.Close()
		return nil, fmt.Errorf("ctl: cannot listen on %s: %w", path, err)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("ctl: %w", err)
	}
	return &socket{UnixListener: ln, path: path, fi: fi}, nil
}

// remove unlinks the socket file if it is still the one we made.
func (s *socket) remove() {
	if fi, err := os.Lstat(s.path); err == nil && os.SameFile(fi, s.fi) {
		os.Remove(s.path)
	}
}

// limitListener lets at most n connections be open at once; Accept waits
// for one to close when the limit is reached.
type limitListener struct {
	net.Listener
	sem  chan struct{}
	done chan struct{}
	once sync.Once
}

func newLimitListener(l net.Listener, n int) *limitListener {
	return &limitListener{Listener: l, sem: make(chan struct{}, n), done: make(chan struct{})}
}

func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.sem <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.sem
		return nil, err
	}
	return &limitConn{Conn: c, release: func() { <-l.sem }}, nil
}

func (l *limitListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return l.Listener.Close()
}

type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// unixConn finds the *net.UnixConn under the wrappers.
func unixConn(c net.Conn) net.Conn {
	for {
		switch w := c.(type) {
		case *limitConn:
			c = w.Conn
		default:
			return c
		}
	}
}
