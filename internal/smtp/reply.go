// Package smtp is the SMTP wire format shared by posthorn's server and client: replies, commands, paths, and the DATA stream.
package smtp

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Reply is one SMTP reply: a three-digit code, an enhanced status code
// (RFC 3463, "x.y.z") and one or more lines of text. A Reply is also an
// error, so a function deep in a session can return the exact reply the
// client must see; anything that is not a Reply is answered with a 4xx by
// the server (see Temporary).
type Reply struct {
	Code     int
	Enhanced string   // "2.0.0"; empty where RFC 2034 omits it (greeting, EHLO)
	Lines    []string // at least one; never contains CR or LF
}

// R builds a one-line reply. The text is formatted with fmt.Sprintf.
func R(code int, enhanced, format string, args ...any) Reply {
	text := format
	if len(args) > 0 {
		text = fmt.Sprintf(format, args...)
	}
	return Reply{Code: code, Enhanced: enhanced, Lines: []string{text}}
}

// Error makes Reply an error; it is the reply as one line, for logs.
func (r Reply) Error() string {
	var b strings.Builder
	b.WriteString(strconv.Itoa(r.Code))
	if r.Enhanced != "" {
		b.WriteByte(' ')
		b.WriteString(r.Enhanced)
	}
	for _, l := range r.Lines {
		b.WriteByte(' ')
		b.WriteString(l)
	}
	return b.String()
}

// Text returns the lines joined with a space, without codes.
func (r Reply) Text() string { return strings.Join(r.Lines, " ") }

// Positive reports a 2xx or 3xx reply.
func (r Reply) Positive() bool { return r.Code >= 200 && r.Code < 400 }

// Transient reports a 4xx reply.
func (r Reply) Transient() bool { return r.Code >= 400 && r.Code < 500 }

// Permanent reports a 5xx reply.
func (r Reply) Permanent() bool { return r.Code >= 500 && r.Code < 600 }

// AppendWire appends the reply in wire form (every line CRLF-terminated,
// "-" after the code on all lines but the last) to b. The server writes the
// whole of it in one write: clients and scanners such as nmap misread
// servers that dribble a multi-line reply out line by line.
func (r Reply) AppendWire(b []byte) []byte {
	lines := r.Lines
	if len(lines) == 0 {
		lines = []string{""}
	}
	for i, l := range lines {
		b = strconv.AppendInt(b, int64(r.Code), 10)
		if i < len(lines)-1 {
			b = append(b, '-')
		} else {
			b = append(b, ' ')
		}
		if r.Enhanced != "" {
			b = append(b, r.Enhanced...)
			b = append(b, ' ')
		}
		b = append(b, sanitizeText(l)...)
		b = append(b, '\r', '\n')
	}
	return b
}

// sanitizeText keeps a reply line printable: CR, LF and other control
// characters never reach the wire, whatever was put into a Reply.
func sanitizeText(s string) string {
	clean := true
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	b := []byte(s)
	for i, c := range b {
		if c < 0x20 || c == 0x7f {
			b[i] = '?'
		}
	}
	return string(b)
}

// Temporary is the reply for an unexpected internal failure: always a 4xx,
// so the sender keeps the message and retries, and never the internal
// error text, which stays in our log.
var Temporary = R(451, "4.3.0", "Local error in processing; please try again later")

// MaxReplyLine bounds one reply line read by the client (RFC 5321
// 4.5.3.1.5 says 512 octets; we allow more, as real servers exceed it).
const MaxReplyLine = 4096

// maxReplyLines bounds a multi-line reply so a hostile server cannot make
// the client buffer without end.
const maxReplyLines = 1000

// ErrMalformedReply is returned by ReadReply for a line that is not
// "ddd[ -]text".
var ErrMalformedReply = errors.New("smtp: malformed reply")

// ReadReply reads one (possibly multi-line) reply. Enhanced status codes
// are split off the text when every line carries the same one whose class
// matches the reply code.
func ReadReply(br *bufio.Reader) (Reply, error) {
	var r Reply
	for n := 0; ; n++ {
		if n >= maxReplyLines {
			return r, fmt.Errorf("%w: more than %d lines", ErrMalformedReply, maxReplyLines)
		}
		line, err := readLine(br, MaxReplyLine)
		if err != nil {
			if errors.Is(err, io.EOF) && n > 0 {
				err = io.ErrUnexpectedEOF
			}
			return r, err
		}
		line = strings.TrimSuffix(line, "\r")
		if len(line) < 3 {
			return r, fmt.Errorf("%w: %q", ErrMalformedReply, line)
		}
		code, err := strconv.Atoi(line[:3])
		if err != nil || code < 100 || code > 599 {
			return r, fmt.Errorf("%w: %q", ErrMalformedReply, line)
		}
		if n > 0 && code != r.Code {
			return r, fmt.Errorf("%w: code changed within reply: %q", ErrMalformedReply, line)
		}
		r.Code = code
		more := false
		text := ""
		if len(line) > 3 {
			switch line[3] {
			case '-':
				more = true
			case ' ':
			default:
				return r, fmt.Errorf("%w: %q", ErrMalformedReply, line)
			}
			text = line[4:]
		}
		// A hostile server's bare CR or other control characters never
		// reach our logs or DSNs.
		r.Lines = append(r.Lines, sanitizeText(text))
		if !more {
			break
		}
	}
	r.splitEnhanced()
	return r, nil
}

func (r *Reply) splitEnhanced() {
	var code string
	for i, l := range r.Lines {
		e, _, _ := strings.Cut(l, " ")
		if !IsEnhancedCode(e) || e[0] != byte('0'+r.Code/100) {
			return
		}
		if i == 0 {
			code = e
		} else if e != code {
			return
		}
	}
	r.Enhanced = code
	for i, l := range r.Lines {
		r.Lines[i] = strings.TrimPrefix(strings.TrimPrefix(l, code), " ")
	}
}

// IsEnhancedCode reports whether s has the form class.subject.detail of
// RFC 3463 2 (class 2, 4 or 5; subject and detail 1 to 3 digits).
func IsEnhancedCode(s string) bool {
	// Cut, not Split: this runs on every reply the client reads, and
	// Split allocates.
	class, rest, ok := strings.Cut(s, ".")
	if !ok || class != "2" && class != "4" && class != "5" {
		return false
	}
	subject, detail, ok := strings.Cut(rest, ".")
	return ok && isCodeNumber(subject) && isCodeNumber(detail)
}

// isCodeNumber reports whether p is 1 to 3 digits.
func isCodeNumber(p string) bool {
	if len(p) < 1 || len(p) > 3 {
		return false
	}
	for i := 0; i < len(p); i++ {
		if p[i] < '0' || p[i] > '9' {
			return false
		}
	}
	return true
}

// ErrLineTooLong is returned when a line exceeds the limit in force.
var ErrLineTooLong = errors.New("smtp: line too long")

// readLine reads up to and including LF and returns the line without the
// LF; a line over max bytes is consumed whole and reported as
// ErrLineTooLong, so the dialog stays in sync.
func readLine(br *bufio.Reader, max int) (string, error) {
	var buf []byte
	tooLong := false
	for {
		chunk, err := br.ReadSlice('\n')
		if !tooLong {
			if len(buf)+len(chunk) > max+1 {
				tooLong = true
				buf = nil
			} else {
				buf = append(buf, chunk...)
			}
		}
		switch {
		case err == nil:
			if tooLong {
				return "", ErrLineTooLong
			}
			return string(buf[:len(buf)-1]), nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		default:
			if err == io.EOF && len(buf) > 0 {
				err = io.ErrUnexpectedEOF
			}
			return "", err
		}
	}
}
