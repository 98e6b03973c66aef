package inbound

import (
	"context"
	"io"
	"net/netip"
	"strings"
	"testing"

	"github.com/posthorn/posthorn/internal/dns/dnstest"
)

func msg(from string) func() (io.Reader, error) {
	return func() (io.Reader, error) {
		return strings.NewReader("From: <" + from + ">\r\nSubject: x\r\n\r\nbody\r\n"), nil
	}
}

func TestVerdicts(t *testing.T) {
	zone := dnstest.Zone{
		"pass.example":           {TXT: []string{"v=spf1 ip4:192.0.2.1 -all"}, A: []string{"192.0.2.1"}},
		"_dmarc.pass.example":    {TXT: []string{"v=DMARC1; p=reject"}},
		"rej.example":            {TXT: []string{"v=spf1 -all"}, A: []string{"192.0.2.2"}},
		"_dmarc.rej.example":     {TXT: []string{"v=DMARC1; p=reject"}},
		"quar.example":           {TXT: []string{"v=spf1 -all"}, A: []string{"192.0.2.3"}},
		"_dmarc.quar.example":    {TXT: []string{"v=DMARC1; p=quarantine"}},
		"tmp.example":            {ServFail: true},
		"testing.example":        {TXT: []string{"v=spf1 -all"}, A: []string{"192.0.2.4"}},
		"_dmarc.testing.example": {TXT: []string{"v=DMARC1; p=reject; t=y"}},
	}
	c := New(Options{Resolver: dnstest.NewResolver(zone), AuthServID: "mx.example.test"})
	ip := netip.MustParseAddr("192.0.2.1")
	for _, tc := range []struct {
		from       string
		refuse     bool
		quarantine bool
		want       []string
	}{
		{"a@pass.example", false, false, []string{"spf=pass", "dmarc=pass", "header.from=pass.example", "arc=none", "dkim=none"}},
		{"a@rej.example", true, false, []string{"spf=fail", "dmarc=fail"}},
		{"a@quar.example", false, true, []string{"dmarc=fail"}},
		// t=y lowers reject to quarantine (RFC 9989).
		{"a@testing.example", false, true, []string{"dmarc=fail"}},
		{"a@tmp.example", false, false, []string{"spf=temperror"}},
	} {
		t.Run(tc.from, func(t *testing.T) {
			v, err := c.Check(context.Background(), Input{ClientIP: ip, Helo: "client.example.org", MailFrom: tc.from, Data: msg(tc.from)})
			if err != nil {
				t.Fatal(err)
			}
			if (v.Refuse != nil) != tc.refuse || v.Quarantine != tc.quarantine {
				t.Fatalf("refuse %v quarantine %v, want %v %v\n%s", v.Refuse, v.Quarantine, tc.refuse, tc.quarantine, v.AuthResults)
			}
			if v.Refuse != nil && (v.Refuse.Code != 550 || v.Refuse.Enhanced != "5.7.1" || !strings.Contains(v.Refuse.Text(), "DMARC")) {
				t.Fatalf("refusal %q", v.Refuse.Error())
			}
			if !strings.HasPrefix(v.AuthResults, "Authentication-Results: mx.example.test;") {
				t.Fatalf("A-R %q", v.AuthResults)
			}
			for _, w := range tc.want {
				if !strings.Contains(v.AuthResults, w) {
					t.Errorf("A-R lacks %q:\n%s", w, v.AuthResults)
				}
			}
		})
	}
	// The configured actions apply.
	lenient := New(Options{Resolver: dnstest.NewResolver(zone), AuthServID: "mx.example.test", OnReject: Quarantine, OnQuarantine: Accept})
	v, _ := lenient.Check(context.Background(), Input{ClientIP: ip, Helo: "h.example", MailFrom: "a@rej.example", Data: msg("a@rej.example")})
	if v.Refuse != nil || !v.Quarantine {
		t.Fatalf("p=reject with OnReject=quarantine: %+v", v)
	}
	if !c.ClaimsOurID("Authentication-Results", "mx.example.test; spf=pass") || c.ClaimsOurID("Authentication-Results", "other.example; spf=pass") {
		t.Fatal("ClaimsOurID")
	}
}
