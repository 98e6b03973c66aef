package dmarc

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/posthorn/posthorn/internal/dns/dnstest"
)

func rec(txt string) dnstest.Records { return dnstest.Records{TXT: []string{txt}} }

func TestParseRecord(t *testing.T) {
	r, err := Parse("v=DMARC1; p=Reject; sp=quarantine; np=reject; adkim=s; aspf=r; t=y; psd=n; rua=mailto:a@example.com!10m, https://x.example/r; fo=1:d; pct=20; rf=afrf; ri=86400; zz=top")
	if err != nil {
		t.Fatal(err)
	}
	want := &Record{Policy: PolicyReject, SubdomainPolicy: PolicyQuarantine, NonexistentPolicy: PolicyReject,
		ADKIM: Strict, ASPF: Relaxed, Testing: true, PSD: 'n',
		RUA: []string{"mailto:a@example.com", "https://x.example/r"}, FO: "1:d",
		Pct: 20, RF: "afrf", RI: "86400", Ignored: []string{"zz=top"}}
	if !reflect.DeepEqual(r, want) {
		t.Errorf("got  %+v\nwant %+v", r, want)
	}
	for txt, wantErr := range map[string]error{
		"v=DMARC1":                         ErrNoPolicy,
		"v=DMARC1; rua=mailto:a@b.example": nil, // RFC 9989 4.10.1: act as p=none
		"v=dmarc1; p=none":                 ErrNotDMARC,
		"p=none; v=DMARC1":                 ErrNotDMARC, // v= must be first
		"v=DMARC1;p=none;":                 nil,
		"  v = DMARC1 ; p = none":          nil,
		"v=DMARC1; p=quarantine; np=bogus": ErrNoPolicy,
		"v=spf1 -all":                      ErrNotDMARC,
	} {
		r, err := Parse(txt)
		if !errors.Is(err, wantErr) {
			t.Errorf("Parse(%q) error %v, want %v", txt, err, wantErr)
		}
		if err == nil && r.Policy == "" {
			t.Errorf("Parse(%q): no policy", txt)
		}
	}
	r, _ = Parse("v=DMARC1; rua=mailto:a@b.example; sp=reject")
	if r.Policy != PolicyNone || !r.PolicyImplied || r.SubdomainPolicy != "reject" || !r.Usable() {
		t.Errorf("record without p=: %+v", r)
	}
}

// TestTreeWalkQueries checks the names queried against RFC 9989 4.10's own
// example: at most eight queries however long the Author Domain.
func TestTreeWalkQueries(t *testing.T) {
	r := dnstest.NewResolver(dnstest.Zone{})
	_, err := Lookup(context.Background(), r, "a.b.c.d.e.f.g.h.i.j.mail.example.com")
	if !errors.Is(err, ErrNoRecord) {
		t.Fatalf("err %v, want ErrNoRecord", err)
	}
	want := []string{
		"TXT _dmarc.a.b.c.d.e.f.g.h.i.j.mail.example.com.",
		"TXT _dmarc.g.h.i.j.mail.example.com.",
		"TXT _dmarc.h.i.j.mail.example.com.",
		"TXT _dmarc.i.j.mail.example.com.",
		"TXT _dmarc.j.mail.example.com.",
		"TXT _dmarc.mail.example.com.",
		"TXT _dmarc.example.com.",
		"TXT _dmarc.com.",
	}
	if got := r.Queries(); !reflect.DeepEqual(got, want) {
		t.Errorf("queries:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// RFC 9989 5.1.8: a psd=n record at the 9th label is never seen.
	r = dnstest.NewResolver(dnstest.Zone{
		"_dmarc.example.com":             rec("v=DMARC1; p=none"),
		"_dmarc.b.c.d.e.f.g.example.com": rec("v=DMARC1; p=reject; psd=n"),
	})
	d, err := Lookup(context.Background(), r, "mail.a.b.c.d.e.f.g.example.com")
	if err != nil || d.Domain != "example.com" || len(d.Queried) != 8 {
		t.Errorf("got %+v, %v; want the example.com record after 8 queries", d, err)
	}
}

func TestOrgDomain(t *testing.T) {
	z := dnstest.Zone{
		"_dmarc.mail.example.com":  rec("v=DMARC1; p=none"),
		"_dmarc.example.com":       rec("v=DMARC1; p=none"),
		"_dmarc.dept.example.org":  rec("v=DMARC1; p=none; psd=n"),
		"_dmarc.example.org":       rec("v=DMARC1; p=reject"),
		"_dmarc.example":           rec("v=DMARC1; p=reject; psd=y"),
		"_dmarc.twice.example.net": {TXT: []string{"v=DMARC1; p=none", "v=DMARC1; p=reject"}},
	}
	r := dnstest.NewResolver(z)
	for d, want := range map[string]string{
		// RFC 9989 4.10.2 examples.
		"a.mail.example.com":  "example.com",         // records at mail.example.com and example.com: fewest labels
		"a.dept.example.org":  "dept.example.org",    // psd=n
		"a.mail.example":      "mail.example",        // psd=y: one label below
		"example":             "example",             // psd=y at the start does not count
		"nothing.test":        "nothing.test",        // no records: itself
		"x.twice.example.net": "x.twice.example.net", // two records: both discarded
	} {
		got, err := OrgDomain(context.Background(), r, d)
		if err != nil || got != want {
			t.Errorf("OrgDomain(%s) = %q, %v; want %q", d, got, err, want)
		}
	}
}

func TestLookupPicksOrgThenPSD(t *testing.T) {
	z := dnstest.Zone{
		"_dmarc.example.com": rec("v=DMARC1; p=reject; sp=quarantine"),
		"_dmarc.example":     rec("v=DMARC1; p=quarantine; np=reject; psd=y"),
		"_dmarc.own.example": rec("v=DMARC1; p=none"),
	}
	r := dnstest.NewResolver(z)
	for author, want := range map[string]string{
		"example.com":       "example.com",
		"a.b.example.com":   "example.com",
		"x.unknown.example": "example", // Organizational Domain unknown.example has no record: the PSD's applies
		"x.own.example":     "own.example",
	} {
		d, err := Lookup(context.Background(), r, author)
		if err != nil || d.Domain != want {
			t.Errorf("Lookup(%s) = %+v, %v; want record at %s", author, d, err, want)
		}
	}
}

func evalZone() dnstest.Zone {
	return dnstest.Zone{
		"_dmarc.example.com":           rec("v=DMARC1; p=reject; sp=quarantine; np=reject"),
		"_dmarc.strict.test":           rec("v=DMARC1; p=reject; adkim=s; aspf=s"),
		"_dmarc.testing.test":          rec("v=DMARC1; p=reject; t=y"),
		"_dmarc.testq.test":            rec("v=DMARC1; p=quarantine; t=y"),
		"_dmarc.ruaonly.test":          rec("v=DMARC1; rua=mailto:r@ruaonly.test"),
		"_dmarc.nop.test":              rec("v=DMARC1; sp=reject"),
		"_dmarc.pct.test":              rec("v=DMARC1; p=reject; pct=0"),
		"_dmarc.servfail.test":         {ServFail: true},
		"_dmarc.psd":                   rec("v=DMARC1; p=none; np=reject; psd=y"),
		"mail.example.com":             {A: []string{"192.0.2.1"}},
		"exists.psd":                   {MX: nil, A: []string{"192.0.2.2"}},
		"_dmarc.tempalign.test":        rec("v=DMARC1; p=reject"),
		"_dmarc.bounce.tempalign.test": {ServFail: true},
	}
}

func TestEvaluate(t *testing.T) {
	r := dnstest.NewResolver(evalZone())
	pass := func(d string) []DKIMResult { return []DKIMResult{{Domain: d, Selector: "s", Result: "pass"}} }
	cases := []struct {
		name      string
		in        Input
		want      Status
		policy    Policy
		spf, dkim bool
	}{
		{"dkim aligned exact", Input{FromDomain: "example.com", DKIM: pass("example.com")}, StatusPass, PolicyNone, false, true},
		{"dkim relaxed subdomain", Input{FromDomain: "example.com", DKIM: pass("mail.example.com")}, StatusPass, PolicyNone, false, true},
		{"spf relaxed parent", Input{FromDomain: "news.example.com", SPFResult: "pass", SPFDomain: "bounces.example.com"}, StatusPass, PolicyNone, true, false},
		{"spf pass unaligned", Input{FromDomain: "example.com", SPFResult: "pass", SPFDomain: "example.net"}, StatusFail, PolicyReject, false, false},
		{"spf aligned but softfail", Input{FromDomain: "example.com", SPFResult: "softfail", SPFDomain: "example.com"}, StatusFail, PolicyReject, false, false},
		{"dkim aligned but fail", Input{FromDomain: "example.com", DKIM: []DKIMResult{{Domain: "example.com", Result: "fail"}}}, StatusFail, PolicyReject, false, false},
		{"dkim third party", Input{FromDomain: "example.com", DKIM: pass("esp.example.net")}, StatusFail, PolicyReject, false, false},
		{"strict dkim subdomain", Input{FromDomain: "strict.test", DKIM: pass("mail.strict.test")}, StatusFail, PolicyReject, false, false},
		{"spf domain given as address", Input{FromDomain: "example.com", SPFResult: "pass", SPFDomain: "bounce@mail.example.com"}, StatusPass, PolicyNone, true, false},
		{"strict spf exact", Input{FromDomain: "strict.test", SPFResult: "pass", SPFDomain: "STRICT.test."}, StatusPass, PolicyNone, true, false},
		{"existing subdomain uses sp", Input{FromDomain: "mail.example.com"}, StatusFail, PolicyQuarantine, false, false},
		{"non-existent subdomain uses np", Input{FromDomain: "ghost.example.com"}, StatusFail, PolicyReject, false, false},
		{"t=y lowers reject", Input{FromDomain: "testing.test"}, StatusFail, PolicyQuarantine, false, false},
		{"t=y lowers quarantine", Input{FromDomain: "testq.test"}, StatusFail, PolicyNone, false, false},
		{"no p= with rua is p=none", Input{FromDomain: "ruaonly.test"}, StatusFail, PolicyNone, false, false},
		{"no p= and no rua: not applied", Input{FromDomain: "nop.test"}, StatusNone, PolicyNone, false, false},
		{"pct=0 no longer disables", Input{FromDomain: "pct.test"}, StatusFail, PolicyReject, false, false},
		{"no record", Input{FromDomain: "example.org", DKIM: pass("example.org")}, StatusNone, PolicyNone, false, false},
		{"SERVFAIL on policy", Input{FromDomain: "servfail.test"}, StatusTempError, PolicyNone, false, false},
		{"PSD policy, non-existent author", Input{FromDomain: "ghost.psd"}, StatusFail, PolicyReject, false, false},
		{"PSD policy, existing author", Input{FromDomain: "exists.psd"}, StatusFail, PolicyNone, false, false},
		{"no author", Input{}, StatusPermError, PolicyNone, false, false},
		{"temp error aligning", Input{FromDomain: "tempalign.test", SPFResult: "pass", SPFDomain: "bounce.tempalign.test"}, StatusTempError, PolicyNone, false, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := Evaluate(context.Background(), r, c.in)
			if got.Result != c.want || got.Policy != c.policy || got.SPFAligned != c.spf || got.DKIMAligned != c.dkim {
				t.Errorf("got %s policy=%s spf=%v dkim=%v (%s), want %s policy=%s spf=%v dkim=%v",
					got.Result, got.Policy, got.SPFAligned, got.DKIMAligned, got.Reason, c.want, c.policy, c.spf, c.dkim)
			}
		})
	}
}

func TestEvaluateReportsDetails(t *testing.T) {
	r := dnstest.NewResolver(evalZone())
	got := Evaluate(context.Background(), r, Input{FromDomain: "Mail.Example.COM", DKIM: []DKIMResult{{Domain: "example.com", Result: "pass"}}})
	if got.AuthorDomain != "mail.example.com" || got.RecordDomain != "example.com" || got.OrgDomain != "example.com" || got.AlignedDKIMDomain != "example.com" || got.Record == nil {
		t.Errorf("%+v", got)
	}
}

func TestEvaluateFromSeveralAuthors(t *testing.T) {
	r := dnstest.NewResolver(evalZone())
	in := Input{DKIM: []DKIMResult{{Domain: "attacker.test", Result: "pass"}}, SPFResult: "pass", SPFDomain: "attacker.test"}
	got := EvaluateFrom(context.Background(), r, []string{"ceo@example.com, x@attacker.test"}, in)
	if got.Result != StatusFail || got.Policy != PolicyReject || got.AuthorDomain != "example.com" {
		t.Errorf("second author hid the first one's policy: %+v", got)
	}
	got = EvaluateFrom(context.Background(), r, []string{"a@example.com", "b@Example.com"}, Input{DKIM: []DKIMResult{{Domain: "example.com", Result: "pass"}}})
	if got.Result != StatusPass {
		t.Errorf("two From fields of one domain: %+v", got)
	}
	if got := EvaluateFrom(context.Background(), r, nil, in); got.Result != StatusPermError {
		t.Errorf("no From: %+v", got)
	}
	if got := EvaluateFrom(context.Background(), r, []string{"undisclosed-recipients:;"}, in); got.Result != StatusPermError {
		t.Errorf("From without address: %+v", got)
	}
}
