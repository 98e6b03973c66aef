package smtp

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

func readData(t *testing.T, in string, maxSize int64, maxLine int) (string, error, string) {
	t.Helper()
	br := bufio.NewReaderSize(strings.NewReader(in), 64)
	d := NewDataReader(br, maxSize, maxLine)
	got, err := io.ReadAll(d)
	rest, _ := io.ReadAll(br)
	return string(got), err, string(rest)
}

func TestDataReaderUnstuffsAndStopsAtCRLFDotCRLF(t *testing.T) {
	in := "Subject: x\r\n\r\n..leading dot\r\n.\r\nQUIT\r\n"
	got, err, rest := readData(t, in, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if want := "Subject: x\r\n\r\n.leading dot\r\n"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	if rest != "QUIT\r\n" {
		t.Fatalf("rest %q", rest)
	}
}

func TestDataReaderEmptyMessage(t *testing.T) {
	got, err, rest := readData(t, ".\r\nNOOP\r\n", 0, 0)
	if err != nil || got != "" || rest != "NOOP\r\n" {
		t.Fatalf("got %q %v %q", got, err, rest)
	}
}

func TestDataReaderLongLinesAcrossBufferBoundaries(t *testing.T) {
	// Lines longer than the 64-octet test buffer, with CRLF split across reads.
	for n := 60; n < 70; n++ {
		line := strings.Repeat("a", n)
		in := line + "\r\n" + line + "\r\n.\r\nX"
		got, err, rest := readData(t, in, 0, 0)
		if err != nil || got != line+"\r\n"+line+"\r\n" || rest != "X" {
			t.Fatalf("n=%d: got %q %v %q", n, got, err, rest)
		}
	}
}

func TestDataReaderRefusesBareLineEndingsButStaysInSync(t *testing.T) {
	cases := map[string]struct {
		in   string
		want error
	}{
		"bare LF":          {"a\nb\r\n.\r\n", ErrDataBareLF},
		"bare CR":          {"a\rb\r\n.\r\n", ErrDataBareCR},
		"CR CR LF":         {"a\r\r\n.\r\n", ErrDataBareCR},
		"LF dot LF":        {"a\r\n\n.\n\r\n.\r\n", ErrDataBareLF},
		"long CR boundary": {strings.Repeat("x", 63) + "\rY\r\n.\r\n", ErrDataBareCR},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			in := c.in
			if !strings.HasSuffix(in, ".\r\n") {
				in += "\n.\r\n"
			}
			_, err, rest := readData(t, in+"NEXT\r\n", 0, 0)
			if !errors.Is(err, c.want) {
				t.Fatalf("err %v, want %v", err, c.want)
			}
			if rest != "NEXT\r\n" {
				t.Fatalf("out of sync: rest %q", rest)
			}
		})
	}
}

func TestDataReaderSizeAndLineLimits(t *testing.T) {
	_, err, rest := readData(t, strings.Repeat("x", 100)+"\r\n.\r\nN", 50, 0)
	if !errors.Is(err, ErrDataTooLarge) || rest != "N" {
		t.Fatalf("size: %v %q", err, rest)
	}
	_, err, rest = readData(t, strings.Repeat("x", 1000)+"\r\n.\r\nN", 0, 1000)
	if !errors.Is(err, ErrDataLongLine) || rest != "N" {
		t.Fatalf("line: %v %q", err, rest)
	}
	got, err, _ := readData(t, strings.Repeat("x", 998)+"\r\n.\r\n", 0, 1000)
	if err != nil || len(got) != 1000 {
		t.Fatalf("998-octet line refused: %v", err)
	}
}

func TestDataReaderTruncatedStream(t *testing.T) {
	_, err, _ := readData(t, "abc\r\n", 0, 0)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("err %v", err)
	}
}

// smugglingSequences reads the fake end-of-data sequences of the published
// SMTP smuggling tools from the shared conformance data.
func smugglingSequences(t *testing.T) []string {
	t.Helper()
	raw, err := os.ReadFile("../../../shared/conformance/smtp-smuggling/eod-sequences.yml")
	if err != nil {
		t.Skipf("conformance data not available: %v", err)
	}
	var seqs []string
	for _, m := range regexp.MustCompile(`hex: "([0-9a-f]+)"`).FindAllStringSubmatch(string(raw), -1) {
		var b []byte
		for i := 0; i+1 < len(m[1]); i += 2 {
			v, _ := strconv.ParseUint(m[1][i:i+2], 16, 8)
			b = append(b, byte(v))
		}
		seqs = append(seqs, string(b))
	}
	if len(seqs) < 20 {
		t.Fatalf("found only %d sequences", len(seqs))
	}
	return seqs
}

// Every published fake end-of-data sequence is either refused (bare CR/LF)
// or kept as message content: the smuggled commands after it are never read
// as commands, and the reader ends exactly at the real CRLF.CRLF.
func TestDataReaderSmugglingSequences(t *testing.T) {
	const smuggled = "mail from:<admin@example.com>\r\nrcpt to:<victim@example.org>\r\ndata\r\nSubject: smuggled\r\n\r\nevil"
	for _, seq := range smugglingSequences(t) {
		in := "Subject: hi\r\n\r\nbody" + seq + smuggled + "\r\n.\r\nQUIT\r\n"
		got, err, rest := readData(t, in, 0, 0)
		if rest != "QUIT\r\n" {
			t.Fatalf("%q: reader stopped early, rest %q", seq, rest)
		}
		if err == nil && !strings.Contains(got, "mail from:") {
			t.Fatalf("%q: accepted but smuggled commands missing from content", seq)
		}
		if err == nil && (strings.Contains(seq, "\n.\n") || strings.ContainsRune(strings.ReplaceAll(seq, "\r\n", ""), '\n')) {
			t.Fatalf("%q: bare LF accepted", seq)
		}
	}
}

// DATA: line endings made CRLF, leading dots doubled, the final dot line.
// BDAT, where the length frames the data: the same line endings, the dots
// as they are, nothing marking the end.
func TestDataAndChunkWritersNormalise(t *testing.T) {
	for _, c := range []struct{ in, data, chunk string }{
		{"a\r\nb\r\n", "a\r\nb\r\n.\r\n", "a\r\nb\r\n"},
		{"a\nb", "a\r\nb\r\n.\r\n", "a\r\nb\r\n"},
		{".x\n..y\r\n.", "..x\r\n...y\r\n..\r\n.\r\n", ".x\r\n..y\r\n.\r\n"},
		{"a\rb\r", "a\r\nb\r\n.\r\n", "a\r\nb\r\n"},
		{"a\r\n.\r\nQUIT", "a\r\n..\r\nQUIT\r\n.\r\n", "a\r\n.\r\nQUIT\r\n"},
		{"", ".\r\n", ""},
		{"a\r\r\n.\r\r\n", "a\r\n\r\n..\r\n\r\n.\r\n", "a\r\n\r\n.\r\n\r\n"},
	} {
		// Byte by byte, to exercise the state across writes, and whole.
		for _, step := range []int{1, len(c.in) + 1} {
			got := string(writeParts(t, NewDataWriter, split(c.in, step)...))
			if got != c.data {
				t.Errorf("DATA %q in writes of %d: got %q, want %q", c.in, step, got, c.data)
			}
			// What we write, a strict reader takes whole, ending exactly at our end.
			if _, err, rest := readData(t, got+"NEXT", 0, 0); err != nil || rest != "NEXT" {
				t.Errorf("%q: strict reader refused our output: %v, rest %q", c.in, err, rest)
			}
			if got := string(writeParts(t, NewChunkWriter, split(c.in, step)...)); got != c.chunk {
				t.Errorf("BDAT %q in writes of %d: got %q, want %q", c.in, step, got, c.chunk)
			}
		}
	}
}

// writeParts writes parts through a writer that newW makes over a small
// buffer, closes it and returns what came out.
func writeParts(t *testing.T, newW func(*bufio.Writer) *DataWriter, parts ...[]byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	bw := bufio.NewWriterSize(&buf, 16)
	w := newW(bw)
	for _, p := range parts {
		if n, err := w.Write(p); n != len(p) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", p, n, err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// split cuts s into parts of n octets (the last may be shorter).
func split(s string, n int) [][]byte {
	var parts [][]byte
	for i := 0; i < len(s); i += n {
		parts = append(parts, []byte(s[i:min(i+n, len(s))]))
	}
	return parts
}

func TestReadReplyCleansControlCharacters(t *testing.T) {
	r, err := ReadReply(bufio.NewReader(strings.NewReader("550 5.1.1 bad\ruser\x00 here\r\n")))
	if err != nil || r.Enhanced != "5.1.1" || r.Text() != "bad?user? here" {
		t.Fatalf("%+v %v", r, err)
	}
}
