package smtp

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"testing"
)

// BenchmarkDataReader reads a dot-stuffed message of 1 KB and 100 KB
// through the strict DATA reader, as a session does.
//
//	go test -run '^$' -bench DataReader -benchmem ./internal/smtp/
func BenchmarkDataReader(b *testing.B) {
	for _, size := range []int{1 << 10, 100 << 10} {
		var msg bytes.Buffer
		msg.WriteString("From: a@example.org\r\nTo: b@example.test\r\nSubject: bench\r\n\r\n")
		line := "..a line of text that is seventy-odd octets long, dot-stuffed at times\r\n"
		for msg.Len() < size {
			msg.WriteString(line)
		}
		msg.WriteString(".\r\n")
		wire := msg.Bytes()
		b.Run(fmt.Sprintf("size=%dKB", size>>10), func(b *testing.B) {
			b.SetBytes(int64(len(wire)))
			b.ReportAllocs()
			r := bytes.NewReader(wire)
			br := bufio.NewReaderSize(r, 16<<10)
			for b.Loop() {
				r.Reset(wire)
				br.Reset(r)
				dr := NewDataReader(br, 50<<20, 1000)
				if _, err := io.Copy(io.Discard, dr); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDataWriter writes a 100 KB message through the client-side
// dot-stuffing writer, as a relay does; "reference" is the byte-at-a-time
// writer it replaced (fuzz_writer_test.go), for comparison in one run.
//
//	go test -run '^$' -bench DataWriter -benchmem ./internal/smtp/
func BenchmarkDataWriter(b *testing.B) {
	var msg bytes.Buffer
	msg.WriteString("From: a@example.org\r\nTo: b@example.test\r\nSubject: bench\r\n\r\n")
	for msg.Len() < 100<<10 {
		msg.WriteString(".a line of text that is seventy-odd octets long, with a dot at times\r\n")
	}
	body := msg.Bytes()
	bw := bufio.NewWriterSize(io.Discard, 4096)
	b.Run("stuffing", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			w := NewDataWriter(bw)
			w.Write(body)
			w.Close()
		}
	})
	b.Run("reference", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		var out bytes.Buffer
		for b.Loop() {
			out.Reset()
			w := &referenceDataWriter{w: &out, atBOL: true}
			w.write(body)
			w.close()
		}
	})
}
