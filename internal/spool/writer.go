package spool

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"os"
	"sync"
	"time"
)

// Writer receives one message. It is not safe for concurrent use.
type Writer struct {
	s     *Spool
	id    string
	f     *os.File
	size  int64     // the file's length before this message (a reused file's)
	buf   *[]byte   // pooled; the file's octets from off on, not yet written
	off   int64     // file offset of buf's first octet: 0 until the first flush; after Commit, the message's end
	sum   hash.Hash // SHA-256 of the body, as it streams
	first byte      // the body's first octet, once n > 0
	n     int64
	err   error // sticky write error
	ended bool  // committed or aborted
}

// writeBuf is the size of a Writer's buffer. A message that fits in it
// with its envelope (most do) reaches the file in one write, at Commit.
const writeBuf = 64 << 10

// pageSize is the unit in which a write to a file reaches the page cache
// whole or not at all, even when the process is killed during it.
var pageSize = os.Getpagesize()

// bufPool recycles the Writers' buffers.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, writeBuf); return &b }}

var zeroHeader [headerSize]byte

// release returns the buffer to bufPool; the Writer is ended.
func (w *Writer) release() {
	if w.buf != nil {
		*w.buf = (*w.buf)[:0]
		bufPool.Put(w.buf)
		w.buf = nil
	}
}

// flush writes the buffered octets to the file.
func (w *Writer) flush() error {
	b := *w.buf
	if len(b) == 0 {
		return nil
	}
	if err := w.writeOn(b); err != nil {
		return err
	}
	*w.buf = b[:0]
	return nil
}

// writeOn writes p to the file at w.off, after what is written, and
// moves w.off past it.
func (w *Writer) writeOn(p []byte) error {
	if _, err := w.f.WriteAt(p, w.off); err != nil {
		return err
	}
	w.off += int64(len(p))
	return nil
}

// put appends p to the file's octets: to the buffer while it has room,
// else after a flush (p itself written through when it is larger than the
// buffer).
func (w *Writer) put(p []byte) error {
	if len(*w.buf)+len(p) > cap(*w.buf) {
		if err := w.flush(); err != nil {
			return err
		}
		if len(p) > cap(*w.buf) {
			return w.writeOn(p)
		}
	}
	*w.buf = append(*w.buf, p...)
	return nil
}

// Create starts a new message. Its queue id is known at once (for the
// Received header); it names a message only once Commit returns nil. The
// caller must end every Writer with Commit or Abort.
func (s *Spool) Create() (*Writer, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	// A spare: an empty file whose name is already durable.
	sp, err := s.pool.get()
	if err != nil {
		return nil, fmt.Errorf("spool: create: %w", err)
	}
	w := &Writer{s: s, id: sp.id, f: sp.f, size: sp.size, sum: sha256.New()}
	// Room for the header, filled in by Commit. Until then it stays zero,
	// which is what marks the file as not committed.
	w.buf = bufPool.Get().(*[]byte)
	*w.buf = append((*w.buf)[:0], zeroHeader[:]...)
	return w, nil
}

// ID returns the queue id the message will have.
func (w *Writer) ID() string { return w.id }

// Write appends message bytes.
func (w *Writer) Write(p []byte) (int, error) {
	if w.ended {
		return 0, ErrClosed
	}
	if w.err != nil {
		return 0, w.err
	}
	if w.n == 0 && len(p) > 0 {
		w.first = p[0]
	}
	if err := w.put(p); err != nil {
		w.err = fmt.Errorf("spool: %s: %w", w.id, err)
		return 0, w.err
	}
	w.sum.Write(p)
	w.n += int64(len(p))
	return len(p), nil
}

// StartsFolded reports whether the message written so far begins with a
// space or a tab: a continuation line with no field before it (RFC 5322
// 2.2.3). Header fields put in front of such a message (Received,
// Authentication-Results, DKIM-Signature, ARC) would take that line into
// their own value, so it must not be accepted.
func (w *Writer) StartsFolded() bool { return w.n > 0 && (w.first == ' ' || w.first == '\t') }

// Written returns a reader over the message bytes written so far, for
// checks that need the whole message before Commit (DKIM, DMARC). It
// reads the buffer while the message is all there, else the file; the
// Writer must not be written to while the reader is in use.
func (w *Writer) Written() (io.Reader, error) {
	if w.ended {
		return nil, ErrClosed
	}
	if w.err != nil {
		return nil, w.err
	}
	if w.off == 0 {
		return bytes.NewReader((*w.buf)[headerSize:]), nil
	}
	if err := w.flush(); err != nil {
		w.err = fmt.Errorf("spool: %s: %w", w.id, err)
		return nil, w.err
	}
	return io.NewSectionReader(w.f, headerSize, w.n), nil
}

// Commit stores the message durably. It sets env.ID and env.Size (and
// env.Arrival when zero); env must have at least one recipient. When Commit
// returns nil, body, envelope and recipients are on stable storage; on any
// error nothing was stored and the client must be told to retry (451).
// After Commit the Writer is finished, whatever the result.
func (w *Writer) Commit(ctx context.Context, env *Envelope) (err error) {
	if w.ended {
		return ErrClosed
	}
	w.ended = true
	defer func() {
		w.release()
		if err == nil {
			w.s.commits.Add(1)
			return
		}
		// The client hears 451, so the file must not be taken for a
		// message. Without its name it cannot be; if the unlink is
		// lost in a crash, what is left is either uncommitted (header
		// still zero: removed at recovery) or, when the header was
		// written, complete (see the package doc).
		w.f.Close()
		os.Remove(w.s.path(w.id))
	}()
	if w.err != nil {
		return w.err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("spool: commit %s: %w", w.id, err)
	}
	if len(env.Recipients) == 0 {
		return fmt.Errorf("spool: commit %s: no recipients", w.id)
	}
	env.ID = w.id
	env.Size = w.n
	if env.Arrival.IsZero() {
		env.Arrival = time.Now()
	}
	env.Arrival = env.Arrival.UTC()
	envb, err := json.Marshal(env)
	if err != nil {
		return fmt.Errorf("spool: commit %s: %w", w.id, err)
	}
	if len(envb) > maxEnvelope {
		return fmt.Errorf("spool: commit %s: envelope too large (%d bytes)", w.id, len(envb))
	}
	envSum := sha256.Sum256(envb)
	h := newHeader(uint64(w.n), uint32(len(envb)), envSum[:envSumLen], w.sum.Sum(nil)[:bodySumLen])
	// One fdatasync makes body, envelope, header (the commit mark) and
	// the file's size durable together (see Durability in the package
	// doc for why one is enough). The header is written last all the
	// same: a process killed in the middle of a write can leave its first
	// pages written and the rest not, and a header in front of a partial
	// message would read as a corrupt file instead of an uncommitted one.
	// A message that fits in the buffer takes two writes at most: all
	// after the first page, then the first page, header included; within
	// a page a write is whole or not at all. A reused file is not cut to
	// the message's end: bytes of an earlier message may follow the
	// envelope (see sparePool.recycle). Serialised with Finish, Remove
	// and appends of the same id.
	defer w.s.locks.lock(w.id)()
	b := *w.buf
	if w.off == 0 && len(b)+len(envb) <= cap(b) {
		b = append(b, envb...)
		*w.buf = b
		copy(b, h.marshal())
		first := min(len(b), pageSize)
		if len(b) > first {
			if _, err := w.f.WriteAt(b[first:], int64(first)); err != nil {
				return fmt.Errorf("spool: commit %s: %w", w.id, err)
			}
		}
		if _, err := w.f.WriteAt(b[:first], 0); err != nil {
			return fmt.Errorf("spool: commit %s: %w", w.id, err)
		}
		w.off = int64(len(b))
	} else {
		if err := w.put(envb); err != nil {
			return fmt.Errorf("spool: commit %s: %w", w.id, err)
		}
		if err := w.flush(); err != nil {
			return fmt.Errorf("spool: commit %s: %w", w.id, err)
		}
		if _, err := w.f.WriteAt(h.marshal(), 0); err != nil {
			return fmt.Errorf("spool: commit %s: %w", w.id, err)
		}
	}
	if err := syncFile(w.f); err != nil {
		return fmt.Errorf("spool: commit %s: fsync: %w", w.id, err)
	}
	// Kept open for the first delivery attempt's Open. The size is the
	// file's: the message's end (w.off, everything written), or a reused
	// file's earlier length when that is longer (Finish decides on it
	// whether to empty the file).
	h.fileSize = max(w.size, w.off)
	stored := env.clone()
	stored.envSum = h.envSum
	if w.s.fresh.put(&Message{Envelope: stored, s: w.s, f: w.f, hdr: h}) {
		return nil
	}
	if err := w.f.Close(); err != nil {
		return fmt.Errorf("spool: commit %s: %w", w.id, err)
	}
	return nil
}

// syncFile is fdatasync; tests replace it to inject failures.
var syncFile = fdatasync

// Abort discards the message. It is a no-op after Commit or Abort.
func (w *Writer) Abort() {
	if w.ended {
		return
	}
	w.ended = true
	w.release()
	w.f.Close()
	// The header is still zero: the file is no message, so its unlink
	// needs no directory fsync (recovery removes it if it comes back).
	os.Remove(w.s.path(w.id))
}
