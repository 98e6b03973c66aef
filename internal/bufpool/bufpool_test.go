package bufpool

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

// CopyN behaves as io.CopyN: exactly n octets, io.EOF when the source
// has fewer, and the rest of the source left unread.
func TestCopyNAsIOCopyN(t *testing.T) {
	src := strings.NewReader(strings.Repeat("x", 100_000))
	var dst bytes.Buffer
	if n, err := CopyN(&dst, src, 70_000); n != 70_000 || err != nil || dst.Len() != 70_000 {
		t.Fatalf("CopyN 70000: %d %v, %d copied", n, err, dst.Len())
	}
	if n, err := CopyN(io.Discard, src, 50_000); n != 30_000 || !errors.Is(err, io.EOF) {
		t.Fatalf("CopyN past the end: %d %v", n, err)
	}
	if n, err := CopyN(io.Discard, src, 0); n != 0 || err != nil {
		t.Fatalf("CopyN 0: %d %v", n, err)
	}
}

func BenchmarkCopyAllocates(b *testing.B) {
	data := bytes.Repeat([]byte("a line of text\r\n"), 64)
	b.ReportAllocs()
	for b.Loop() {
		Copy(io.Discard, struct{ io.Reader }{bytes.NewReader(data)})
	}
}
