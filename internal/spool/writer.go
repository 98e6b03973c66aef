package spool

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"time"
)

// Writer receives one message. It is not safe for concurrent use.
type Writer struct {
	s     *Spool
	id    string
	f     *os.File
	bw    *bufio.Writer
	crc   hash.Hash32
	n     int64
	err   error // sticky write error
	ended bool  // committed or aborted
}

// Create starts a new message. Its queue id is known at once (for the
// Received header); it names a message only once Commit returns nil. The
// caller must end every Writer with Commit or Abort.
func (s *Spool) Create() (*Writer, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	for range 8 {
		id := s.ids.next(time.Now())
		// The final name must not exist either: Commit's rename would
		// replace it. Ids carry a counter, so this only matters if the
		// clock stepped back across a restart.
		if _, err := os.Lstat(s.path(id)); !errors.Is(err, fs.ErrNotExist) {
			continue
		}
		f, err := os.OpenFile(s.path(id)+tmpSuffix, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("spool: create: %w", err)
		}
		w := &Writer{s: s, id: id, f: f, crc: crc32.New(castagnoli)}
		// Room for the header, filled in by Commit.
		w.bw = bufio.NewWriterSize(f, 64<<10)
		w.bw.Write(make([]byte, headerSize))
		return w, nil
	}
	return nil, errors.New("spool: create: could not find a free queue id")
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
	n, err := w.bw.Write(p)
	w.crc.Write(p[:n])
	w.n += int64(n)
	if err != nil {
		w.err = fmt.Errorf("spool: %s: %w", w.id, err)
		return n, w.err
	}
	return n, nil
}

// Written returns a reader over the message bytes written so far, for
// checks that need the whole message before Commit (DKIM, DMARC). It
// reads the file, not memory; the Writer must not be written to while the
// reader is in use.
func (w *Writer) Written() (io.Reader, error) {
	if w.ended {
		return nil, ErrClosed
	}
	if w.err != nil {
		return nil, w.err
	}
	if err := w.bw.Flush(); err != nil {
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
	tmp, final := w.s.path(w.id)+tmpSuffix, w.s.path(w.id)
	renamed := false
	defer func() {
		if err == nil {
			w.s.commits.Add(1)
			return
		}
		w.f.Close()
		if renamed {
			// The directory fsync failed or was not waited for:
			// the client hears 451, so the message must not be
			// delivered behind its back.
			os.Remove(final)
		} else {
			os.Remove(tmp)
		}
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
	if _, err := w.bw.Write(envb); err != nil {
		return fmt.Errorf("spool: commit %s: %w", w.id, err)
	}
	if err := w.bw.Flush(); err != nil {
		return fmt.Errorf("spool: commit %s: %w", w.id, err)
	}
	h := header{
		bodyLen: uint64(w.n),
		envLen:  uint32(len(envb)),
		envCRC:  crc32.Checksum(envb, castagnoli),
		bodyCRC: w.crc.Sum32(),
	}
	if _, err := w.f.WriteAt(h.marshal(), 0); err != nil {
		return fmt.Errorf("spool: commit %s: %w", w.id, err)
	}
	// 1. The data, before the name: after this the file is complete on
	// stable storage under its temporary name.
	if err := w.f.Sync(); err != nil {
		return fmt.Errorf("spool: commit %s: fsync: %w", w.id, err)
	}
	if err := w.f.Close(); err != nil {
		return fmt.Errorf("spool: commit %s: %w", w.id, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("spool: commit %s: %w", w.id, err)
	}
	// 2. The name: atomically, so <id> is either absent or complete.
	if err := os.Rename(tmp, final); err != nil {
		return fmt.Errorf("spool: commit %s: %w", w.id, err)
	}
	renamed = true
	// 3. The directory entry, shared with concurrent commits.
	if err := w.s.syncer.sync(); err != nil {
		return fmt.Errorf("spool: commit %s: directory fsync: %w", w.id, err)
	}
	return nil
}

// Abort discards the message. It is a no-op after Commit or Abort.
func (w *Writer) Abort() {
	if w.ended {
		return
	}
	w.ended = true
	w.f.Close()
	os.Remove(w.s.path(w.id) + tmpSuffix)
}
