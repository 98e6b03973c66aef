package ctl

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"strings"
	"time"
)

// textReader turns text from a local program into the canonical form of a
// stored message: every line ends in CRLF, whether it ended in LF, CRLF or
// a lone CR (a lone CR would otherwise reach the next hop as the bare CR
// that SMTP forbids), and the last line is ended too. With dotEnds, a line
// holding a single "." ends the message, as sendmail(8) does without -i.
type textReader struct {
	r       io.Reader
	dotEnds bool

	in         []byte
	out        []byte
	bol        bool // at the beginning of a line
	pendingCR  bool // a CR whose successor is not known yet
	pendingDot bool // a "." at the beginning of a line, dotEnds only
	err        error
}

func newTextReader(r io.Reader, dotEnds bool) *textReader {
	return &textReader{r: r, dotEnds: dotEnds, in: make([]byte, 32<<10), bol: true}
}

func (t *textReader) Read(p []byte) (int, error) {
	for len(t.out) == 0 {
		if t.err != nil {
			return 0, t.err
		}
		t.fill()
	}
	n := copy(p, t.out)
	t.out = t.out[n:]
	return n, nil
}

func (t *textReader) fill() {
	t.out = t.out[:0]
	n, err := t.r.Read(t.in)
	for _, c := range t.in[:n] {
		if t.pendingCR {
			t.pendingCR = false
			t.endLine()
			if c == '\n' {
				continue // CRLF
			}
		}
		if t.pendingDot {
			t.pendingDot = false
			if c == '\r' || c == '\n' {
				t.err = io.EOF // "." alone: the end; nothing after it counts
				return
			}
			t.out = append(t.out, '.')
		}
		switch {
		case c == '\r':
			t.pendingCR = true
		case c == '\n':
			t.endLine()
		case c == '.' && t.bol && t.dotEnds:
			t.pendingDot = true
			t.bol = false
		default:
			t.out = append(t.out, c)
			t.bol = false
		}
	}
	if err == nil {
		return
	}
	if errors.Is(err, io.EOF) {
		switch {
		case t.pendingDot:
			// "." at the very end without a line break: also the end.
		case t.pendingCR || !t.bol:
			t.endLine()
		}
		t.pendingCR, t.pendingDot = false, false
	}
	t.err = err
}

func (t *textReader) endLine() {
	t.out = append(t.out, '\r', '\n')
	t.bol = true
}

// limitReader fails with ErrTooLarge once more than n bytes were read
// (n <= 0: no limit).
type limitReader struct {
	r        io.Reader
	n        int64
	read     int64
	exceeded bool
}

func (l *limitReader) Read(p []byte) (int, error) {
	if l.exceeded {
		return 0, ErrTooLarge
	}
	n, err := l.r.Read(p)
	l.read += int64(n)
	if l.n > 0 && l.read > l.n {
		l.exceeded = true
		return 0, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, l.n)
	}
	return n, err
}

// MaxHeaderSize bounds the header section that sendmail and
// AddMissingHeaders read into memory.
const MaxHeaderSize = 1 << 20

// Field is one header field, with its continuation lines.
type Field struct {
	Name string // as written
	Raw  []byte // the whole field including the name and every CRLF
}

// Value returns the field body unfolded (RFC 5322 2.2.3), without the
// leading white space.
func (f Field) Value() string {
	v := string(f.Raw[len(f.Name)+1:])
	v = strings.ReplaceAll(v, "\r\n", "")
	return strings.TrimSpace(v)
}

// LocalMessage is a message read from a local program: its header fields, parsed,
// and the rest streamed.
type LocalMessage struct {
	Fields []Field
	body   io.Reader
}

// ReadMessage reads the header section of a message that a local program
// writes (sendmail's standard input): LF, CRLF or CR line endings; with
// dotEnds a lone "." line ends the message. A first line in the mbox form
// "From sender date" is dropped. If the text starts with something that is
// not a header field, the message is taken to have no header section and
// an empty line is put before that text so that it stays the body.
func ReadMessage(r io.Reader, dotEnds bool) (*LocalMessage, error) {
	br := bufio.NewReaderSize(newTextReader(r, dotEnds), 64<<10)
	m := &LocalMessage{}
	size := 0
	first := true
	for {
		line, err := readLine(br, MaxHeaderSize-size)
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
		size += len(line)
		switch {
		case len(line) == 0: // end of input: headers only
			m.body = strings.NewReader("")
			return m, nil
		case first && bytes.HasPrefix(line, []byte("From ")):
			// mbox separator line
		case string(line) == "\r\n":
			m.body = io.MultiReader(bytes.NewReader(line), br)
			return m, nil
		case (line[0] == ' ' || line[0] == '\t') && len(m.Fields) > 0:
			f := &m.Fields[len(m.Fields)-1]
			f.Raw = append(f.Raw, line...)
		default:
			name, ok := fieldName(line)
			if !ok {
				m.body = io.MultiReader(strings.NewReader("\r\n"), bytes.NewReader(line), br)
				return m, nil
			}
			m.Fields = append(m.Fields, Field{Name: name, Raw: line})
		}
		first = false
	}
}

// readLine reads one CRLF-terminated line of at most max bytes.
func readLine(br *bufio.Reader, max int) ([]byte, error) {
	var line []byte
	for {
		frag, err := br.ReadSlice('\n')
		line = append(line, frag...)
		if len(line) > max {
			return nil, fmt.Errorf("%w: the header section is larger than %d bytes", ErrTooLarge, MaxHeaderSize)
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return line, err
		}
	}
}

// fieldName returns the name of the header field that line starts, if it
// starts one (RFC 5322 2.2: printable ASCII but ":" and space, then ":").
func fieldName(line []byte) (string, bool) {
	i := bytes.IndexByte(line, ':')
	if i <= 0 {
		return "", false
	}
	for _, c := range line[:i] {
		if c < 33 || c > 126 {
			return "", false
		}
	}
	return string(line[:i]), true
}

// Has reports whether the message has a field with that name.
func (m *LocalMessage) Has(name string) bool {
	for _, f := range m.Fields {
		if strings.EqualFold(f.Name, name) {
			return true
		}
	}
	return false
}

// Recipients returns the addresses in the To, Cc and Bcc fields, or in
// the Resent-To, Resent-Cc and Resent-Bcc fields when there are any of
// those (the message is being resent), in order, without duplicates: what
// sendmail -t delivers to.
func (m *LocalMessage) Recipients() ([]string, error) {
	names := []string{"To", "Cc", "Bcc"}
	if m.Has("Resent-To") || m.Has("Resent-Cc") || m.Has("Resent-Bcc") {
		names = []string{"Resent-To", "Resent-Cc", "Resent-Bcc"}
	}
	var out []string
	seen := map[string]bool{}
	for _, f := range m.Fields {
		want := false
		for _, n := range names {
			want = want || strings.EqualFold(f.Name, n)
		}
		if !want || f.Value() == "" {
			continue
		}
		list, err := addressParser.ParseList(f.Value())
		if err != nil {
			return nil, fmt.Errorf("%w: cannot read the addresses in the %s: field: %v", ErrBadAddress, f.Name, err)
		}
		for _, a := range list {
			if k := strings.ToLower(a.Address); !seen[k] {
				seen[k] = true
				out = append(out, a.Address)
			}
		}
	}
	return out, nil
}

var addressParser = mail.AddressParser{}

// RemoveBcc drops the Bcc and Resent-Bcc fields: blind copies must not
// show their recipients to anyone.
func (m *LocalMessage) RemoveBcc() {
	kept := m.Fields[:0]
	for _, f := range m.Fields {
		if !strings.EqualFold(f.Name, "Bcc") && !strings.EqualFold(f.Name, "Resent-Bcc") {
			kept = append(kept, f)
		}
	}
	m.Fields = kept
}

// Reader returns the whole message, header fields as they are now and
// then the rest of the input, with CRLF line endings. It can be read once.
func (m *LocalMessage) Reader() io.Reader {
	var hdr bytes.Buffer
	for _, f := range m.Fields {
		hdr.Write(f.Raw)
	}
	return io.MultiReader(&hdr, m.body)
}

// FromField returns a From: header field, ending in CRLF, for the address
// and full name (sendmail -F) of a local sender; a name that is not ASCII
// is encoded (RFC 2047).
func FromField(fullName, addr string) string {
	return "From: " + (&mail.Address{Name: fullName, Address: addr}).String() + "\r\n"
}

// LocalReceived returns the Received: field for a message submitted by a
// local user, in the form Postfix uses ("by host (Postfix, from userid
// 1000)"), ending in CRLF. uid < 0 leaves the user out.
func LocalReceived(by, id string, uid int, date time.Time) []byte {
	var b strings.Builder
	b.WriteString("Received: by ")
	b.WriteString(headerSafe(by))
	b.WriteString(" (posthorn")
	if uid >= 0 {
		fmt.Fprintf(&b, ", from userid %d", uid)
	}
	b.WriteString(")")
	if id != "" {
		b.WriteString("\r\n\tid ")
		b.WriteString(headerSafe(id))
	}
	b.WriteString("; ")
	b.WriteString(date.Format(time.RFC1123Z))
	b.WriteString("\r\n")
	return []byte(b.String())
}

func headerSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r <= ' ' || r == 0x7f || strings.ContainsRune("()<>;\\", r) {
			return '?'
		}
		return r
	}, s)
}
