package message

import (
	"bytes"
	"io"
)

// maxFieldBuffer bounds how much of one header field the filter holds
// while deciding; a longer field is passed through unjudged.
const maxFieldBuffer = 64 << 10

// HeaderFilter is an io.Writer that passes a message through to W, except
// the header fields for which Drop returns true. It works on the stream,
// so a message is never held whole in memory: each field (with its folded
// continuation lines) is held only until the next field starts. Drop gets
// the field name as written and the unfolded value.
type HeaderFilter struct {
	W    io.Writer
	Drop func(name, value string) bool

	body    bool   // past the header section: pass everything
	partial []byte // an incomplete line
	field   []byte // the current field, complete lines only
	err     error
}

// Write implements io.Writer.
func (f *HeaderFilter) Write(p []byte) (int, error) {
	if f.err != nil {
		return 0, f.err
	}
	if f.body {
		return f.W.Write(p)
	}
	n := len(p)
	for len(p) > 0 && !f.body {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			f.partial = append(f.partial, p...)
			if len(f.partial)+len(f.field) > maxFieldBuffer {
				f.passHeld()
			}
			return n, f.err
		}
		line := p[:i+1]
		p = p[i+1:]
		if len(f.partial) > 0 {
			line = append(f.partial, line...)
			f.partial = nil
		}
		f.line(line)
	}
	if f.body && len(p) > 0 && f.err == nil {
		_, f.err = f.W.Write(p)
	}
	return n, f.err
}

// line handles one complete header-section line.
func (f *HeaderFilter) line(line []byte) {
	if len(line) > 0 && (line[0] == ' ' || line[0] == '\t') && len(f.field) > 0 {
		f.field = append(f.field, line...)
		return
	}
	f.decide()
	if bytes.Equal(line, []byte("\r\n")) || bytes.Equal(line, []byte("\n")) || bytes.IndexByte(line, ':') < 0 {
		// The blank line, or a line that is no header field: the body
		// starts here.
		f.body = true
		f.write(line)
		return
	}
	f.field = append(f.field[:0], line...)
}

// decide writes or drops the held field.
func (f *HeaderFilter) decide() {
	if len(f.field) == 0 {
		return
	}
	name, value, _ := bytes.Cut(f.field, []byte(":"))
	if f.Drop == nil || !f.Drop(string(bytes.TrimSpace(name)), unfold(value)) {
		f.write(f.field)
	}
	f.field = f.field[:0]
}

// passHeld gives up judging an oversized field and passes it on.
func (f *HeaderFilter) passHeld() {
	f.write(f.field)
	f.write(f.partial)
	f.field, f.partial = f.field[:0], nil
	f.body = true
}

func (f *HeaderFilter) write(b []byte) {
	if f.err == nil && len(b) > 0 {
		_, f.err = f.W.Write(b)
	}
}

// Close flushes what is held (a message that ends inside its header).
func (f *HeaderFilter) Close() error {
	if !f.body {
		f.decide()
		f.write(f.partial)
		f.partial = nil
	}
	return f.err
}

func unfold(v []byte) string {
	v = bytes.ReplaceAll(v, []byte("\r\n"), nil)
	v = bytes.ReplaceAll(v, []byte("\n"), nil)
	return string(bytes.TrimSpace(v))
}
