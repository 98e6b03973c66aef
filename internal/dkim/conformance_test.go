package dkim

import (
	"strings"
	"testing"
)

// gmailKey is the key dkimpy's tests serve at 20120113._domainkey.gmail.com
// for test2.message (dkimpy 1.1.4, dkim/tests/test_dkim.py).
const gmailKey = "k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA1Kd87/UeJjenpabgbFwh" +
	"+eBCsSTrqmwIYYvywlbhbqoo2DymndFkbjOVIPIldNs/m40KF+yzMn1skyoxcTUGCQ" +
	"s8g3FgD2Ap3ZB5DekAo5wMmk4wimDO+U8QzI3SD07y2+07wlNWwIt8svnxgdxGkVbb" +
	"hzY8i+RQ9DpSVpPbF7ykQxtKXkv/ahW3KjViiAH+ghvvIhkx4xYSIc9oSwVmAl5Oct" +
	"MEeWUwg8Istjqz8BZeTWbf41fbNhte7Y+YqZOwq1Sd0DbvYAD9NOZK9vlfuac0598H" +
	"Y+vtSBczUiKERHv1yRbcaQtZFh5wtiRrN04BLUTD21MycBX5jYchHjPY/wIDAQAB"

// brokenKey is dkimpy's test_catch_bad_key record: base64 with a byte lost.
const brokenKey = "k=rsa; p=MFwwDQYJKoZIhvNAQEBBQADSwAwSAJBANmBe10IgY+u7h3enWTukkqtUD5PR52T" +
	"b/mPfjC0QJTocVBq6Za/PlzfV+Py92VaCak19F4WrbVTK5Gg5tW220MCAwEAAQ=="

func TestRFC8463ExampleVerifiesBothSignatures(t *testing.T) {
	res := verify(t, loadZone(t), readConf(t, "rfc/rfc8463-appA3-signed.eml"), nil)
	wantStatuses(t, res, StatusPass, StatusPass)
	if res[0].Algorithm != "ed25519-sha256" || res[0].Selector != "brisbane" || res[0].KeyBits != 256 {
		t.Errorf("first signature: %+v", res[0])
	}
	if res[1].Algorithm != "rsa-sha256" || res[1].Selector != "test" || res[1].Domain != "football.example.com" {
		t.Errorf("second signature: %+v", res[1])
	}
}

func TestRFC6376A2FailsOnBodyHash(t *testing.T) {
	// The RFC's bh= is the relaxed body hash while c= says simple/simple:
	// dkimpy and OpenDKIM reject it too.
	res := verify(t, loadZone(t), readConf(t, "rfc/rfc6376-appA2-signed.eml"), nil)
	wantStatuses(t, res, StatusFail)
	if !strings.Contains(res[0].Reason, "body hash") {
		t.Errorf("reason %q, want a body hash mismatch", res[0].Reason)
	}
	if res[0].Domain != "example.com" || res[0].Selector != "brisbane" {
		t.Errorf("result names d=%s s=%s", res[0].Domain, res[0].Selector)
	}
}

func dkimpyZone(t *testing.T) map[string]string {
	return map[string]string{
		"test._domainkey.example.com":              string(readConf(t, "dkimpy/test.txt")),
		"test._domainkey.football.example.com":     string(readConf(t, "dkimpy/test.txt")),
		"brisbane._domainkey.football.example.com": "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=",
		"sed._domainkey.test.ex":                   string(readConf(t, "dkimpy/eximtest.dns")),
		"20120113._domainkey.gmail.com":            gmailKey,
	}
}

func zoneOf(m map[string]string) []string {
	var kv []string
	for k, v := range m {
		kv = append(kv, k, strings.TrimSpace(v))
	}
	return kv
}

// TestDkimpyVectors runs the signed messages of dkimpy's test data with the
// outcome dkimpy's own tests (test_dkim.py, test_dkim_ed25519.py) assert.
func TestDkimpyVectors(t *testing.T) {
	z := txtZone(zoneOf(dkimpyZone(t))...)
	cases := []struct {
		file string
		want []Status
		why  string
	}{
		{"rfc6376.signed.msg", []Status{StatusPass, StatusPass}, "test_double_previous_verifies: ed25519 + rsa, simple/simple"},
		{"rfc6376.signed.rsa.msg", []Status{StatusPass}, "README: pass"},
		{"ed25519test2.msg", []Status{StatusPass}, "test_dkim_ed25519: Exim-made ed25519 signature"},
		{"test2.message", []Status{StatusPass}, "test_degenerate_folding: Debian bug#711751"},
		{"test.message.baddomain", []Status{StatusPermError}, "test_invalid_domain_verify: d=legitimate.com(.attacker.com"},
		{"test.message", nil, "test_verifies_nosig: no signature"},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			res := verify(t, z, crlf(readConf(t, "dkimpy/"+c.file)), nil)
			wantStatuses(t, res, c.want...)
		})
	}
}

// TestDkimpyKeyRecords signs dkimpy's test.message with test.private and
// serves each of dkimpy's key record variants.
func TestDkimpyKeyRecords(t *testing.T) {
	key, err := ParsePrivateKey(readConf(t, "dkimpy/test.private"))
	if err != nil {
		t.Fatal(err)
	}
	msg := string(crlf(readConf(t, "dkimpy/test.message")))
	signed := rawSign(t, msg, key, map[string]string{"a": "rsa-sha256", "d": "example.com", "s": "test", "h": "from:to:subject:date:message-id:from"})
	cases := []struct {
		record string
		want   Status
		why    string
	}{
		{"dkimpy/test.txt", StatusPass, "test_verifies"},
		{"dkimpy/test2.txt", StatusPass, "test_implicit_k: k= absent means rsa"},
		{"dkimpy/badversion.txt", StatusPermError, "test_bad_version: v=DKIM1: g=*"},
		{"dkimpy/badk.txt", StatusPermError, "test_unknown_k: k=ed25519-sha256"},
		{"dkimpy/test_bad.txt", StatusPermError, "truncated key"},
		{"dkimpy/test_tlsrpt.txt", StatusPermError, "test_ignores_tlsrptsvc: s=tlsrpt is not for email"},
	}
	for _, c := range cases {
		t.Run(c.record, func(t *testing.T) {
			z := txtZone("test._domainkey.example.com", strings.TrimSpace(string(readConf(t, c.record))))
			res := verify(t, z, []byte(signed), nil)
			wantStatuses(t, res, c.want)
		})
	}
	t.Run("test_catch_bad_key", func(t *testing.T) {
		z := txtZone("test._domainkey.football.example.com", brokenKey)
		res := verify(t, z, crlf(readConf(t, "dkimpy/rfc6376.signed.rsa.msg")), nil)
		wantStatuses(t, res, StatusPermError)
	})
}

// TestDkimpyKeyEncodings signs with dkimpy's RSA key files (PKCS#1 and
// PKCS#8, 1024 and 2048 bits) and its Ed25519 seed, and verifies against
// the public records in both encodings (test_dkim_rsavariants.py).
func TestDkimpyKeyEncodings(t *testing.T) {
	msg := string(crlf(readConf(t, "dkimpy/test.message")))
	cases := []struct{ priv, pub string }{
		{"dkimpy/1024_testkey.key", "dkimpy/1024_testkey_wo_markers.pub.txt"},
		{"dkimpy/1024_testkey.key", "dkimpy/1024_testkey_wo_markers.pub.rsa.txt"},
		{"dkimpy/2048_testkey.key", "dkimpy/2048_testkey_wo_markers.pub.txt"},
		{"dkimpy/2048_testkey.key", "dkimpy/2048_testkey_wo_markers.pub.rsa.txt"},
		{"dkimpy/2048_testkey_PKCS8.key", "dkimpy/2048_testkey_PKCS8.key.pub.txt"},
		{"dkimpy/ed25519test.key", "dkimpy/ed25519test.dns"},
		{"dkimpy/rfc8032_7_1.key", "../dkim/rfc/rfc8463-ed25519-private-seed.b64"},
	}
	for _, c := range cases {
		t.Run(c.priv+"+"+c.pub, func(t *testing.T) {
			key, err := ParsePrivateKey(readConf(t, c.priv))
			if err != nil {
				t.Fatal(err)
			}
			record := strings.TrimSpace(string(readConf(t, c.pub)))
			if strings.HasSuffix(c.pub, ".b64") {
				// The same seed as rfc8032_7_1.key: publish what we derive and
				// check it against RFC 8463 A.2.
				record = keyTXT(t, key)
				if !strings.HasSuffix(record, "p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=") {
					t.Fatalf("derived %q, want RFC 8463 A.2's key", record)
				}
			}
			s, err := NewSigner([]SigningKey{{Domain: "example.com", Selector: "test", Key: key}}, nil)
			if err != nil {
				t.Fatal(err)
			}
			sig, err := s.Sign("example.com", strings.NewReader(msg))
			if err != nil {
				t.Fatal(err)
			}
			res := verify(t, txtZone("test._domainkey.example.com", record), append(sig, msg...), nil)
			wantStatuses(t, res, StatusPass)
		})
	}
}

func TestDkimpySigningRefusesMessageWithoutFrom(t *testing.T) {
	key, err := ParsePrivateKey(readConf(t, "dkimpy/test.private"))
	if err != nil {
		t.Fatal(err)
	}
	s, _ := NewSigner([]SigningKey{{Domain: "example.com", Selector: "test", Key: key}}, nil)
	if _, err := s.Sign("example.com", strings.NewReader(string(crlf(readConf(t, "dkimpy/test_nofrom.message"))))); err == nil {
		t.Fatal("signed a message without From")
	}
}

// TestDkimpyMultipleFrom: test_multiple_from_fails. An extra unsigned field
// is harmless; an extra From above or below the signed one breaks the
// signature, because we oversign From.
func TestDkimpyMultipleFrom(t *testing.T) {
	key, err := ParsePrivateKey(readConf(t, "dkimpy/test.private"))
	if err != nil {
		t.Fatal(err)
	}
	s, _ := NewSigner([]SigningKey{{Domain: "example.com", Selector: "test", Key: key}}, nil)
	msg := string(crlf(readConf(t, "dkimpy/test.message")))
	sig, err := s.Sign("example.com", strings.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	z := txtZone("test._domainkey.example.com", strings.TrimSpace(string(readConf(t, "dkimpy/test.txt"))))
	head, body, _ := strings.Cut(msg, "\r\n\r\n")
	evil := "From: \"Resident Evil\" <sales@spammer.com>\r\n"
	for _, c := range []struct {
		name string
		msg  string
		want Status
	}{
		{"unknown header added", head + "\r\nX-Foo: bar\r\n\r\n" + body, StatusPass},
		{"From added at end", head + "\r\n" + evil + "\r\n" + body, StatusFail},
		{"From added in front", evil + head + "\r\n\r\n" + body, StatusFail},
	} {
		t.Run(c.name, func(t *testing.T) {
			wantStatuses(t, verify(t, z, append(append([]byte{}, sig...), c.msg...), nil), c.want)
		})
	}
}
