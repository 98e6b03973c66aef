package dmarc

import (
	"context"
	"errors"
	"os"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/posthorn/posthorn/internal/dns/dnstest"
)

type opendmarcCases struct {
	RecordParse []struct {
		N       int
		Record  string
		Outcome string
		Note    string
	} `yaml:"record_parse"`
	Alignment []struct {
		N       int
		From    string
		Auth    string
		Mode    string
		Aligned bool
		Note    string
	}
	FromDomainExtraction []struct {
		N      int
		From   string
		Domain string
		Note   string
	} `yaml:"from_domain_extraction"`
}

func loadOpenDMARC(t *testing.T) opendmarcCases {
	t.Helper()
	b, err := os.ReadFile("../../../shared/conformance/dmarc/opendmarc-cases.yml")
	if err != nil {
		t.Fatalf("conformance data: %v", err)
	}
	var c opendmarcCases
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

// outcome maps our Parse result onto OpenDMARC's outcome names.
func outcome(txt string) string {
	_, err := Parse(txt)
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, ErrNotDMARC) && txt == "":
		return "error_empty"
	case errors.Is(err, ErrNotDMARC):
		return "error_bad_version"
	case errors.Is(err, ErrNoPolicy):
		return "error_no_policy"
	}
	return err.Error()
}

// TestOpenDMARCRecordParse runs OpenDMARC's 19 parse cases. Where RFC 9989
// differs from OpenDMARC (which follows RFC 7489, leniently) the expected
// outcome is changed here, with the reason.
func TestOpenDMARCRecordParse(t *testing.T) {
	changed := map[int]struct{ want, why string }{
		5:  {"error_no_policy", "p=n is not none|quarantine|reject (RFC 9989 4.8); OpenDMARC matches by first letter. With no rua= the record is not applied (4.10.1)"},
		8:  {"error_no_policy", "p=bob is invalid and there is no rua= to fall back to p=none (4.10.1); OpenDMARC: error_bad_value"},
		9:  {"error_no_policy", "an invalid sp= makes the record unusable unless rua= is valid (4.10.1); OpenDMARC: error_bad_value"},
		10: {"ok", "adkim=bob: syntax errors outside p/sp/np fall back to the default (4.8), adkim=r"},
		11: {"ok", "aspf=bob: falls back to aspf=r (4.8)"},
		12: {"ok", "rf= was removed by RFC 9989: unknown tags are ignored"},
		13: {"ok", "ri= was removed by RFC 9989: ignored"},
		14: {"ok", "pct= was removed by RFC 9989 (t= replaces it): pct=500 is ignored"},
		15: {"error_no_policy", "no p= and no rua=: not applied (4.10.1); same as OpenDMARC's error_no_required_p"},
		19: {"ok", "rf= removed: ignored whatever its value"},
	}
	c := loadOpenDMARC(t)
	if len(c.RecordParse) != 19 {
		t.Fatalf("%d record cases, want 19", len(c.RecordParse))
	}
	for _, rc := range c.RecordParse {
		want := rc.Outcome
		if ch, ok := changed[rc.N]; ok {
			want = ch.want
			t.Logf("case %d %q: OpenDMARC %s, RFC 9989 %s: %s", rc.N, rc.Record, rc.Outcome, ch.want, ch.why)
		}
		if got := outcome(rc.Record); got != want {
			t.Errorf("case %d %q: got %s, want %s", rc.N, rc.Record, got, want)
		}
	}
}

// TestOpenDMARCAlignment runs OpenDMARC's 10 alignment cases. OpenDMARC ran
// them with its public suffix list; RFC 9989 finds Organizational Domains by
// the DNS Tree Walk instead, so the zone publishes a DMARC record at each
// domain the PSL would call registrable. No case changes outcome.
func TestOpenDMARCAlignment(t *testing.T) {
	z := dnstest.Zone{}
	for _, d := range []string{"bcx.com", "foo.com", "b.com", "mac.com", "ooo.com", "oooo.com", "edr.au", "b.de"} {
		z["_dmarc."+d] = dnstest.Records{TXT: []string{"v=DMARC1; p=none"}}
	}
	r := dnstest.NewResolver(z)
	c := loadOpenDMARC(t)
	if len(c.Alignment) != 10 {
		t.Fatalf("%d alignment cases, want 10", len(c.Alignment))
	}
	for _, ac := range c.Alignment {
		mode := Relaxed
		if ac.Mode == "strict" {
			mode = Strict
		}
		got, err := Aligned(context.Background(), r, ac.From, ac.Auth, mode)
		if err != nil {
			t.Errorf("case %d: %v", ac.N, err)
		}
		if got != ac.Aligned {
			t.Errorf("case %d %s vs %s (%s): aligned=%v, want %v", ac.N, ac.From, ac.Auth, ac.Mode, got, ac.Aligned)
		}
	}
}

// TestOpenDMARCFromDomain runs OpenDMARC's 13 From extraction cases. Cases
// 7 and 8 carry two authors: OpenDMARC takes the first; we return both
// domains and EvaluateFrom evaluates each (RFC 9989 5.3.1 "MAY go forward").
func TestOpenDMARCFromDomain(t *testing.T) {
	c := loadOpenDMARC(t)
	if len(c.FromDomainExtraction) != 13 {
		t.Fatalf("%d cases, want 13", len(c.FromDomainExtraction))
	}
	for _, fc := range c.FromDomainExtraction {
		got, err := AuthorDomains([]string{fc.From})
		if err != nil {
			t.Errorf("case %d %q: %v", fc.N, fc.From, err)
			continue
		}
		want := []string{fc.Domain}
		if fc.N == 7 || fc.N == 8 {
			want = []string{"joe.com", "ace.com"}
			t.Logf("case %d %q: OpenDMARC takes %s, we see both authors %v", fc.N, fc.From, fc.Domain, want)
		}
		if len(got) != len(want) || got[0] != want[0] || got[len(got)-1] != want[len(want)-1] {
			t.Errorf("case %d %q: got %v, want %v", fc.N, fc.From, got, want)
		}
	}
}
