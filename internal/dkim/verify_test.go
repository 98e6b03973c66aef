// Small RSA keys are made on purpose, to test that verification refuses them.
//go:debug rsa1024min=0

package dkim

import (
	"context"
	"crypto"
	"strings"
	"testing"
	"time"

	msgauth "github.com/emersion/go-msgauth/dkim"

	"github.com/posthorn/posthorn/internal/dns/dnstest"
)

func dualSigner(t *testing.T) (*Signer, dnstest.Zone) {
	t.Helper()
	ed, rs := newEd25519(t), newRSA(t, 2048)
	s, err := NewSigner([]SigningKey{
		{Domain: "example.com", Selector: "ed1", Key: ed},
		{Domain: "example.com", Selector: "rsa1", Key: rs},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s, txtZone("ed1._domainkey.example.com", keyTXT(t, ed), "rsa1._domainkey.example.com", keyTXT(t, rs))
}

func TestSignThenVerifyDualSignature(t *testing.T) {
	s, z := dualSigner(t)
	sig, err := s.Sign("Example.COM", strings.NewReader(testMessage))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(string(sig), "DKIM-Signature:") != 2 || !strings.HasSuffix(string(sig), "\r\n") {
		t.Fatalf("want two fields:\n%s", sig)
	}
	res := verify(t, z, append(sig, testMessage...), nil)
	wantStatuses(t, res, StatusPass, StatusPass)
	if res[0].Algorithm != "ed25519-sha256" || res[1].Algorithm != "rsa-sha256" || res[1].KeyBits != 2048 {
		t.Errorf("algorithms: %+v", res)
	}
	// From oversigned: listed once more than present.
	h := strings.Join(res[0].HeaderFields, ":")
	if strings.Count(strings.ToLower(h), "from") != 2 {
		t.Errorf("h=%s does not oversign From", h)
	}
	for _, want := range []string{"Subject", "Date", "To", "Message-ID", "MIME-Version", "Content-Type"} {
		if !strings.Contains(h, want) {
			t.Errorf("h=%s lacks %s", h, want)
		}
	}
	if strings.Contains(h, "Cc") {
		t.Errorf("h=%s lists Cc, which the message lacks", h)
	}
}

func TestGoMsgauthAgreesWithUs(t *testing.T) {
	s, z := dualSigner(t)
	sig, err := s.Sign("example.com", strings.NewReader(testMessage))
	if err != nil {
		t.Fatal(err)
	}
	r := dnstest.NewResolver(z)
	vs, err := msgauth.VerifyWithOptions(strings.NewReader(string(sig)+testMessage), &msgauth.VerifyOptions{
		LookupTXT: func(name string) ([]string, error) {
			txt, _, err := r.LookupTXT(context.Background(), name)
			return txt, err
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vs {
		if v.Err != nil {
			t.Errorf("go-msgauth: %v", v.Err)
		}
	}
}

func TestChangesBreakSignature(t *testing.T) {
	s, z := dualSigner(t)
	sig, err := s.Sign("example.com", strings.NewReader(testMessage))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		msg  string
		want Status
	}{
		{"body changed", strings.Replace(testMessage, "lunch?", "dinner?", 1), StatusFail},
		{"body appended", testMessage + "P.S. click here\r\n", StatusFail},
		{"signed header changed", strings.Replace(testMessage, "Subject: Lunch", "Subject: Lunch!", 1), StatusFail},
		{"Cc added (not present at signing, not signed)", strings.Replace(testMessage, "Subject:", "Cc: eve@example.org\r\nSubject:", 1), StatusPass},
		{"relaxed: whitespace changes survive", strings.Replace(testMessage, "Subject: Lunch", "Subject:   Lunch ", 1), StatusPass},
		{"relaxed: trailing blank lines survive", testMessage + "\r\n\r\n", StatusPass},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			wantStatuses(t, verify(t, z, append(append([]byte{}, sig...), c.msg...), nil), c.want, c.want)
		})
	}
}

// TestVerifyPolicy covers what go-msgauth does not enforce, or enforces
// differently, with signatures made by rawSign.
func TestVerifyPolicy(t *testing.T) {
	ed := newEd25519(t)
	rs := newRSA(t, 1024)
	small := newRSA(t, 768)
	now := time.Unix(1_700_000_000, 0)
	opts := &VerifyOptions{Now: func() time.Time { return now }}
	base := func(extra map[string]string) map[string]string {
		m := map[string]string{"a": "ed25519-sha256", "d": "example.com", "s": "ed", "h": "from:to:subject"}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	z := txtZone(
		"ed._domainkey.example.com", keyTXT(t, ed),
		"rsa._domainkey.example.com", keyTXT(t, rs),
		"small._domainkey.example.com", keyTXT(t, small),
		"strict._domainkey.example.com", keyTXT(t, ed)+"; t=s",
		"testing._domainkey.example.com", keyTXT(t, ed)+"; t=y",
		"revoked._domainkey.example.com", "v=DKIM1; k=ed25519; p=",
		"sha1only._domainkey.example.com", keyTXT(t, rs)+"; h=sha1",
		"mismatch._domainkey.example.com", keyTXT(t, rs),
		"servfail._domainkey.example.com", "unused",
	)
	z["servfail._domainkey.example.com"] = dnstest.Records{ServFail: true}
	z["timeout._domainkey.example.com"] = dnstest.Records{Timeout: true}

	body := "Hello\r\n"
	msgWithBody := func(b string) string {
		return strings.Replace(testMessage, "Shall we have lunch?  \r\n\r\nAlice\r\n", b, 1)
	}
	cases := []struct {
		name   string
		key    crypto.Signer
		tags   map[string]string
		msg    string // message to verify; the signed one is msgWithBody(body)
		want   Status
		reason string
	}{
		{"plain", ed, base(nil), "", StatusPass, ""},
		{"rsa 1024", rs, base(map[string]string{"a": "rsa-sha256", "s": "rsa"}), "", StatusPass, ""},
		{"x= in the past", ed, base(map[string]string{"t": "1699990000", "x": "1699999000"}), "", StatusFail, "expired"},
		{"x= within clock skew", ed, base(map[string]string{"t": "1699990000", "x": "1699999900"}), "", StatusPass, ""},
		{"x= before t=", ed, base(map[string]string{"t": "1699990000", "x": "1699980000"}), "", StatusPermError, "precedes"},
		{"t= in the future", ed, base(map[string]string{"t": "1700003600"}), "", StatusFail, "future"},
		{"t= slightly ahead (skew)", ed, base(map[string]string{"t": "1700000100"}), "", StatusPass, ""},
		{"t=s key, i= at d=", ed, base(map[string]string{"s": "strict", "i": "alice@Example.com"}), "", StatusPass, ""},
		{"t=s key, i= in subdomain", ed, base(map[string]string{"s": "strict", "i": "@mail.example.com"}), "", StatusFail, "t=s"},
		{"i= outside d=", ed, base(map[string]string{"i": "@example.org"}), "", StatusPermError, "not within"},
		{"testing key", ed, base(map[string]string{"s": "testing"}), "", StatusPass, "testing"},
		{"revoked key", ed, base(map[string]string{"s": "revoked"}), "", StatusFail, "revoked"},
		{"RSA under 1024 bits", small, base(map[string]string{"a": "rsa-sha256", "s": "small"}), "", StatusFail, "768 bits"},
		{"sha1 claimed", rs, base(map[string]string{"a": "rsa-sha1", "s": "rsa"}), "", StatusFail, "RFC 8301"},
		{"key h= excludes sha256", rs, base(map[string]string{"a": "rsa-sha256", "s": "sha1only"}), "", StatusPermError, "h="},
		{"key type mismatch", ed, base(map[string]string{"s": "mismatch"}), "", StatusPermError, "does not match"},
		{"no key record", ed, base(map[string]string{"s": "nokey"}), "", StatusPermError, "no key record"},
		{"SERVFAIL on key", ed, base(map[string]string{"s": "servfail"}), "", StatusTempError, ""},
		{"timeout on key", ed, base(map[string]string{"s": "timeout"}), "", StatusTempError, ""},
		{"From not signed", ed, base(map[string]string{"h": "to:subject"}), "", StatusPermError, "From"},
		{"unknown canonicalization", ed, base(map[string]string{"c": "relaxed/fancy"}), "", StatusPermError, "canonicalization"},
		{"unknown query method", ed, base(map[string]string{"q": "http/well-known"}), "", StatusPermError, "query"},
		{"simple/simple", ed, base(map[string]string{"c": "simple/simple"}), "", StatusPass, ""},
		{"l= covers whole body", ed, base(map[string]string{"l": "7"}), "", StatusPass, ""},
		{"l= with trailing whitespace appended", ed, base(map[string]string{"l": "7", "c": "simple/simple"}), msgWithBody(body + "   \r\n\t\r\nx"), StatusPolicy, "unsigned"},
		{"l= with blank lines appended", ed, base(map[string]string{"l": "7", "c": "simple/simple"}), msgWithBody(body + "\r\n\r\n  \r\n"), StatusPass, ""},
		{"l= with content appended", ed, base(map[string]string{"l": "7"}), msgWithBody(body + "<a href=http://evil>click</a>\r\n"), StatusPolicy, "unsigned"},
		{"l= longer than body", ed, base(map[string]string{"l": "70"}), "", StatusFail, "longer"},
		{"l= zero signs nothing", ed, base(map[string]string{"l": "0"}), "", StatusPolicy, "unsigned"},
		{"l= overflow", ed, base(map[string]string{"l": "99999999999999999999999"}), "", StatusPermError, "l="},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			signed := rawSign(t, msgWithBody(body), c.key, c.tags)
			msg := signed
			if c.msg != "" {
				sigField, _, _ := strings.Cut(signed, "From:")
				msg = sigField + c.msg
			}
			res := verify(t, z, []byte(msg), opts)
			wantStatuses(t, res, c.want)
			if !strings.Contains(res[0].Reason, c.reason) {
				t.Errorf("reason %q does not mention %q", res[0].Reason, c.reason)
			}
		})
	}
}

func TestUnsignedBodyReported(t *testing.T) {
	ed := newEd25519(t)
	msg := strings.Replace(testMessage, "Shall we have lunch?  \r\n\r\nAlice\r\n", "Hi\r\n", 1)
	signed := rawSign(t, msg, ed, map[string]string{"a": "ed25519-sha256", "d": "example.com", "s": "ed", "h": "from", "l": "4", "c": "simple/simple"})
	z := txtZone("ed._domainkey.example.com", keyTXT(t, ed))
	res := verify(t, z, []byte(signed+"Footer of the list\r\n"), &VerifyOptions{MaxUnsignedBody: 100})
	wantStatuses(t, res, StatusPass)
	if res[0].UnsignedBody != 20 || res[0].BodyLength != 4 {
		t.Errorf("UnsignedBody=%d BodyLength=%d, want 20 and 4", res[0].UnsignedBody, res[0].BodyLength)
	}
}

func TestTooManySignaturesAreNeutral(t *testing.T) {
	s, z := dualSigner(t)
	msg := testMessage
	for i := 0; i < 3; i++ {
		sig, err := s.Sign("example.com", strings.NewReader(msg))
		if err != nil {
			t.Fatal(err)
		}
		msg = string(sig) + msg
	}
	res := verify(t, z, []byte(msg), &VerifyOptions{MaxSignatures: 4})
	wantStatuses(t, res, StatusPass, StatusPass, StatusPass, StatusPass, StatusNeutral, StatusNeutral)
	if res[5].Selector != "rsa1" {
		t.Errorf("neutral result does not name its selector: %+v", res[5])
	}
}

func TestGenerateKey(t *testing.T) {
	for _, algo := range []string{"ed25519", "rsa2048"} {
		t.Run(algo, func(t *testing.T) {
			priv, txt, err := GenerateKey(algo)
			if err != nil {
				t.Fatal(err)
			}
			wantK := map[string]string{"ed25519": "v=DKIM1; k=ed25519; p=", "rsa2048": "v=DKIM1; k=rsa; p="}[algo]
			if !strings.HasPrefix(txt, wantK) {
				t.Errorf("TXT %q does not start with %q", txt, wantK)
			}
			rec, err := ParseKeyRecord(txt)
			if err != nil {
				t.Fatal(err)
			}
			if want := map[string]int{"ed25519": 256, "rsa2048": 2048}[algo]; rec.Bits() != want {
				t.Errorf("bits %d, want %d", rec.Bits(), want)
			}
			key, err := ParsePrivateKey(priv)
			if err != nil {
				t.Fatal(err)
			}
			s, err := NewSigner([]SigningKey{{Domain: "example.com", Selector: "k", Key: key}}, nil)
			if err != nil {
				t.Fatal(err)
			}
			sig, err := s.Sign("example.com", strings.NewReader(testMessage))
			if err != nil {
				t.Fatal(err)
			}
			wantStatuses(t, verify(t, txtZone("k._domainkey.example.com", txt), append(sig, testMessage...), nil), StatusPass)
		})
	}
	if _, _, err := GenerateKey("dsa"); err == nil {
		t.Error("GenerateKey(dsa) succeeded")
	}
}

func TestSignerRefusesUnknownDomainAndWeakKey(t *testing.T) {
	s, _ := dualSigner(t)
	if _, err := s.Sign("example.org", strings.NewReader(testMessage)); err == nil {
		t.Error("signed for a domain without keys")
	}
	if !s.HasDomain("EXAMPLE.com.") || s.HasDomain("example.org") {
		t.Error("HasDomain")
	}
	if _, err := NewSigner([]SigningKey{{Domain: "example.com", Selector: "x", Key: newRSA(t, 768)}}, nil); err == nil {
		t.Error("accepted a 768-bit RSA key")
	}
}

func TestWithoutB(t *testing.T) {
	for in, want := range map[string]string{
		"DKIM-Signature: a=1; b=abc\r\n def; bh=xyz\r\n": "DKIM-Signature: a=1; b=; bh=xyz\r\n",
		"DKIM-Signature: a=1; bh=xyz; b=abc\r\n def\r\n": "DKIM-Signature: a=1; bh=xyz; b=\r\n",
		"DKIM-Signature: a=1; bh=xyz;\r\n b = abc;\r\n":  "DKIM-Signature: a=1; bh=xyz;\r\n b =;\r\n",
	} {
		if got := withoutB(in); got != want {
			t.Errorf("withoutB(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestBodyCanonicalization(t *testing.T) {
	cases := []struct{ in, simple, relaxed string }{
		{"", "\r\n", ""},
		{"\r\n\r\n", "\r\n", ""},
		{"a", "a\r\n", "a\r\n"},
		{" C \r\nD \t E\r\n\r\n\r\n", " C \r\nD \t E\r\n", " C\r\nD E\r\n"},
		{"a\nb\n", "a\r\nb\r\n", "a\r\nb\r\n"},
		{"a\rb\r\n", "a\rb\r\n", "a\rb\r\n"},
		{"x\r\n \r\n", "x\r\n \r\n", "x\r\n"},
		{"x\r\n\r\ny\r", "x\r\n\r\ny\r\r\n", "x\r\n\r\ny\r\r\n"},
	}
	for _, c := range cases {
		for method, want := range map[string]string{"simple": c.simple, "relaxed": c.relaxed} {
			// Feed one octet at a time too: state must survive Write boundaries.
			for _, chunk := range []int{len(c.in) + 1, 1} {
				var out strings.Builder
				bc := newBodyCanon(&out, method)
				for i := 0; i < len(c.in); i += chunk {
					bc.Write([]byte(c.in[i:min(i+chunk, len(c.in))]))
				}
				bc.Close()
				if out.String() != want {
					t.Errorf("%s(%q) chunk %d = %q, want %q", method, c.in, chunk, out.String(), want)
				}
			}
		}
	}
}

func TestHeaderCanonicalization(t *testing.T) {
	in := "SubJect \t:  Is \r\n\t dinner   ready? \r\n"
	if got := canonHeader(in, "relaxed"); got != "subject:Is dinner ready?\r\n" {
		t.Errorf("relaxed = %q", got)
	}
	if got := canonHeader(in, "simple"); got != in {
		t.Errorf("simple = %q", got)
	}
}
