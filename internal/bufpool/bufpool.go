// Package bufpool recycles the 32 KiB buffers that message copies use, so
// that moving a message (DATA into the spool, the spool to a remote
// server) allocates nothing per message: io.Copy's own buffer was 40% of
// all the memory posthorn allocated under load.
package bufpool

import (
	"bufio"
	"io"
	"sync"
)

// Size is the length of every buffer.
const Size = 32 << 10

var pool = sync.Pool{New: func() any { b := make([]byte, Size); return &b }}

// Get returns a buffer of Size bytes; give it back with Put when done.
func Get() *[]byte { return pool.Get().(*[]byte) }

// Put returns b to the pool; b must not be used afterwards.
func Put(b *[]byte) {
	if b != nil && len(*b) == Size {
		pool.Put(b)
	}
}

// Copy is io.CopyBuffer with a pooled buffer.
func Copy(dst io.Writer, src io.Reader) (int64, error) {
	b := Get()
	defer Put(b)
	return io.CopyBuffer(dst, src, *b)
}

// CopyN is io.CopyN with a pooled buffer.
func CopyN(dst io.Writer, src io.Reader, n int64) (int64, error) {
	written, err := Copy(dst, io.LimitReader(src, n))
	if written == n {
		return n, nil
	}
	if written < n && err == nil {
		err = io.EOF // src stopped early
	}
	return written, err
}

// ReaderPool recycles bufio.Readers of one size.
type ReaderPool struct{ p sync.Pool }

// NewReaderPool returns a pool of readers of size bytes.
func NewReaderPool(size int) *ReaderPool {
	rp := &ReaderPool{}
	rp.p.New = func() any { return bufio.NewReaderSize(nil, size) }
	return rp
}

// Get returns a pooled reader reading r; give it back with Put.
func (rp *ReaderPool) Get(r io.Reader) *bufio.Reader {
	br := rp.p.Get().(*bufio.Reader)
	br.Reset(r)
	return br
}

// Put returns br to the pool; br must not be used afterwards.
func (rp *ReaderPool) Put(br *bufio.Reader) {
	br.Reset(nil)
	rp.p.Put(br)
}

var readers = NewReaderPool(4096)

// Reader returns a pooled 4 KiB bufio.Reader reading r; give it back with
// PutReader when done.
func Reader(r io.Reader) *bufio.Reader { return readers.Get(r) }

// PutReader returns br to the pool; br must not be used afterwards.
func PutReader(br *bufio.Reader) { readers.Put(br) }
