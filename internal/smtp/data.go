package smtp

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// Errors of the DATA reader. All but a network error are reported only
// after the whole message up to the end-of-data line has been consumed,
// so the client's next command is read as a command: refusing a message
// never desynchronises the dialog (which is what SMTP smuggling exploits).
var (
	ErrDataBareLF   = errors.New("smtp: bare LF in message data")
	ErrDataBareCR   = errors.New("smtp: bare CR in message data")
	ErrDataTooLarge = errors.New("smtp: message exceeds the size limit")
	ErrDataLongLine = errors.New("smtp: line in message data exceeds the limit")
)

// DataReader reads the message after DATA's 354 (RFC 5321 4.1.1.4, 4.5.2):
// it yields the message with CRLF line endings and leading dots removed,
// and ends (io.EOF) at the line "." that follows a CRLF — and only there:
// "\n.\n", "\r.\r", "\n.\r\n" and the other published smuggling sequences
// are never the end of data. Any bare CR or LF makes the whole message
// refused (ErrDataBareCR, ErrDataBareLF), as does exceeding MaxSize or
// MaxLine; in each case reading continues silently to the real end of
// data first.
type DataReader struct {
	br      *bufio.Reader
	maxSize int64 // 0: no limit
	maxLine int   // octets including CRLF; 0: no limit

	size    int64
	err     error // sticky refusal, returned at end of data
	done    bool
	atBOL   bool // the next octet starts a line that followed a CRLF
	lineLen int  // octets of the current line so far
	carryCR bool // the previous partial chunk ended in CR
	pending []byte
	buf     []byte
}

// NewDataReader returns a reader for one message. maxSize bounds the
// message octets (after unstuffing); maxLine bounds one line including its
// CRLF (RFC 5321 4.5.3.1.6 says 1000). Zero disables a limit.
func NewDataReader(br *bufio.Reader, maxSize int64, maxLine int) *DataReader {
	return &DataReader{br: br, maxSize: maxSize, maxLine: maxLine, atBOL: true}
}

// Size is the number of message octets read so far.
func (d *DataReader) Size() int64 { return d.size }

// Read implements io.Reader.
func (d *DataReader) Read(p []byte) (int, error) {
	for len(d.pending) == 0 {
		if d.done {
			if d.err != nil {
				return 0, d.err
			}
			return 0, io.EOF
		}
		if err := d.fill(); err != nil {
			return 0, err
		}
	}
	n := copy(p, d.pending)
	d.pending = d.pending[n:]
	return n, nil
}

// fill reads one line, or one buffer-full of a long line, into pending.
func (d *DataReader) fill() error {
	chunk, err := d.br.ReadSlice('\n')
	if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	complete := err == nil // chunk ends with LF
	bol := d.atBOL
	d.atBOL = false

	// End of data: "." CRLF at the start of a line that followed a CRLF.
	if bol && complete && len(chunk) == 3 && chunk[0] == '.' && chunk[1] == '\r' {
		d.done = true
		return nil
	}

	// Every CR must be followed by LF and every LF preceded by CR. A CR
	// ending a partial chunk is judged against the next chunk.
	for i, c := range chunk {
		switch c {
		case '\r':
			if i+1 < len(chunk) && chunk[i+1] != '\n' {
				d.refuse(ErrDataBareCR)
			}
		case '\n':
			if i > 0 && chunk[i-1] != '\r' || i == 0 && !d.carryCR {
				d.refuse(ErrDataBareLF)
			}
		}
	}
	if d.carryCR && (len(chunk) == 0 || chunk[0] != '\n') {
		d.refuse(ErrDataBareCR)
	}
	if complete {
		// The next line counts as "after CRLF" only if this one ended in CRLF.
		n := len(chunk)
		d.atBOL = n >= 2 && chunk[n-2] == '\r' || n == 1 && d.carryCR
		d.carryCR = false
	} else {
		d.carryCR = len(chunk) > 0 && chunk[len(chunk)-1] == '\r'
	}

	// Dot-unstuffing (RFC 5321 4.5.2): drop one leading dot.
	out := chunk
	if bol && len(out) > 0 && out[0] == '.' {
		out = out[1:]
	}

	d.lineLen += len(chunk)
	if d.maxLine > 0 && d.lineLen > d.maxLine {
		d.refuse(ErrDataLongLine)
	}
	if complete {
		d.lineLen = 0
	}

	d.size += int64(len(out))
	if d.maxSize > 0 && d.size > d.maxSize {
		d.refuse(ErrDataTooLarge)
	}
	if d.err != nil {
		return nil // keep consuming silently up to the end of data
	}
	// ReadSlice's result is only valid until the next read: copy.
	d.buf = append(d.buf[:0], out...)
	d.pending = d.buf
	return nil
}

// refuse records the first reason to refuse the message.
func (d *DataReader) refuse(err error) {
	if d.err == nil {
		d.err = err
		d.pending = nil
	}
}

// DataWriter writes a message for DATA (client side, RFC 5321 4.5.2): every
// line ending becomes CRLF whatever the input used (bare LF, bare CR), a
// leading dot is doubled, and Close ends the data with CRLF "." CRLF,
// adding the missing CRLF after a last line without one. posthorn thus
// never emits anything an honest receiver could read as smuggled commands.
type DataWriter struct {
	w      *bufio.Writer
	atBOL  bool
	prevCR bool
	// chunk: for BDAT (RFC 3030), where the length frames the data: line
	// endings are made CRLF all the same, but no dot is doubled and Close
	// adds no end-of-data line.
	chunk bool
}

// NewDataWriter wraps w; the caller flushes w after Close.
func NewDataWriter(w *bufio.Writer) *DataWriter { return &DataWriter{w: w, atBOL: true} }

// NewChunkWriter is NewDataWriter for BDAT chunks: CRLF line endings (a
// last line without one gets it at Close), no dot-stuffing, no final dot.
func NewChunkWriter(w *bufio.Writer) *DataWriter {
	return &DataWriter{w: w, atBOL: true, chunk: true}
}

// Write implements io.Writer. Runs of bytes without CR or LF are copied
// whole (found with bytes.IndexByte): byte at a time, this writer was a
// third of the CPU of relaying 100 KB messages.
func (d *DataWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		c := p[0]
		if d.prevCR {
			d.prevCR = false
			d.endLine() // CRLF, or a bare CR, which ends a line too
			if c == '\n' {
				p = p[1:]
			}
			continue
		}
		switch c {
		case '\r':
			d.prevCR = true
			p = p[1:]
			continue
		case '\n':
			d.endLine()
			p = p[1:]
			continue
		}
		if d.atBOL && c == '.' && !d.chunk {
			d.w.WriteByte('.')
		}
		d.atBOL = false
		i := lineBreak(p)
		if _, err := d.w.Write(p[:i]); err != nil {
			return 0, err
		}
		p = p[i:]
	}
	return n, nil
}

// lineBreak returns the index of the first CR or LF in p, or len(p).
func lineBreak(p []byte) int {
	i := bytes.IndexByte(p, '\n')
	if i < 0 {
		i = len(p)
	}
	if j := bytes.IndexByte(p[:i], '\r'); j >= 0 {
		return j
	}
	return i
}

func (d *DataWriter) endLine() {
	d.w.WriteString("\r\n")
	d.atBOL = true
}

// Close ends the last line and, for DATA, writes the end-of-data line.
func (d *DataWriter) Close() error {
	if d.prevCR {
		d.prevCR = false
		d.endLine()
	}
	if !d.atBOL {
		d.endLine()
	}
	if d.chunk {
		return nil
	}
	_, err := d.w.WriteString(".\r\n")
	return err
}
