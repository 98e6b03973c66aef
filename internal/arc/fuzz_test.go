package arc

import (
	"context"
	"crypto/ed25519"
	"strings"
	"testing"
	"time"

	"github.com/posthorn/posthorn/internal/dkim"
	"github.com/posthorn/posthorn/internal/dns/dnstest"
)

// Seeds also live in testdata/fuzz/<name>/ (ARC fields and messages of the
// ValiMail suite).

func FuzzParseSeal(f *testing.F) {
	f.Add("a=rsa-sha256; b=AAAA; cv=none; d=example.org; i=1; s=dummy; t=12345")
	f.Add("i=50; a=ed25519-sha256; cv=pass; d=x; s=y; b=AA==;")
	f.Fuzz(func(t *testing.T, s string) {
		seal, err := ParseSeal(s)
		if err != nil {
			return
		}
		if seal.Instance < 1 || seal.Instance > MaxInstances {
			t.Fatalf("accepted i=%d", seal.Instance)
		}
		switch seal.ChainValidation {
		case StatusNone, StatusPass, StatusFail:
		default:
			t.Fatalf("accepted cv=%q", seal.ChainValidation)
		}
		if len(seal.Signature) == 0 || !dkim.ValidDomain(seal.Domain) || !dkim.ValidDomain(seal.Selector) {
			t.Fatalf("accepted seal lacks required parts: %+v", seal)
		}
		if supportedAlgorithms[seal.Algorithm] != seal.KeyAlgorithm {
			t.Fatalf("algorithm %q / %q", seal.Algorithm, seal.KeyAlgorithm)
		}
	})
}

func FuzzParseMessageSignature(f *testing.F) {
	f.Add("a=rsa-sha256; b=AAAA; bh=AAAA; c=relaxed/relaxed; d=example.org; h=from:to; i=1; s=dummy; t=12345")
	f.Add("i=2; a=ed25519-sha256; bh=AA==; b=AA==; d=x; s=y; h=; l=0; x=9; t=1; q=dns/txt; v=1")
	f.Fuzz(func(t *testing.T, s string) {
		ams, err := ParseMessageSignature(s)
		if err != nil {
			return
		}
		if ams.Instance < 1 || ams.Instance > MaxInstances {
			t.Fatalf("accepted i=%d", ams.Instance)
		}
		if len(ams.Signature) == 0 || len(ams.BodyHash) == 0 || !dkim.ValidDomain(ams.Domain) {
			t.Fatalf("accepted signature lacks required parts: %+v", ams)
		}
		for _, c := range []string{ams.HeaderCanon, ams.BodyCanon} {
			if c != "simple" && c != "relaxed" {
				t.Fatalf("canonicalization %q", c)
			}
		}
		for _, h := range ams.HeaderFields {
			if h == "" || strings.EqualFold(h, fieldSeal) || strings.ContainsAny(h, ": \t\r\n") {
				t.Fatalf("h= entry %q", h)
			}
		}
		if ams.BodyLength < -1 || ams.Timestamp < -1 || ams.Expiration < -1 {
			t.Fatalf("negative numbers: %+v", ams)
		}
	})
}

func FuzzParseAuthResults(f *testing.F) {
	f.Add("i=1; lists.example.org; spf=pass smtp.mfrom=jqd@d1.example")
	f.Add(` (c) i (c) = (c) 7 (c) ; "quoted id" (c); none`)
	f.Fuzz(func(t *testing.T, s string) {
		aar, err := ParseAuthResults(s)
		if err != nil {
			return
		}
		if aar.Instance < 1 || aar.Instance > MaxInstances || aar.AuthServID == "" {
			t.Fatalf("accepted %+v", aar)
		}
		if strings.ContainsAny(aar.Payload, "\r\n") {
			t.Fatalf("payload with CR or LF: %q", aar.Payload)
		}
	})
}

// suiteKeyZone is the ValiMail suite's dummy key, so that fuzzed suite
// messages reach the signature checks.
func suiteKeyZone() dnstest.Zone {
	return dnstest.Zone{"dummy._domainkey.example.org": {TXT: []string{
		"v=DKIM1; k=rsa; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDkHlOQoBTzWRiGs5V6NpP3idY6Wk08a5qhdR6wy5bdOKb2jLQiY/J16JYi0Qvx/byYzCNb3W91y3FutACDfzwQ/BC/e/8uBsCR+yz1Lxj+PL6lHvqMKrM3rG4hstT5QjvHO9PzoxZyVYLzBfO2EeC3Ip3G+2kryOTIKT+l/K4w3QIDAQAB",
	}}}
}

// FuzzVerify feeds whole messages: no panic, a status that agrees with
// the instance count, and a pass only with a well-formed chain.
func FuzzVerify(f *testing.F) {
	f.Add(testMessage)
	r := dnstest.NewResolver(suiteKeyZone())
	f.Fuzz(func(t *testing.T, msg string) {
		res, err := Verify(context.Background(), r, strings.NewReader(msg), &VerifyOptions{Now: testNow})
		if err != nil {
			return
		}
		switch res.Status {
		case StatusNone:
			if res.Instances != 0 {
				t.Fatalf("none with %d instances", res.Instances)
			}
		case StatusPass:
			if res.Instances < 1 || len(res.Sets) != res.Instances || res.OldestPass < 0 || res.OldestPass > res.Instances {
				t.Fatalf("pass with %+v", res)
			}
		case StatusFail:
			if res.Reason == "" {
				t.Fatal("fail without a reason")
			}
		default:
			t.Fatalf("status %q", res.Status)
		}
	})
}

// FuzzSignThenVerify: whatever the message and the A-R text, a set we add
// to a message without a chain is three well-formed fields that verify.
func FuzzSignThenVerify(f *testing.F) {
	f.Add(testMessage, "spf=pass smtp.mailfrom=a@b.example; dkim=none")
	f.Add("From: x\r\n\r\n", "Authentication-Results: mx.example; arc=none (c;) reason=\"a;b\"")
	key := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	txt, err := dkim.PublicKeyRecord(key)
	if err != nil {
		f.Fatal(err)
	}
	r := dnstest.NewResolver(dnstest.Zone{"s._domainkey.example": {TXT: []string{txt}}})
	f.Fuzz(func(t *testing.T, msg, results string) {
		set, err := Sign(strings.NewReader(msg), &SignOptions{
			Domain: "example", Selector: "s", Key: key, AuthServID: "mx.example",
			AuthResults: results, ChainValidation: StatusNone,
			Now: func() time.Time { return time.Unix(1e9, 0) },
		})
		if err != nil {
			return
		}
		out := set.String()
		for _, line := range strings.Split(strings.TrimSuffix(out, "\r\n"), "\r\n") {
			if line == "" || strings.ContainsAny(line, "\r\n") {
				t.Fatalf("bad line %q in\n%s", line, out)
			}
			if line[0] != ' ' && line[0] != '\t' && arcKind(line[:max(strings.IndexByte(line, ':'), 0)]) == "" {
				t.Fatalf("line %q is neither an ARC field nor a continuation", line)
			}
		}
		// Our ARC fields must not be mistaken for the end of the header.
		sealed := out + msg
		if !strings.Contains(msg, "\n") || strings.Contains(msg, "\r") && !strings.Contains(msg, "\r\n") {
			return // not a message whose header we can round-trip
		}
		res, err := Verify(context.Background(), r, strings.NewReader(sealed), &VerifyOptions{Now: func() time.Time { return time.Unix(1e9, 0) }})
		if err != nil {
			t.Fatal(err)
		}
		if res.Status != StatusPass && !strings.Contains(strings.ToLower(msg), "arc-") {
			t.Fatalf("our own set does not verify: %s (%s)\n%q", res.Status, res.Reason, sealed)
		}
	})
}
