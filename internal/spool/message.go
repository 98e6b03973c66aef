package spool

import (
	"errors"
	"io"
	"os"
)

// Message is a committed message opened for delivery (Spool.Open): its
// envelope as recorded, and its file, kept open so that reading the body
// (once per delivery agent) and finishing the message need no second
// open and no second read of the header. A delivered message's file
// would otherwise be opened three times: to load it, to read its body
// and to finish it.
//
// A Message is not safe for concurrent use; the body readers it returns
// may be read concurrently (they read with pread), and must all be done
// with before Finish or Close: after Finish the file may already hold
// the next message.
type Message struct {
	Envelope *Envelope
	s        *Spool
	f        *os.File
	hdr      header
}

// Open loads id as Load does, including the body check of the first Load
// of a message found at Open, and keeps its file open. The caller must
// end the Message with Close or Finish. A message just committed comes as
// Commit left it, without reading its file (see freshMessages).
func (s *Spool) Open(id string) (*Message, error) {
	if m := s.fresh.take(id); m != nil {
		return m, nil
	}
	return s.open(id, os.O_RDWR)
}

func (s *Spool) open(id string, flag int) (*Message, error) {
	if !validID(id) {
		return nil, ErrBadID
	}
	f, err := s.openMessage(id, flag)
	if err != nil {
		return nil, err
	}
	p, err := parseFile(f, id)
	if err != nil {
		f.Close()
		if err = notFound(err, id); errors.Is(err, ErrCorrupt) {
			return nil, s.quarantine(id, err, func() error {
				_, _, err := s.loadRaw(id)
				return err
			})
		}
		return nil, err
	}
	m := &Message{Envelope: p.env, s: s, f: f, hdr: p.hdr}
	if _, ok := s.unverified.Load(id); ok {
		if err := s.verify(p.env); err != nil {
			m.Close()
			return nil, err
		}
	}
	return m, nil
}

// Body returns the message as it is to be delivered, like Spool.Body,
// from the open file. Closing the reader leaves the Message open.
func (m *Message) Body() (io.ReadSeekCloser, error) {
	if m.f == nil {
		return nil, ErrClosed
	}
	return newBodyReader(m.f, m.hdr, m.Envelope.Prepend, false), nil
}

// Finish is Spool.Finish for this message, on the open file; the
// Message is closed after it, whatever the result.
func (m *Message) Finish() error {
	if m.f == nil {
		return ErrClosed
	}
	f := m.f
	m.f = nil
	if m.s.closed.Load() {
		f.Close()
		return ErrClosed
	}
	id := m.Envelope.ID
	defer m.s.locks.lock(id)()
	// Read only with pread and written only with pwrite since it was
	// opened, f is at offset 0, where the spare pool wants it.
	return m.s.dispose(id, f, m.hdr.fileSize, false)
}

// Close releases the file. It is a no-op after Finish or Close.
func (m *Message) Close() error {
	if m.f == nil {
		return nil
	}
	f := m.f
	m.f = nil
	return f.Close()
}
