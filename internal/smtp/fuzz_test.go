package smtp

import (
	"bufio"
	"bytes"
	"io"
	"strings"
	"testing"
)

func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{"EHLO example.org", "MAIL FROM:<a@b.c> SIZE=10", "rcpt to:<x@y>", "QUIT", "", " ", "X\x00Y", "GET / HTTP/1.1", "BDAT 10 LAST"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		c, err := ParseCommand(line)
		if err != nil {
			return
		}
		if c.Verb != strings.ToUpper(c.Verb) || c.Verb == "" {
			t.Fatalf("verb %q", c.Verb)
		}
		if strings.ContainsAny(c.Arg, "\r\n\x00") {
			t.Fatalf("control character passed: %q", c.Arg)
		}
	})
}

func FuzzParseMailArgs(f *testing.F) {
	for _, s := range []string{
		"FROM:<a@example.org>", "FROM:<> SIZE=100 BODY=8BITMIME", "TO:<\"q u\"@example.org> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a+40b",
		"TO:<@a,@b:c@d.example>", "FROM: <x@[127.0.0.1]>", "FROM:<x@[IPv6:::1]>", "TO:<Postmaster>", "FROM:<ü@例え.jp> SMTPUTF8",
		"FROM:<a@b", "TO:<a\\@b@c>",
	} {
		f.Add(s, true)
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, arg string, utf8 bool) {
		prefix := "FROM:"
		if len(arg) > 2 && (arg[0] == 'T' || arg[0] == 't') {
			prefix = "TO:"
		}
		pa, err := ParseMailArgs(arg, prefix, utf8)
		if err != nil {
			return
		}
		s := pa.Addr.String()
		if strings.ContainsAny(s, "\r\n\x00") || strings.ContainsAny(pa.Addr.Domain, "\"\\ <>") {
			t.Fatalf("unsafe address accepted: %q", s)
		}
		if len(pa.Addr.Local) > maxLocalPart {
			t.Fatalf("local part too long: %d", len(pa.Addr.Local))
		}
		for _, p := range pa.Params {
			if strings.ContainsAny(p.Key+p.Value, " =\r\n\x00") {
				t.Fatalf("bad param %q=%q", p.Key, p.Value)
			}
		}
		// What we render, we parse back to the same address.
		if pa.Addr.Domain != "" && !pa.Addr.IsNull() {
			back, err := ParseAddress(s, utf8)
			if err != nil || back != pa.Addr {
				t.Fatalf("round trip %q -> %q -> %+v (%v)", arg, s, back, err)
			}
		}
	})
}

// FuzzDataReader checks the DATA reader's invariants on any input: it
// never yields a bare CR or LF, never reads past the first real
// CRLF.CRLF, and what it yields, re-stuffed, reads back the same.
func FuzzDataReader(f *testing.F) {
	for _, s := range []string{"a\r\n.\r\n", "a\n.\n\r\n.\r\n", "..x\r\n.\r\n", "\r.\r\r\n.\r\n", "x\r\n\x00.\r\n.\r\n", ".\r\n"} {
		f.Add([]byte(s), 16)
	}
	f.Fuzz(func(t *testing.T, in []byte, bufSize int) {
		if bufSize < 16 || bufSize > 4096 {
			bufSize = 16
		}
		br := bufio.NewReaderSize(bytes.NewReader(in), bufSize)
		d := NewDataReader(br, 1<<20, 0)
		got, err := io.ReadAll(d)
		if err != nil {
			return
		}
		// The input must contain CRLF.CRLF (or start with .CRLF) ending
		// exactly where the reader stopped.
		rest, _ := io.ReadAll(br)
		consumed := in[:len(in)-len(rest)]
		if !bytes.HasSuffix(consumed, []byte("\r\n.\r\n")) && !bytes.Equal(consumed, []byte(".\r\n")) {
			t.Fatalf("ended without CRLF.CRLF: consumed %q", consumed)
		}
		for i, c := range got {
			if c == '\n' && (i == 0 || got[i-1] != '\r') || c == '\r' && (i+1 >= len(got) || got[i+1] != '\n') {
				t.Fatalf("bare line ending in accepted data %q", got)
			}
		}
		var buf bytes.Buffer
		bw := bufio.NewWriter(&buf)
		w := NewDataWriter(bw)
		w.Write(got)
		w.Close()
		bw.Flush()
		again, err := io.ReadAll(NewDataReader(bufio.NewReader(&buf), 0, 0))
		if err != nil || !bytes.Equal(again, got) && !(len(got) > 0 && !bytes.HasSuffix(got, []byte("\r\n"))) {
			t.Fatalf("round trip: %q -> %q (%v)", got, again, err)
		}
	})
}
