package message

import (
	"errors"
	"io"
	"strings"

	"github.com/posthorn/posthorn/internal/bufpool"
)

// Field is one header field: its name as written and its value unfolded
// (CRLF before continuation lines removed, surrounding space trimmed).
type Field struct {
	Name  string
	Value string
}

// Header is a message's header section, in order.
type Header []Field

// Get returns the values of every field named name (case-insensitive).
func (h Header) Get(name string) []string {
	var v []string
	for _, f := range h {
		if strings.EqualFold(f.Name, name) {
			v = append(v, f.Value)
		}
	}
	return v
}

// Has reports whether a field named name is present.
func (h Header) Has(name string) bool { return len(h.Get(name)) > 0 }

// ErrHeaderTooLarge is returned when the header section exceeds the bound.
var ErrHeaderTooLarge = errors.New("message: header section too large")

// ReadHeader reads the header section of a message (up to the blank line
// or the end) from r, reading at most max octets. Lines that are not
// fields end the header, as a lenient reader of mail must.
func ReadHeader(r io.Reader, max int) (Header, error) {
	br := bufpool.Reader(io.LimitReader(r, int64(max)+1))
	defer bufpool.PutReader(br)
	var h Header
	read := 0
	for {
		line, err := br.ReadString('\n')
		read += len(line)
		if read > max {
			return h, ErrHeaderTooLarge
		}
		if line == "" { // end of input
			if err == io.EOF {
				err = nil
			}
			return h, err
		}
		trimmed := strings.TrimRight(line, "\r\n")
		switch {
		case trimmed == "":
			return h, nil
		case (line[0] == ' ' || line[0] == '\t') && len(h) > 0:
			h[len(h)-1].Value = strings.TrimSpace(h[len(h)-1].Value + " " + strings.TrimSpace(trimmed))
		default:
			name, value, ok := strings.Cut(trimmed, ":")
			if !ok || !isFieldName(name) {
				return h, nil
			}
			h = append(h, Field{Name: name, Value: strings.TrimSpace(value)})
		}
		if err == io.EOF {
			return h, nil
		}
		if err != nil {
			return h, err
		}
	}
}

// isFieldName reports whether s is a field name: printable US-ASCII but
// colon (RFC 5322 2.2, ftext).
func isFieldName(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 33 || s[i] > 126 {
			return false
		}
	}
	return s != ""
}
