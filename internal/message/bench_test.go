package message

import (
	"crypto/tls"
	"io"
	"strings"
	"testing"
	"time"
)

// BenchmarkReceived builds the Received header of every accepted message.
func BenchmarkReceived(b *testing.B) {
	info := ReceivedInfo{Helo: "client.example.org", ClientIP: "192.0.2.1", By: "mx.example.test", ESMTP: true,
		TLS: &tls.ConnectionState{Version: tls.VersionTLS13, CipherSuite: tls.TLS_AES_128_GCM_SHA256},
		ID:  "1k845halmhimg8o4", For: "bob@example.test", Date: time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)}
	b.ReportAllocs()
	for b.Loop() {
		Received(info)
	}
}

// BenchmarkHeaderFilter streams a 100 KB message through the filter that
// drops forged Authentication-Results fields on the way to the spool, in
// the 16 KB writes a session makes.
func BenchmarkHeaderFilter(b *testing.B) {
	msg := []byte("Received: from a by b; Mon, 1 Jan 2025 00:00:00 +0000\r\nAuthentication-Results: mx.example.test; spf=pass\r\nFrom: a@example.org\r\nTo: b@example.test\r\nSubject: bench\r\n\r\n" +
		strings.Repeat("a body line of text that is about seventy octets long, give or take\r\n", 1500))
	drop := func(name, value string) bool {
		return strings.EqualFold(name, "Authentication-Results") && strings.HasPrefix(value, "mx.example.test")
	}
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		f := &HeaderFilter{W: io.Discard, Drop: drop}
		for p := msg; len(p) > 0; {
			n := min(len(p), 16<<10)
			if _, err := f.Write(p[:n]); err != nil {
				b.Fatal(err)
			}
			p = p[n:]
		}
		if err := f.Close(); err != nil {
			b.Fatal(err)
		}
	}
}
