package dkim

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

// BenchmarkSign signs a 1 KB and a 100 KB message with an Ed25519 and an
// RSA-2048 key, as submission does for every message of a domain with keys.
//
//	go test -run '^$' -bench Sign -benchmem ./internal/dkim/
func BenchmarkSign(b *testing.B) {
	for _, algo := range []string{"ed25519", "rsa2048"} {
		pemKey, _, err := GenerateKey(algo)
		if err != nil {
			b.Fatal(err)
		}
		key, err := ParsePrivateKey(pemKey)
		if err != nil {
			b.Fatal(err)
		}
		s, err := NewSigner([]SigningKey{{Domain: "example.test", Selector: "s1", Key: key}}, nil)
		if err != nil {
			b.Fatal(err)
		}
		for _, size := range []int{1 << 10, 100 << 10} {
			msg := []byte("From: a@example.test\r\nTo: b@example.org\r\nSubject: bench\r\nDate: Mon, 1 Jan 2025 00:00:00 +0000\r\nMessage-ID: <1@example.test>\r\n\r\n")
			msg = append(msg, strings.Repeat("a body line of text that is about seventy octets long, give or take\r\n", size/70)...)
			b.Run(fmt.Sprintf("%s/size=%dKB", algo, size>>10), func(b *testing.B) {
				b.SetBytes(int64(len(msg)))
				b.ReportAllocs()
				for b.Loop() {
					if _, err := s.Sign("example.test", bytes.NewReader(msg)); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
