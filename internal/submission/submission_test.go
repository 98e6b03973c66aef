package submission

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/posthorn/posthorn/internal/dkim"
	"github.com/posthorn/posthorn/internal/dns/dnstest"
)

func data(s string) func() (io.Reader, error) {
	return func() (io.Reader, error) { return strings.NewReader(s), nil }
}

func TestAddsDateAndMessageIDOnlyWhenMissing(t *testing.T) {
	p := New(Options{Hostname: "mx.example.test", Now: func() time.Time { return time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC) }})
	add, err := p.Prepare(data("From: a@example.test\r\nSubject: x\r\n\r\nbody\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(add, "Date: Mon, 23 Nov 2026 12:00:00 +0000\r\n") || !strings.Contains(add, "@mx.example.test>\r\n") {
		t.Fatalf("added %q", add)
	}
	add, _ = p.Prepare(data("Date: Sun, 1 Nov 2026 00:00:00 +0000\r\nMessage-ID: <x@y>\r\nFrom: a@example.test\r\n\r\nbody\r\n"))
	if add != "" {
		t.Fatalf("added %q to a complete message", add)
	}
}

func TestSignsForTheFromDomainOnly(t *testing.T) {
	priv, txt, err := dkim.GenerateKey("ed25519")
	if err != nil {
		t.Fatal(err)
	}
	key, err := dkim.ParsePrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := dkim.NewSigner([]dkim.SigningKey{{Domain: "example.test", Selector: "ed1", Key: key}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := New(Options{Hostname: "mx.example.test", Signer: signer})
	msg := "From: Alice <alice@example.test>\r\nTo: b@example.org\r\nSubject: hi\r\n\r\nhello\r\n"
	add, err := p.Prepare(data(msg))
	if err != nil || !strings.HasPrefix(add, "DKIM-Signature:") {
		t.Fatalf("not signed: %q %v", add, err)
	}
	res, err := dkim.Verify(context.Background(), dnstest.NewResolver(dnstest.Zone{"ed1._domainkey.example.test": {TXT: []string{txt}}}), strings.NewReader(add+msg), nil)
	if err != nil || len(res) != 1 || res[0].Status != dkim.StatusPass {
		t.Fatalf("verify: %v %+v", err, res)
	}
	// Another From domain, or several authors: nothing to sign for.
	for _, from := range []string{"From: x@other.example\r\n", "From: a@example.test, b@other.example\r\n", ""} {
		add, err := p.Prepare(data(from + "Subject: s\r\n\r\nx\r\n"))
		if err != nil || strings.Contains(add, "DKIM-Signature") {
			t.Fatalf("%q: %q %v", from, add, err)
		}
	}
}
