package authres

import (
	"strings"
	"testing"

	msgauth "github.com/emersion/go-msgauth/authres"
)

func TestFormat(t *testing.T) {
	got := Format("mx.example.com", []Result{
		SPF("pass", "alice@example.com", "mail.example.com"),
		DKIM("pass", "example.com", "ed1", "ed25519-sha256", "abcdefghijkl", ""),
		DKIM("fail", "example.com", "rsa1", "rsa-sha256", "zyxwvuts", "body hash did not verify"),
		DMARC("pass", "example.com", "reject"),
	})
	want := "Authentication-Results: mx.example.com;\r\n" +
		"\tspf=pass smtp.mailfrom=alice@example.com smtp.helo=mail.example.com;\r\n" +
		"\tdkim=pass header.d=example.com header.s=ed1 header.a=ed25519-sha256\r\n" +
		"\theader.b=abcdefgh;\r\n" +
		"\tdkim=fail reason=\"body hash did not verify\" header.d=example.com\r\n" +
		"\theader.s=rsa1 header.a=rsa-sha256 header.b=zyxwvuts;\r\n" +
		"\tdmarc=pass (p=reject) header.from=example.com\r\n"
	if got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
	if got := Format("mx.example.com", nil); got != "Authentication-Results: mx.example.com; none\r\n" {
		t.Errorf("no results: %q", got)
	}
}

// TestFormatNeverInjects: values from the network (MAIL FROM, HELO, d=,
// reasons) cannot break out of their place or start a new header line.
func TestFormatNeverInjects(t *testing.T) {
	evil := "x\r\nX-Injected: yes"
	got := Format("mx.example.com", []Result{
		SPF("pass", `"a;b"@example.com`, evil),
		DKIM("permerror", "legitimate.com(.attacker.com", "s;x=1", "rsa-sha256", "", "bad \"d=\"\r\n\\"),
		DMARC("none", "ex ample.com", ""),
		{Method: "x\r\ny", Value: "pass", Comment: "a) b(\r\n", Props: []Prop{{"smtp", "mailfrom", "a@b;c=d"}}},
	})
	for i, line := range strings.Split(strings.TrimSuffix(got, "\r\n"), "\r\n") {
		if i > 0 && !strings.HasPrefix(line, "\t") {
			t.Errorf("line %d %q is not a continuation", i, line)
		}
		if strings.ContainsAny(line, "\r\n") {
			t.Errorf("line %d carries CR/LF", i)
		}
	}
	// Outside quoted-strings and comments there are exactly four ";"
	// (after the authserv-id and between results): nothing was split open.
	// (go-msgauth's parser splits on every ";", so it cannot judge this.)
	if n := topLevelSemicolons(got); n != 4 {
		t.Errorf("%d top-level semicolons in %q, want 4", n, got)
	}
	if !strings.Contains(got, `header.d="legitimate.com(.attacker.com"`) || !strings.Contains(got, `smtp.helo="x  X-Injected: yes"`) {
		t.Errorf("values not quoted as expected: %q", got)
	}
}

func topLevelSemicolons(s string) int {
	n, depth, quoted := 0, 0, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && (quoted || depth > 0):
			i++
		case quoted:
			quoted = c != '"'
		case c == '"' && depth == 0:
			quoted = true
		case c == '(':
			depth++
		case c == ')' && depth > 0:
			depth--
		case c == ';' && depth == 0:
			n++
		}
	}
	return n
}

func TestGoMsgauthParsesOurField(t *testing.T) {
	got := Format("mx.example.com", []Result{
		SPF("softfail", "bounce@example.net", ""),
		DKIM("pass", "example.com", "ed1", "ed25519-sha256", "abc", ""),
		DMARC("fail", "example.com", "quarantine"),
	})
	_, value, _ := strings.Cut(strings.ReplaceAll(got, "\r\n", ""), ":")
	id, results, err := msgauth.Parse(value)
	if err != nil || id != "mx.example.com" || len(results) != 3 {
		t.Fatalf("%q %v %v", id, results, err)
	}
	if r := results[2].(*msgauth.DMARCResult); r.From != "example.com" || r.Value != "fail" {
		t.Errorf("dmarc: %#v", r)
	}
}

func TestClaimsAuthServID(t *testing.T) {
	for field, want := range map[string]bool{
		"Authentication-Results: mx.example.com; spf=pass smtp.mailfrom=a@b": true,
		"authentication-results:MX.Example.COM;none":                         true,
		" mx.example.com 1; dkim=pass":                                       true,
		"(forged) mx.example.com;\r\n\tdkim=pass":                            true,
		"(nested (comment)) \"mx.example.com\"; dkim=pass":                   true,
		"mx.example.com.; dkim=pass":                                         true,
		"mx.example.com.evil; dkim=pass":                                     false,
		"other.example.com; dkim=pass header.d=mx.example.com":               false,
		"\"mx.example.com; dkim=pass":                                        false,
		"(unterminated mx.example.com; dkim=pass":                            false,
		"": false,
	} {
		if got := ClaimsAuthServID(field, "mx.example.com"); got != want {
			t.Errorf("ClaimsAuthServID(%q) = %v, want %v", field, got, want)
		}
	}
}

func FuzzClaimsAuthServID(f *testing.F) {
	f.Add("(c) \"mx.example.com\" 1; spf=pass")
	f.Fuzz(func(t *testing.T, s string) {
		ClaimsAuthServID(s, "mx.example.com")
		out := Format(s, []Result{{Method: "spf", Value: s, Reason: s, Comment: s, Props: []Prop{{"smtp", "mailfrom", s}}}})
		if strings.Count(out, "\r\n") != strings.Count(out, "\n") || strings.Count(out, "\r") != strings.Count(out, "\n") {
			t.Fatalf("stray CR or LF in %q", out)
		}
		for i, line := range strings.Split(strings.TrimSuffix(out, "\r\n"), "\r\n") {
			if i > 0 && !strings.HasPrefix(line, "\t") {
				t.Fatalf("line %d %q is not a continuation", i, line)
			}
		}
		if !ClaimsAuthServID(out, s) && s != "" && !strings.ContainsAny(s, "\r\n\t\x00\x01\x02\x03\x04\x05\x06\x07\x08\x0b\x0c\x0e\x0f\x10\x11\x12\x13\x14\x15\x16\x17\x18\x19\x1a\x1b\x1c\x1d\x1e\x1f\x7f") && strings.TrimSuffix(s, ".") != "" {
			t.Fatalf("our own field %q does not claim %q", out, s)
		}
	})
}
