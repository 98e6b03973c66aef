package dsn

import (
	"bytes"
	"io"
	"mime"
	"net/mail"
	"strings"
	"unicode/utf8"
)

// Line lengths of RFC 5322 2.1.1: lines SHOULD stay within 78 characters
// and MUST NOT exceed 998.
const (
	softLine = 78
	hardLine = 998
)

// writeField writes "Name: value" CRLF, folded at spaces so that lines
// stay within 78 octets where the words allow (RFC 5322 2.2.3). Control
// characters in value become spaces, so nothing can end the field early.
// A single word too long for a 998-octet line is cut; unfolding then adds
// a space in it, which is better than a line a server refuses.
func writeField(b *bytes.Buffer, name, value string) {
	b.WriteString(name)
	b.WriteByte(':')
	n := len(name) + 1 // octets on the current line
	first := true      // no word written yet
	for _, w := range strings.Fields(clean(value)) {
		for w != "" {
			if !first && (n+1+len(w) > softLine) {
				b.WriteString("\r\n")
				n = 0
			}
			cut := len(w)
			if n+1+cut > hardLine {
				cut = hardLine - n - 1
				for cut > 0 && !utf8.RuneStart(w[cut]) {
					cut--
				}
			}
			b.WriteByte(' ')
			b.WriteString(w[:cut])
			n += 1 + cut
			w = w[cut:]
			first = false
		}
	}
	b.WriteString("\r\n")
}

// maxHeader bounds how much of an original's header is returned.
const maxHeader = 256 << 10

// original is what a report returns of the message it is about.
type original struct {
	header []byte // CRLF line ends; ends with CRLF unless empty; without the blank line
	body   []byte // only when full
	full   bool   // header and body are the whole message
	// why the body is left out: "" (not asked for or not a failure),
	// "size", "8bit".
	why            string
	eightBit       bool // 8-bit octets in what is returned
	eightBitHeader bool
	truncated      bool // header cut at maxHeader
	messageID      string
	subject        string // decoded
}

// readOriginal reads the message: only its header unless wantFull, and
// then at most max octets; a larger message is returned as its header.
func readOriginal(r io.Reader, wantFull bool, max int64) (original, error) {
	var o original
	if r == nil {
		return o, nil
	}
	limit := int64(maxHeader)
	if wantFull && max > limit {
		limit = max
	}
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return o, err
	}
	exceeded := int64(len(data)) > limit
	if exceeded {
		data = data[:limit]
	}
	tooLarge := exceeded || int64(len(data)) > max
	hdr, body, found := splitHeader(data)
	if !found {
		if exceeded {
			// No end of the header within the limit: keep whole lines.
			if i := bytes.LastIndexByte(hdr, '\n'); i >= 0 {
				hdr = hdr[:i+1]
			} else {
				hdr = nil
			}
			o.truncated = true
		}
		body = nil
	}
	if len(hdr) > maxHeader {
		hdr = hdr[:bytes.LastIndexByte(hdr[:maxHeader], '\n')+1]
		o.truncated = true
	}
	o.header = toCRLF(hdr)
	if len(o.header) > 0 && !bytes.HasSuffix(o.header, []byte("\r\n")) {
		o.header = append(o.header, '\r', '\n')
	}
	o.eightBitHeader = !isASCII(string(o.header))
	switch {
	case !wantFull:
	case tooLarge || o.truncated:
		o.why = "size"
	default:
		o.full = true
		o.body = toCRLF(body)
	}
	o.eightBit = o.eightBitHeader || !isASCII(string(o.body))

	if m, err := mail.ReadMessage(bytes.NewReader(append(append([]byte{}, o.header...), '\r', '\n'))); err == nil {
		o.messageID = strings.TrimSpace(m.Header.Get("Message-Id"))
		if !strings.HasPrefix(o.messageID, "<") || !strings.HasSuffix(o.messageID, ">") || len(o.messageID) > 250 {
			o.messageID = ""
		}
		s := m.Header.Get("Subject")
		if d, err := new(mime.WordDecoder).DecodeHeader(s); err == nil {
			s = d
		}
		o.subject = clean(s)
	}
	return o, nil
}

// splitHeader splits a message at the first empty line: the header with
// its last line end, and the body. found is false when there is no empty
// line (a message of only a header, or one cut short).
func splitHeader(p []byte) (hdr, body []byte, found bool) {
	for i := 0; i < len(p); {
		j := bytes.IndexByte(p[i:], '\n')
		if j < 0 {
			return p, nil, false
		}
		line := p[i : i+j]
		if len(line) == 0 || len(line) == 1 && line[0] == '\r' {
			return p[:i], p[i+j+1:], true
		}
		i += j + 1
	}
	return p, nil, false
}

// toCRLF makes every line end CRLF: bare LF and bare CR become CRLF, so
// the report never carries either (RFC 5322 2.3).
func toCRLF(p []byte) []byte {
	if !bytes.ContainsAny(p, "\r\n") {
		return p
	}
	out := make([]byte, 0, len(p)+len(p)/32)
	for i := 0; i < len(p); i++ {
		switch c := p[i]; c {
		case '\r':
			out = append(out, '\r', '\n')
			if i+1 < len(p) && p[i+1] == '\n' {
				i++
			}
		case '\n':
			out = append(out, '\r', '\n')
		default:
			out = append(out, c)
		}
	}
	return out
}
