package spf

import (
	"context"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/posthorn/posthorn/internal/dns/dnstest"
)

func TestParseAcceptsAndCanonicalizes(t *testing.T) {
	for in, want := range map[string]string{
		"v=spf1":                           "v=spf1",
		"V=SPF1 -ALL":                      "v=spf1 -all",
		"v=spf1  a   mx -all ":             "v=spf1 a mx -all",
		"v=spf1 a:example.com/24//64 ~all": "v=spf1 a:example.com/24//64 ~all",
		"v=spf1 mx//0 ?all":                "v=spf1 mx//0 ?all",
		"v=spf1 ip4:192.0.2.1/24 ip6:2001:DB8::/32":                    "v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32",
		"v=spf1 include:_spf.%{d2} exists:%{ir}.%{v}.x.example -all":   "v=spf1 include:_spf.%{d2} exists:%{ir}.%{v}.x.example -all",
		"v=spf1 exp=why.example.com redirect=_spf.example.com foo=bar": "v=spf1 redirect=_spf.example.com exp=why.example.com foo=bar",
		"v=spf1 a:foo:bar/baz.example.com":                             "v=spf1 a:foo:bar/baz.example.com",
		"v=spf1 ptr:example.com ptr":                                   "v=spf1 ptr:example.com ptr",
	} {
		rec, err := Parse(in)
		if err != nil {
			t.Errorf("Parse(%q): %v", in, err)
			continue
		}
		if got := rec.String(); got != want {
			t.Errorf("Parse(%q).String() = %q, want %q", in, got, want)
		}
	}
}

func TestParseRejectsSyntaxErrors(t *testing.T) {
	for _, in := range []string{
		"v=spf1x",
		"spf1 -all",
		"v=spf1 -all\t",
		"v=spf1 all:x",
		"v=spf1 all/8",
		"v=spf1 include",
		"v=spf1 include:",
		"v=spf1 a:example",               // no toplabel
		"v=spf1 a:example.123",           // numeric toplabel
		"v=spf1 a/33",                    // prefix over 32
		"v=spf1 a//129",                  // prefix over 128
		"v=spf1 a/024",                   // leading zero
		"v=spf1 ip4:192.0.2.1/33",        //
		"v=spf1 ip4:192.0.2",             //
		"v=spf1 ip4:1.2.3.4:25",          //
		"v=spf1 ip6:192.0.2.1",           // not IPv6
		"v=spf1 ip6:::1/129",             //
		"v=spf1 ptr/24",                  //
		"v=spf1 exists:%{x}.example.com", // unknown macro letter
		"v=spf1 exists:%{c}.example.com", // c only in explanations
		"v=spf1 exists:%{d0}.example.com",
		"v=spf1 exists:%(d).example.com",
		"v=spf1 exists:foo%.example.com",
		"v=spf1 redirect=a.example.com redirect=b.example.com",
		"v=spf1 exp=a.example.com exp=b.example.com",
		"v=spf1 =foo",
		"v=spf1 foo=%",
		"v=spf1 bogus",
		"v=spf1 -all \x80",
	} {
		if rec, err := Parse(in); err == nil {
			t.Errorf("Parse(%q) = %v, want a syntax error", in, rec)
		}
	}
}

// TestMacroExamples checks the examples of RFC 7208 7.4.
func TestMacroExamples(t *testing.T) {
	env := macroEnv{
		sender: "strong-bad@email.example.com", local: "strong-bad", domain: "email.example.com",
		current: "email.example.com", ip: net.ParseIP("192.0.2.3").To4(), helo: "mx.example.org",
		receiver: "mx.example.net", now: 1234567890,
		ptr: func(string) string { return "unknown" },
	}
	for in, want := range map[string]string{
		"%{s}":                              "strong-bad@email.example.com",
		"%{o}":                              "email.example.com",
		"%{d}":                              "email.example.com",
		"%{d4}":                             "email.example.com",
		"%{d3}":                             "email.example.com",
		"%{d2}":                             "example.com",
		"%{d1}":                             "com",
		"%{dr}":                             "com.example.email",
		"%{d2r}":                            "example.email",
		"%{l}":                              "strong-bad",
		"%{l-}":                             "strong.bad",
		"%{lr}":                             "strong-bad",
		"%{lr-}":                            "bad.strong",
		"%{l1r-}":                           "strong",
		"%{ir}.%{v}._spf.%{d2}":             "3.2.0.192.in-addr._spf.example.com",
		"%{lr-}.lp._spf.%{d2}":              "bad.strong.lp._spf.example.com",
		"%{lr-}.lp.%{ir}.%{v}._spf.%{d2}":   "bad.strong.lp.3.2.0.192.in-addr._spf.example.com",
		"%{ir}.%{v}.%{l1r-}.lp._spf.%{d2}":  "3.2.0.192.in-addr.strong.lp._spf.example.com",
		"%{d2}.trusted-domains.example.net": "example.com.trusted-domains.example.net",
		"%{c} %{r} %{t} %{h}":               "192.0.2.3 mx.example.net 1234567890 mx.example.org",
		"%{S}":                              "strong-bad%40email.example.com",
		"100%%%_%-":                         "100% %20",
	} {
		toks, err := parseMacroString(in, true)
		if err != nil {
			t.Errorf("%q: %v", in, err)
			continue
		}
		if got := env.expand(toks); got != want {
			t.Errorf("%q = %q, want %q", in, got, want)
		}
	}
	env.ip = net.ParseIP("2001:db8::cb01")
	toks, _ := parseMacroString("%{ir}.%{v}._spf.%{d2}", false)
	if got, want := env.expand(toks), "1.0.B.C.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.B.D.0.1.0.0.2.ip6._spf.example.com"; got != want {
		t.Errorf("IPv6 = %q, want %q", got, want)
	}
}

func TestHELOIdentityWhenMailFromIsNull(t *testing.T) {
	r := dnstest.NewResolver(dnstest.Zone{
		"mx.example.org": {TXT: []string{"v=spf1 ip4:192.0.2.0/24 -all"}},
		"example.com":    {TXT: []string{"v=spf1 -all"}},
	})
	ctx := context.Background()
	res, _, err := Check(ctx, Options{Resolver: r}, net.ParseIP("192.0.2.9"), "", "mx.example.org")
	if res != Pass || err != nil {
		t.Errorf("HELO check = %s, %v; want pass", res, err)
	}
	res, _, _ = Check(ctx, Options{Resolver: r}, net.ParseIP("192.0.2.9"), "a@example.com", "mx.example.org")
	if res != Fail {
		t.Errorf("MAIL FROM check = %s; want fail", res)
	}
}

func TestExplanationMacros(t *testing.T) {
	r := dnstest.NewResolver(dnstest.Zone{
		"example.com":     {TXT: []string{"v=spf1 -all exp=why.example.com"}},
		"why.example.com": {TXT: []string{"%{c} is not allowed to send for %{d} (checked by %{r} at %{t})"}},
	})
	now := time.Unix(1700000000, 0)
	res, exp, _ := Check(context.Background(), Options{Resolver: r, Now: func() time.Time { return now }, Receiver: "mx.posthorn.example"},
		net.ParseIP("2001:db8::1"), "x@example.com", "helo.example")
	want := "2001:db8::1 is not allowed to send for example.com (checked by mx.posthorn.example at 1700000000)"
	if res != Fail || exp != want {
		t.Errorf("got %s %q, want fail %q", res, exp, want)
	}
}

func TestResultsOfDNSTrouble(t *testing.T) {
	r := dnstest.NewResolver(dnstest.Zone{
		"servfail.example": {ServFail: true},
		"inc.example":      {TXT: []string{"v=spf1 include:servfail.example -all"}},
		"nospf.example":    {TXT: []string{"hello"}},
	})
	ctx := context.Background()
	ip := net.ParseIP("192.0.2.1")
	for domain, want := range map[string]Result{
		"servfail.example": TempError,
		"inc.example":      TempError,
		"nospf.example":    None,
		"missing.example":  None,
	} {
		res, _, err := Check(ctx, Options{Resolver: r}, ip, "u@"+domain, "h.example")
		if res != want {
			t.Errorf("%s: %s (%v), want %s", domain, res, err, want)
		}
		if (res == TempError) != (err != nil) {
			t.Errorf("%s: err = %v for %s", domain, err, res)
		}
	}
}

func TestAnalyzeFlagsTooManyLookups(t *testing.T) {
	zone := dnstest.Zone{
		"example.com":   {TXT: []string{"v=spf1 include:a.example.com include:b.example.com mx a:gone.example.com ptr -all"}, MX: []*net.MX{{Host: "mx.example.com", Pref: 10}}},
		"a.example.com": {TXT: []string{"v=spf1 a mx exists:x.example.com include:c.example.com ~all"}},
		"b.example.com": {TXT: []string{"v=spf1 redirect=c.example.com"}},
		"c.example.com": {TXT: []string{"v=spf1 a:c1.example.com a:c2.example.com ?all"}},
		"x.example.com": {A: []string{"127.0.0.2"}},
	}
	a, err := Analyze(context.Background(), dnstest.NewResolver(zone), "Example.com.")
	if err != nil {
		t.Fatal(err)
	}
	// example.com: 2 includes, mx, a, ptr = 5; a.example.com: a, mx, exists,
	// include = 4, c.example.com (twice) 2 each = 4; b's redirect = 1.
	if a.Lookups != 14 || !a.Parses || a.Record != zone["example.com"].TXT[0] {
		t.Errorf("analysis = %+v", a)
	}
	all := strings.Join(a.Problems, "\n")
	for _, want := range []string{"over the limit of 10", "ptr mechanism", "void lookup"} {
		if !strings.Contains(all, want) {
			t.Errorf("problems lack %q:\n%s", want, all)
		}
	}
	if a.VoidLookups < 3 || !strings.Contains(all, "void lookups") {
		t.Errorf("void lookups = %d, problems:\n%s", a.VoidLookups, all)
	}
}

func TestAnalyzeLoopAndMissingRecord(t *testing.T) {
	r := dnstest.NewResolver(dnstest.Zone{
		"loop.example": {TXT: []string{"v=spf1 include:loop.example -all"}},
		"two.example":  {TXT: []string{"v=spf1 -all", "v=spf1 +all"}},
	})
	a, _ := Analyze(context.Background(), r, "loop.example")
	if !strings.Contains(strings.Join(a.Problems, "\n"), "loops") {
		t.Errorf("loop not flagged: %q", a.Problems)
	}
	a, _ = Analyze(context.Background(), r, "two.example")
	if a.Parses || len(a.Problems) == 0 {
		t.Errorf("two records: %+v", a)
	}
	a, _ = Analyze(context.Background(), r, "none.example")
	if a.Record != "" || len(a.Problems) != 1 {
		t.Errorf("no record: %+v", a)
	}
	if _, err := Analyze(context.Background(), dnstest.NewResolver(dnstest.Zone{"t.example": {Timeout: true}}), "t.example"); err == nil {
		t.Error("timeout gave no error")
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"v=spf1 -all",
		"v=spf1 a mx ptr ~all",
		"v=spf1 a:example.com/24//64 mx:%{d}/30 -all",
		"v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 include:_spf.example.com ?all",
		"v=spf1 exists:%{ir}.%{l1r+-}._spf.%{d} redirect=%{d2} exp=explain._spf.%{d}",
		"v=spf1 foo=bar moo.cow-far_out=man:dog/cat",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		rec, err := Parse(s)
		if err != nil {
			return
		}
		// The canonical form parses back to the same record.
		again, err := Parse(rec.String())
		if err != nil {
			t.Fatalf("Parse(%q).String() = %q does not parse: %v", s, rec.String(), err)
		}
		if !reflect.DeepEqual(rec, again) {
			t.Fatalf("round trip of %q: %#v != %#v", s, rec, again)
		}
	})
}
