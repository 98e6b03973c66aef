package dane

import (
	"context"
	"testing"

	"github.com/posthorn/posthorn/internal/dns"
	"github.com/posthorn/posthorn/internal/dns/dnstest"
)

func TestLookupStopsWhereRFC7672Says(t *testing.T) {
	rec := []dns.TLSA{{Usage: DANEEE, Selector: SelectorSPKI, MatchingType: MatchSHA256, CertData: make([]byte, 32)}}
	tlsaName := func(host string) string { return "_25._tcp." + host }
	for _, c := range []struct {
		name       string
		zone       dnstest.Zone
		secureOnly bool
		wantBase   string
		wantRecs   bool
		wantAuth   bool
		wantErr    string // "" none, "notfound", "temporary"
	}{
		{
			name: "secure alias: the expanded name first",
			zone: dnstest.Zone{
				"mx.example":                     {CNAME: "smtp.hosting.example", Authentic: true},
				"smtp.hosting.example":           {A: []string{"192.0.2.1"}, Authentic: true},
				tlsaName("smtp.hosting.example"): {TLSA: rec, Authentic: true},
				tlsaName("mx.example"):           {TLSA: rec, Authentic: true},
			},
			secureOnly: true, wantBase: "smtp.hosting.example", wantRecs: true, wantAuth: true,
		},
		{
			name: "insecure records passed over by a sender",
			zone: dnstest.Zone{
				"mx.example":                     {CNAME: "smtp.hosting.example", Authentic: true},
				"smtp.hosting.example":           {A: []string{"192.0.2.1"}, Authentic: true},
				tlsaName("smtp.hosting.example"): {TLSA: rec},
				tlsaName("mx.example"):           {TLSA: rec, Authentic: true},
			},
			secureOnly: true, wantBase: "mx.example", wantRecs: true, wantAuth: true,
		},
		{
			name: "insecure records reported by the probe",
			zone: dnstest.Zone{
				"mx.example":                     {CNAME: "smtp.hosting.example", Authentic: true},
				"smtp.hosting.example":           {A: []string{"192.0.2.1"}, Authentic: true},
				tlsaName("smtp.hosting.example"): {TLSA: rec},
				tlsaName("mx.example"):           {TLSA: rec, Authentic: true},
			},
			secureOnly: false, wantBase: "smtp.hosting.example", wantRecs: true, wantAuth: false,
		},
		{
			name: "a failed look-up stops the search",
			zone: dnstest.Zone{
				"mx.example":                     {CNAME: "smtp.hosting.example", Authentic: true},
				"smtp.hosting.example":           {A: []string{"192.0.2.1"}, Authentic: true},
				tlsaName("smtp.hosting.example"): {ServFail: true},
				tlsaName("mx.example"):           {TLSA: rec, Authentic: true},
			},
			secureOnly: true, wantBase: "smtp.hosting.example", wantErr: "temporary",
		},
		{
			name: "no records anywhere: the last name asked",
			zone: dnstest.Zone{
				"mx.example":           {CNAME: "smtp.hosting.example", Authentic: true},
				"smtp.hosting.example": {A: []string{"192.0.2.1"}, Authentic: true},
			},
			secureOnly: true, wantBase: "mx.example", wantErr: "notfound",
		},
		{
			name: "insecure alias: the host's own name only",
			zone: dnstest.Zone{
				"mx.example":                     {CNAME: "smtp.hosting.example"},
				"smtp.hosting.example":           {A: []string{"192.0.2.1"}, Authentic: true},
				tlsaName("smtp.hosting.example"): {TLSA: rec, Authentic: true},
			},
			secureOnly: true, wantBase: "mx.example", wantErr: "notfound",
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := Lookup(context.Background(), dnstest.NewResolver(c.zone), "mx.example.", c.secureOnly)
			if f.Base != c.wantBase {
				t.Errorf("base %q, want %q", f.Base, c.wantBase)
			}
			if got := len(f.Records) > 0; got != c.wantRecs {
				t.Errorf("records %v, want some: %v", f.Records, c.wantRecs)
			}
			if c.wantRecs && f.Result.Authentic != c.wantAuth {
				t.Errorf("authentic %v, want %v", f.Result.Authentic, c.wantAuth)
			}
			switch c.wantErr {
			case "":
				if f.Err != nil {
					t.Errorf("error %v, want none", f.Err)
				}
			case "notfound":
				if !dns.IsNotFound(f.Err) {
					t.Errorf("error %v, want a denial", f.Err)
				}
			case "temporary":
				if f.Err == nil || dns.IsNotFound(f.Err) {
					t.Errorf("error %v, want a failed look-up", f.Err)
				}
			}
		})
	}
}
