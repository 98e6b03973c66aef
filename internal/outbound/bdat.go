package outbound

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/posthorn/posthorn/internal/bufpool"
	"github.com/posthorn/posthorn/internal/smtp"
)

// Final-reply commands of a Response: the message was taken (2xx) or not
// in answer to one of these.
const (
	EndOfData = "end of DATA"
	BDATLast  = "BDAT LAST"
)

// Final reports whether r is the reply that ends the transaction for its
// recipient: after the message data, by DATA's final dot or BDAT LAST.
func (r Response) Final() bool { return r.Command == EndOfData || r.Command == BDATLast }

// bdatChunk is the most octets one BDAT chunk carries. A message up to
// this size (line endings made CRLF) goes as one BDAT LAST in the same
// write as MAIL and the RCPTs: the whole transaction in one round trip,
// where DATA takes two (one for the 354, one after the dot). A longer one
// costs a second round trip after its first chunk, which tells whether
// the envelope was accepted before the rest is sent; the other chunks
// then follow without waiting.
const bdatChunk = 64 << 10

// errTransactionOver stops sending chunks: a reply ended the transaction.
var errTransactionOver = errors.New("outbound: transaction refused")

// sendChunks is Send for a server that offers CHUNKING and PIPELINING
// (RFC 3030, RFC 2920): the message goes in BDAT chunks, the first one
// pipelined with the envelope.
func (c *Client) sendChunks(ctx context.Context, m *Message, lines []string, res []Response) ([]Response, error) {
	to := c.o.Timeouts
	resetFirst := c.queueEnvelope(lines)
	ok := func(r smtp.Reply) bool { return r.Code/100 == 2 }
	var accepted int
	// final records the reply that ends the transaction for every
	// accepted recipient.
	final := func(cmd string, r smtp.Reply) {
		for i := range res {
			if ok(res[i].Reply) {
				res[i] = Response{Command: cmd, Reply: r}
			}
		}
	}
	cs := chunkSenders.Get().(*chunkSender)
	defer cs.release()
	cs.c = c
	// After the first chunk is written: one round trip for the envelope
	// and that chunk. The server reads a chunk whatever it thinks of the
	// transaction (RFC 3030 2), so the dialogue stays in step.
	cs.first = func(last bool) error {
		mail, n, err := c.envelopeReplies(ctx, resetFirst, res)
		if err != nil {
			return err
		}
		accepted = n
		r, err := c.read(ctx, chunkTimeout(to, last))
		if err != nil {
			return err
		}
		cs.replied++
		if r.Code == 500 || r.Code == 502 || r.Code == 504 {
			// Whatever it made of the chunk's octets, it did not take
			// them as a chunk: nothing it says from here is in step.
			return c.fail(fmt.Errorf("%w: %s", ErrBDATUnknown, smtp.Printable(r.Error())))
		}
		switch {
		case !ok(mail):
			// The RCPT replies are 503s about the missing MAIL; the
			// MAIL reply is the one that says why.
			for i := range res {
				res[i] = Response{Command: "MAIL FROM", Reply: mail}
			}
			return errTransactionOver
		case accepted == 0:
			return errTransactionOver // the chunk's reply says nothing about anyone
		case last:
			final(BDATLast, r)
			return nil
		case !ok(r):
			final("BDAT", r)
			return errTransactionOver
		}
		return nil
	}

	err := c.writeBody(ctx, smtp.NewChunkWriter(cs.bw), cs.bw, m.Body, func() error {
		if err := cs.send(cs.buf, true); err != nil || cs.sent == 1 {
			return err // a lone chunk was sent with the envelope's round trip
		}
		return c.bw.Flush()
	})
	switch {
	case errors.Is(err, errTransactionOver):
		if !cs.last {
			// No BDAT LAST went out: the server may still hold the
			// transaction open.
			return res, c.Reset(ctx)
		}
		return res, nil
	case err != nil:
		if c.broken == nil {
			// A message read or written in part cannot be taken back:
			// the connection goes.
			err = c.fail(ctxErr(ctx, fmt.Errorf("sending message data: %w", err)))
		}
		noFinal(res)
		return res, err
	}
	if cs.sent == 1 {
		return res, nil // the first chunk was the last: its reply is in res
	}
	// The replies to the chunks that followed the first, in order; the
	// first refusal ends the transaction, BDAT LAST's reply is final.
	var refused *smtp.Reply
	for cs.replied < cs.sent {
		last := cs.replied == cs.sent-1
		r, err := c.read(ctx, chunkTimeout(to, last))
		if err != nil {
			noFinal(res)
			return res, err
		}
		cs.replied++
		switch {
		case refused != nil:
		case last:
			final(BDATLast, r)
		case !ok(r):
			refused = &r
		}
	}
	if refused != nil {
		final("BDAT", *refused)
	}
	return res, nil
}

// noFinal marks the recipients accepted so far as still waiting for the
// final reply, which did not come (Code 0).
func noFinal(res []Response) {
	for i := range res {
		if res[i].Reply.Code/100 == 2 {
			res[i] = Response{Command: BDATLast}
		}
	}
}

// chunkTimeout bounds the wait for a chunk's reply: BDAT LAST's is the
// transaction's final reply (RFC 5321 4.5.3.2.6 for the final dot).
func chunkTimeout(to Timeouts, last bool) time.Duration {
	if last {
		return to.DataFinal
	}
	return to.DataBlock
}

// chunkSender collects the message's octets (line endings already CRLF)
// and writes them as BDAT chunks of bdatChunk octets; the rest goes with
// BDAT LAST at the end (send).
type chunkSender struct {
	c    *Client
	bw   *bufio.Writer // in front of the sender itself, for the ChunkWriter
	buf  []byte
	sent int // BDAT commands written
	// replied counts the chunk replies read.
	replied int
	last    bool // BDAT LAST is written
	// first runs after the first chunk is written (last: it is the only
	// one); an error stops the sending.
	first func(last bool) error
}

// chunkSenders keeps senders with their buffers between messages: made
// afresh, a 100 KB message's grew to 256 KiB on the way (BenchmarkSend).
// A buffer holds a chunk and the largest write that can come on top
// (bufpool.Copy's, passed straight through the bufio.Writer).
var chunkSenders = sync.Pool{New: func() any {
	s := &chunkSender{buf: make([]byte, 0, bdatChunk+bufpool.Size)}
	s.bw = bufio.NewWriter(s)
	return s
}}

// release puts s back into chunkSenders, emptied (unless its buffer
// outgrew the usual size).
func (s *chunkSender) release() {
	if cap(s.buf) > bdatChunk+bufpool.Size {
		return
	}
	s.bw.Reset(s)
	*s = chunkSender{bw: s.bw, buf: s.buf[:0]}
	chunkSenders.Put(s)
}

func (s *chunkSender) Write(p []byte) (int, error) {
	s.buf = append(s.buf, p...)
	// A full chunk goes once there is more: the last one must say LAST.
	for len(s.buf) > bdatChunk {
		if err := s.send(s.buf[:bdatChunk], false); err != nil {
			return 0, err
		}
		s.buf = s.buf[:copy(s.buf, s.buf[bdatChunk:])]
	}
	return len(p), nil
}

// send writes one BDAT command and its octets to the connection's buffer.
func (s *chunkSender) send(b []byte, last bool) error {
	cmd := "BDAT " + strconv.Itoa(len(b))
	if last {
		cmd += " LAST"
	}
	s.c.bw.WriteString(cmd + "\r\n")
	if _, err := s.c.bw.Write(b); err != nil {
		return err
	}
	s.sent++
	s.last = last
	if s.sent == 1 {
		return s.first(last)
	}
	return nil
}
