package dkim

import (
	"bufio"
	"errors"
	"io"
	"strings"
)

// field is one raw header field, "Name: value\r\n" with its folding and
// CRLF line ends kept (a bare LF read from the input becomes CRLF).
type field struct {
	name string // as written, without surrounding whitespace
	raw  string
}

// maxHeaderBytes bounds the header section we hold in memory.
const maxHeaderBytes = 1 << 20

var errHeaderTooLarge = errors.New("dkim: header section larger than 1 MiB")

// readHeader reads header fields up to and including the empty line that
// ends them (or EOF). The reader is left at the first octet of the body.
func readHeader(br *bufio.Reader) ([]field, error) {
	var fields []field
	total := 0
	for {
		line, err := br.ReadString('\n')
		total += len(line)
		if total > maxHeaderBytes {
			return nil, errHeaderTooLarge
		}
		if err != nil && err != io.EOF {
			return nil, err
		}
		if line == "" && err == io.EOF {
			return fields, nil
		}
		content := strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
		if content == "" {
			return fields, nil // the empty line ending the header, or EOF
		}
		line = content + "\r\n"
		if (content[0] == ' ' || content[0] == '\t') && len(fields) > 0 {
			fields[len(fields)-1].raw += line
		} else {
			name, _, _ := strings.Cut(content, ":")
			fields = append(fields, field{name: strings.TrimRight(name, " \t"), raw: line})
		}
		if err == io.EOF {
			return fields, nil
		}
	}
}

// canonHeader canonicalizes one raw field (RFC 6376 3.4.1, 3.4.2). The
// result ends in CRLF.
func canonHeader(raw, method string) string {
	if method == "simple" {
		return raw
	}
	name, value, _ := strings.Cut(raw, ":")
	name = strings.ToLower(strings.TrimRight(name, " \t"))
	// Unfold, then reduce WSP runs to one SP, then trim.
	value = strings.ReplaceAll(value, "\r\n", "")
	var b strings.Builder
	b.Grow(len(name) + len(value) + 3)
	b.WriteString(name)
	b.WriteByte(':')
	wsp := false
	started := false
	for i := 0; i < len(value); i++ {
		c := value[i]
		if c == ' ' || c == '\t' {
			wsp = true
			continue
		}
		if wsp && started {
			b.WriteByte(' ')
		}
		wsp = false
		started = true
		b.WriteByte(c)
	}
	b.WriteString("\r\n")
	return b.String()
}

// bodyCanon canonicalizes a body as it streams through (RFC 6376 3.4.3,
// 3.4.4). Lines end in CRLF; a bare LF is taken as CRLF; a bare CR is body
// content. Trailing empty lines are held back until content follows them.
type bodyCanon struct {
	w        io.Writer
	relaxed  bool
	cr       bool // a CR was seen and not yet resolved
	wsp      bool // relaxed: whitespace pending inside the line
	inLine   bool // the current line has emitted content
	empties  int  // empty lines held back
	wroteAny bool
	buf      []byte
	err      error
}

func newBodyCanon(w io.Writer, method string) *bodyCanon {
	return &bodyCanon{w: w, relaxed: method == "relaxed"}
}

func (c *bodyCanon) Write(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	c.buf = c.buf[:0]
	for _, b := range p {
		if c.cr {
			c.cr = false
			if b == '\n' {
				c.eol()
				continue
			}
			c.content('\r')
		}
		switch b {
		case '\r':
			c.cr = true
		case '\n':
			c.eol()
		case ' ', '\t':
			if c.relaxed {
				c.wsp = true
			} else {
				c.content(b)
			}
		default:
			c.content(b)
		}
	}
	c.flush()
	return len(p), c.err
}

func (c *bodyCanon) content(b byte) {
	if !c.inLine {
		for ; c.empties > 0; c.empties-- {
			c.buf = append(c.buf, '\r', '\n')
		}
		c.inLine = true
	}
	if c.wsp {
		c.buf = append(c.buf, ' ')
		c.wsp = false
	}
	c.buf = append(c.buf, b)
}

func (c *bodyCanon) eol() {
	c.wsp = false // relaxed: trailing whitespace is dropped
	if c.inLine {
		c.buf = append(c.buf, '\r', '\n')
		c.inLine = false
	} else {
		c.empties++
	}
}

func (c *bodyCanon) flush() {
	if len(c.buf) > 0 && c.err == nil {
		c.wroteAny = true
		_, c.err = c.w.Write(c.buf)
	}
	c.buf = c.buf[:0]
}

// Close ends the body: a last line without CRLF gets one; an empty body is
// "\r\n" under simple and nothing under relaxed.
func (c *bodyCanon) Close() error {
	c.buf = c.buf[:0]
	if c.cr {
		c.cr = false
		c.content('\r')
	}
	c.wsp = false
	if c.inLine {
		c.buf = append(c.buf, '\r', '\n')
		c.inLine = false
	}
	if !c.relaxed && !c.wroteAny && len(c.buf) == 0 {
		c.buf = append(c.buf, '\r', '\n')
	}
	c.flush()
	return c.err
}

// limitWriter passes the first n octets (all when n < 0) to w and counts
// what lies beyond, and how much of that is not whitespace.
type limitWriter struct {
	w        io.Writer
	n        int64
	total    int64
	beyond   int64
	nonblank int64
}

func (l *limitWriter) Write(p []byte) (int, error) {
	l.total += int64(len(p))
	q := p
	if l.n >= 0 {
		room := l.n - (l.total - int64(len(p)))
		if room < 0 {
			room = 0
		}
		if int64(len(q)) > room {
			rest := q[room:]
			q = q[:room]
			l.beyond += int64(len(rest))
			for _, b := range rest {
				if b != ' ' && b != '\t' && b != '\r' && b != '\n' {
					l.nonblank++
				}
			}
		}
	}
	if len(q) > 0 {
		if _, err := l.w.Write(q); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// withoutB returns the raw DKIM-Signature field with the value of its b= tag
// removed (RFC 6376 3.7), keeping everything else byte for byte.
func withoutB(raw string) string {
	colon := strings.IndexByte(raw, ':')
	if colon < 0 {
		return raw
	}
	start := colon + 1
	for start <= len(raw) {
		end := strings.IndexByte(raw[start:], ';')
		if end < 0 {
			end = len(raw)
		} else {
			end += start
		}
		spec := raw[start:end]
		if eq := strings.IndexByte(spec, '='); eq >= 0 && trimFWS(spec[:eq]) == "b" {
			tail := ""
			if end == len(raw) {
				// The b= tag ends the field: keep the final CRLF.
				tail = "\r\n"
			}
			return raw[:start+eq+1] + tail + raw[end:]
		}
		start = end + 1
	}
	return raw
}
