package smtp

import (
	"bytes"
	"testing"
)

// referenceDataWriter is the first DataWriter, a byte at a time: the
// specification the faster one is checked against.
type referenceDataWriter struct {
	w             *bytes.Buffer
	atBOL, prevCR bool
}

func (d *referenceDataWriter) write(p []byte) {
	for _, c := range p {
		switch c {
		case '\r':
			if d.prevCR {
				d.endLine()
			}
			d.prevCR = true
			continue
		case '\n':
			d.prevCR = false
			d.endLine()
			continue
		}
		if d.prevCR {
			d.prevCR = false
			d.endLine()
		}
		if d.atBOL && c == '.' {
			d.w.WriteByte('.')
		}
		d.atBOL = false
		d.w.WriteByte(c)
	}
}

func (d *referenceDataWriter) endLine() { d.w.WriteString("\r\n"); d.atBOL = true }

func (d *referenceDataWriter) close() {
	if d.prevCR {
		d.prevCR = false
		d.endLine()
	}
	if !d.atBOL {
		d.endLine()
	}
	d.w.WriteString(".\r\n")
}

// FuzzDataWriter: whatever the bytes and however they are split across
// Write calls (a CR at the end of one and its LF at the start of the
// next), DataWriter writes exactly what the byte-at-a-time reference does,
// and only CRLF line endings.
func FuzzDataWriter(f *testing.F) {
	for _, s := range []string{"", "a\r\nb", ".\r\n", "a\rb\nc\r\r\n.", "..x\n.\r", "\r", "\n\n.\n", "x\r"} {
		f.Add([]byte(s), uint8(1), uint8(3))
	}
	f.Fuzz(func(t *testing.T, in []byte, cut1, cut2 uint8) {
		ref := &referenceDataWriter{w: new(bytes.Buffer), atBOL: true}
		ref.write(in)
		ref.close()

		a := min(int(cut1), len(in))
		b := min(a+int(cut2), len(in))
		out := writeParts(t, NewDataWriter, in[:a], in[a:b], in[b:])
		if !bytes.Equal(out, ref.w.Bytes()) {
			t.Fatalf("input %q split at %d, %d:\n got %q\nwant %q", in, a, b, out, ref.w.Bytes())
		}
		for i, c := range out {
			if c == '\n' && (i == 0 || out[i-1] != '\r') || c == '\r' && (i+1 >= len(out) || out[i+1] != '\n') {
				t.Fatalf("bare line ending in %q", out)
			}
		}

		// For BDAT the same octets without the DATA framing: the
		// final dot line gone and each stuffed dot undone.
		chunk := writeParts(t, NewChunkWriter, in[:a], in[a:b], in[b:])
		want := bytes.TrimSuffix(out, []byte(".\r\n"))
		var unstuffed []byte
		for line := range bytes.SplitAfterSeq(want, []byte("\r\n")) {
			unstuffed = append(unstuffed, bytes.TrimPrefix(line, []byte("."))...)
		}
		if !bytes.Equal(chunk, unstuffed) {
			t.Fatalf("input %q split at %d, %d, for BDAT:\n got %q\nwant %q", in, a, b, chunk, unstuffed)
		}
	})
}
