package dkim

import (
	"context"
	"strings"
	"testing"

	"github.com/posthorn/posthorn/internal/dns/dnstest"
)

// Seeds also live in testdata/fuzz/<name>/.
func FuzzParseSignature(f *testing.F) {
	f.Add("v=1; a=rsa-sha256; d=example.net; s=brisbane; c=relaxed/simple; q=dns/txt; l=1234; t=1117574938; x=1118006938; h=from:to:subject:date; bh=MTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTI=; b=dzdVyOfAKCdLXdJOc9G2q8LoXSlEniSbav+yuU4zGeeruD00lszZVoG4ZHRNiYzR")
	f.Add("v=1; a=ed25519-sha256; d=x; s=y; h=from; bh=AA==; b=AA==; i=@X")
	f.Fuzz(func(t *testing.T, s string) {
		sig, err := ParseSignature(s)
		if err != nil {
			return
		}
		if sig.Domain == "" || sig.Selector == "" || len(sig.B) == 0 || len(sig.BodyHash) == 0 {
			t.Fatalf("accepted signature lacks required parts: %+v", sig)
		}
		if !validDomain(sig.Domain) || strings.ContainsAny(sig.Domain, "()\r\n ;") {
			t.Fatalf("accepted d=%q", sig.Domain)
		}
		if sig.BodyLength < -1 || sig.Timestamp < -1 || sig.Expiration < -1 {
			t.Fatalf("negative numbers: %+v", sig)
		}
	})
}

func FuzzParseKeyRecord(f *testing.F) {
	f.Add("v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=")
	f.Add("v=DKIM1; p=")
	f.Add("k=rsa; t=y:s; h=sha256; s=email; n=notes; p=MFwwDQYJKoZIhvcNAQEBBQADSwAwSAJBANmBe10IgY+u7h3enWTukkqtUD5PR52Tb/mPfjC0QJTocVBq6Za/PlzfV+Py92VaCak19F4WrbVTK5Gg5tW220MCAwEAAQ==")
	f.Fuzz(func(t *testing.T, s string) {
		k, err := ParseKeyRecord(s)
		if err != nil {
			return
		}
		if k.PublicKey == nil || k.Bits() == 0 {
			t.Fatalf("accepted key record without a key: %+v", k)
		}
	})
}

// FuzzVerify feeds whole messages; it must not panic, and must return one
// result per DKIM-Signature field and never a pass without a key.
func FuzzVerify(f *testing.F) {
	f.Add(testMessage)
	f.Add("DKIM-Signature: v=1; a=ed25519-sha256; d=example.com; s=ed; h=from; bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=; b=AAAA\r\nFrom: a@example.com\r\n\r\nbody\r")
	f.Add("DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=ed; h=from; l=3; bh=AA==; b=AA==\nFrom: x\n\n\n\n \t\r\r\n")
	r := dnstest.NewResolver(dnstest.Zone{
		"ed._domainkey.example.com": {TXT: []string{"v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="}},
	})
	f.Fuzz(func(t *testing.T, msg string) {
		res, err := Verify(context.Background(), r, strings.NewReader(msg), nil)
		if err != nil {
			return
		}
		n := 0
		for _, line := range strings.Split(msg, "\n") {
			line = strings.TrimSuffix(line, "\r")
			if line == "" {
				break
			}
			if line[0] == ' ' || line[0] == '\t' {
				continue
			}
			name, _, _ := strings.Cut(line, ":")
			if strings.EqualFold(strings.TrimRight(name, " \t"), "DKIM-Signature") {
				n++
			}
		}
		if len(res) != n {
			t.Fatalf("%d results for %d signature fields", len(res), n)
		}
		for _, r := range res {
			if r.Status == StatusPass && r.KeyBits == 0 {
				t.Fatalf("pass without a key: %+v", r)
			}
		}
	})
}
