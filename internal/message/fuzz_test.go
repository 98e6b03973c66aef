package message

import (
	"bytes"
	"strings"
	"testing"
)

// FuzzReadHeader: any bytes give a header whose names are ftext (no
// colon, space or control character) and whose values hold no LF; the
// bound is kept. (A bare CR may stay in a value: DATA refuses bare CRs
// before a header is ever read.)
func FuzzReadHeader(f *testing.F) {
	f.Add([]byte("From: a@example.org\r\nSubject: hi\r\n there\r\n\r\nbody"), 1000)
	f.Add([]byte("X: 1\n\tfolded\nno colon here\r\n"), 20)
	f.Add([]byte(" leading continuation\r\nA: b\r\n"), 100)
	f.Fuzz(func(t *testing.T, data []byte, max int) {
		if max < 0 || max > 1<<20 {
			return
		}
		h, err := ReadHeader(bytes.NewReader(data), max)
		if err != nil && err != ErrHeaderTooLarge {
			t.Fatalf("error %v from a bytes.Reader", err)
		}
		n := 0
		for _, fl := range h {
			if fl.Name == "" || strings.ContainsAny(fl.Name, ": \t\r\n") {
				t.Fatalf("field name %q", fl.Name)
			}
			if strings.ContainsAny(fl.Value, "\n") {
				t.Fatalf("value of %s keeps a line break: %q", fl.Name, fl.Value)
			}
			n += len(fl.Name) + len(fl.Value)
		}
		if n > max+1 {
			t.Fatalf("%d octets of fields from a bound of %d", n, max)
		}
	})
}

// FuzzHeaderFilter: written in any pieces, the filter passes a message
// through unchanged when nothing is dropped, and only removes whole
// fields when some are.
func FuzzHeaderFilter(f *testing.F) {
	f.Add([]byte("Authentication-Results: mx.example.test; spf=pass\r\nFrom: a@b\r\n\r\nbody\r\n"), 7)
	f.Add([]byte("A: 1\r\n 2\r\nAuthentication-Results: x\r\n\tfolded\r\nB: 3\r\nbody without blank"), 1)
	f.Add([]byte("no header at all\r\n"), 3)
	f.Fuzz(func(t *testing.T, data []byte, step int) {
		if step <= 0 {
			step = 1
		}
		write := func(drop func(name, value string) bool) []byte {
			var out bytes.Buffer
			hf := &HeaderFilter{W: &out, Drop: drop}
			for i := 0; i < len(data); i += step {
				hf.Write(data[i:min(i+step, len(data))])
			}
			if err := hf.Close(); err != nil {
				t.Fatal(err)
			}
			return out.Bytes()
		}
		if got := write(func(string, string) bool { return false }); !bytes.Equal(got, data) {
			t.Fatalf("nothing dropped, yet %q became %q", data, got)
		}
		got := write(func(name, _ string) bool { return strings.EqualFold(name, "Authentication-Results") })
		if len(got) > len(data) {
			t.Fatalf("dropping made the message longer: %q -> %q", data, got)
		}
		lines := map[string]bool{}
		for _, l := range bytes.SplitAfter(data, []byte("\n")) {
			lines[string(l)] = true
		}
		for _, l := range bytes.SplitAfter(got, []byte("\n")) {
			if !lines[string(l)] && !bytes.HasSuffix(data, l) {
				t.Fatalf("output line %q is not an input line: %q -> %q", l, data, got)
			}
		}
	})
}
