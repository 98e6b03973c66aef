package dmarc

import (
	"errors"
	"testing"
)

// Seeds also live in testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	f.Add("v=DMARC1; p=reject; sp=quarantine; np=none; adkim=s; aspf=r; t=y; psd=n; rua=mailto:a@example.com!10m; fo=1:d:s")
	f.Add("v=DMARC1; rua=mailto:x@y")
	f.Fuzz(func(t *testing.T, s string) {
		r, err := Parse(s)
		if errors.Is(err, ErrNotDMARC) {
			if r != nil {
				t.Fatal("record returned with ErrNotDMARC")
			}
			return
		}
		if r == nil {
			t.Fatalf("nil record, err %v", err)
		}
		if (err == nil) != r.Usable() {
			t.Fatalf("err %v but Usable()=%v", err, r.Usable())
		}
		switch r.Policy {
		case PolicyNone, PolicyQuarantine, PolicyReject:
		default:
			t.Fatalf("policy %q", r.Policy)
		}
		if r.ADKIM != Relaxed && r.ADKIM != Strict || r.ASPF != Relaxed && r.ASPF != Strict {
			t.Fatalf("alignment %q %q", r.ADKIM, r.ASPF)
		}
		if r.PSD != 'y' && r.PSD != 'n' && r.PSD != 'u' {
			t.Fatalf("psd %q", r.PSD)
		}
	})
}

func FuzzAuthorDomains(f *testing.F) {
	f.Add(`"Johnson, Joe <joe@joe.com>" joe@joe.com`)
	f.Add(`(a(b)c) <x@y.example>, "q\"x@evil.example" z@w.example`)
	f.Fuzz(func(t *testing.T, s string) {
		ds, err := AuthorDomains([]string{s})
		if err == nil && len(ds) == 0 {
			t.Fatal("no domains and no error")
		}
		for _, d := range ds {
			if d == "" || NormalizeDomain(d) != d {
				t.Fatalf("domain %q not normalized", d)
			}
		}
	})
}

// Found by FuzzAuthorDomains: IDNA maps U+00AD (soft hyphen) to nothing,
// which left a leading dot after the conversion; the result must be a
// normalized name (idempotent), never one with an empty label.
func TestNormalizeDomainAfterIDNAMapping(t *testing.T) {
	for in, want := range map[string]string{
		"\u00ad.example.com":   "example.com",
		"a.\u00ad.example.com": "",
		"Example.COM.":         "example.com",
		"\u00ad":               "",
	} {
		got := NormalizeDomain(in)
		if got != want || NormalizeDomain(got) != got {
			t.Errorf("NormalizeDomain(%q) = %q, want %q", in, got, want)
		}
	}
}
