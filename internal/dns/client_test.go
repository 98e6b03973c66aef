package dns_test

import (
	"context"
	"fmt"
	"net"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/posthorn/posthorn/internal/dns"
	"github.com/posthorn/posthorn/internal/dns/dnstest"
)

var testZone = dnstest.Zone{
	"example.com": {
		A:    []string{"192.0.2.1", "192.0.2.2"},
		AAAA: []string{"2001:db8::1"},
		MX:   []*net.MX{{Host: "mx1.example.com", Pref: 10}, {Host: "mx2.example.com.", Pref: 20}},
		TXT:  []string{"v=spf1 -all", "hello \"quoted\" \\ back\x01"},
		TXTStrings: [][]string{
			{"v=spf1 ", "ip4:192.0.2.0/24 ", "-all"},
		},
	},
	"signed.example":       {A: []string{"192.0.2.9"}, Authentic: true},
	"alias.signed.example": {CNAME: "signed.example", Authentic: true},
	"alias2.example":       {CNAME: "alias.signed.example"},
	"www.example.com":      {CNAME: "example.com"},
	"deep.example.com":     {CNAME: "www.example.com"},
	"dangling.example.com": {CNAME: "nowhere.example.com"},
	"loop1.example.com":    {CNAME: "loop2.example.com"},
	"loop2.example.com":    {CNAME: "loop1.example.com"},
	"empty.example.com":    {},
	"nullmx.example.com":   {MX: []*net.MX{{Host: ".", Pref: 0}}},
	"servfail.example.com": {ServFail: true},
	"timeout.example.com":  {Timeout: true},
	"192.0.2.1":            {PTR: []string{"mail.example.com", "other.example.com"}},
	"2001:db8::1":          {PTR: []string{"v6.example.com"}},
	"_25._tcp.mx1.example.com": {TLSA: []dns.TLSA{
		{Usage: 3, Selector: 1, MatchingType: 1, CertData: []byte{0xde, 0xad, 0xbe, 0xef}},
	}, Authentic: true},
}

// resolvers returns the in-memory resolver and a client talking to a
// loopback server, both over zone: every behaviour must hold for both.
func resolvers(t *testing.T, zone dnstest.Zone) map[string]dns.Resolver {
	srv := dnstest.NewServer(t, zone)
	return map[string]dns.Resolver{
		"memory": dnstest.NewResolver(zone),
		"client": dns.NewClient(dns.ClientOptions{Servers: []string{srv.Addr()}, Timeout: 300 * time.Millisecond}),
	}
}

func TestLookupsAgreeAcrossResolvers(t *testing.T) {
	ctx := context.Background()
	for name, r := range resolvers(t, testZone) {
		t.Run(name, func(t *testing.T) {
			txt, res, err := r.LookupTXT(ctx, "EXAMPLE.com")
			if err != nil {
				t.Fatal(err)
			}
			want := []string{"v=spf1 -all", "hello \"quoted\" \\ back\x01", "v=spf1 ip4:192.0.2.0/24 -all"}
			if !reflect.DeepEqual(txt, want) {
				t.Errorf("TXT = %q, want %q", txt, want)
			}
			if res.Authentic {
				t.Error("TXT authentic for an unsigned name")
			}

			mx, _, err := r.LookupMX(ctx, "example.com.")
			if err != nil {
				t.Fatal(err)
			}
			if got := fmt.Sprintf("%s %d %s %d", mx[0].Host, mx[0].Pref, mx[1].Host, mx[1].Pref); got != "mx1.example.com. 10 mx2.example.com. 20" {
				t.Errorf("MX = %s", got)
			}
			mx, _, err = r.LookupMX(ctx, "nullmx.example.com")
			if err != nil || len(mx) != 1 || mx[0].Host != "." {
				t.Errorf("null MX = %v, %v", mx, err)
			}

			ips, _, err := r.LookupIP(ctx, "ip", "example.com")
			if err != nil {
				t.Fatal(err)
			}
			if got := fmt.Sprint(ips); got != "[192.0.2.1 192.0.2.2 2001:db8::1]" {
				t.Errorf("ip = %s", got)
			}
			ips, _, err = r.LookupIP(ctx, "ip6", "example.com")
			if err != nil || fmt.Sprint(ips) != "[2001:db8::1]" {
				t.Errorf("ip6 = %v, %v", ips, err)
			}
			ips, _, err = r.LookupIP(ctx, "ip4", "deep.example.com")
			if err != nil || fmt.Sprint(ips) != "[192.0.2.1 192.0.2.2]" {
				t.Errorf("ip4 through two CNAMEs = %v, %v", ips, err)
			}

			names, _, err := r.LookupAddr(ctx, "192.0.2.1")
			if err != nil || fmt.Sprint(names) != "[mail.example.com. other.example.com.]" {
				t.Errorf("PTR v4 = %v, %v", names, err)
			}
			names, _, err = r.LookupAddr(ctx, "2001:db8::1")
			if err != nil || fmt.Sprint(names) != "[v6.example.com.]" {
				t.Errorf("PTR v6 = %v, %v", names, err)
			}
			if _, _, err := r.LookupAddr(ctx, "not-an-ip"); err == nil || dns.IsNotFound(err) || dns.IsTemporary(err) {
				t.Errorf("PTR of a non-address: %v", err)
			}

			tlsa, res, err := r.LookupTLSA(ctx, 25, "tcp", "mx1.example.com")
			if err != nil || len(tlsa) != 1 || !res.Authentic {
				t.Fatalf("TLSA = %v, %v, %v", tlsa, res, err)
			}
			if got := tlsa[0]; got.Usage != 3 || got.Selector != 1 || got.MatchingType != 1 || string(got.CertData) != "\xde\xad\xbe\xef" {
				t.Errorf("TLSA = %+v", got)
			}
		})
	}
}

func TestNotFoundAndTemporaryErrors(t *testing.T) {
	ctx := context.Background()
	for name, r := range resolvers(t, testZone) {
		t.Run(name, func(t *testing.T) {
			for _, tc := range []struct {
				host      string
				notFound  bool
				temporary bool
			}{
				{"nxdomain.example.com", true, false},
				{"empty.example.com", true, false}, // NODATA
				{"example.com", false, false},
				{"dangling.example.com", true, false},
				{"servfail.example.com", false, true},
				{"timeout.example.com", false, true},
			} {
				_, _, err := r.LookupMX(ctx, tc.host)
				if tc.host == "example.com" {
					if err != nil {
						t.Errorf("%s: %v", tc.host, err)
					}
					continue
				}
				if err == nil {
					t.Errorf("%s: no error", tc.host)
					continue
				}
				if dns.IsNotFound(err) != tc.notFound || dns.IsTemporary(err) != tc.temporary {
					t.Errorf("%s: %v: notFound=%v temporary=%v, want %v %v", tc.host, err,
						dns.IsNotFound(err), dns.IsTemporary(err), tc.notFound, tc.temporary)
				}
			}
			// NODATA for one family only: "ip" still succeeds.
			if _, _, err := r.LookupIP(ctx, "ip", "signed.example"); err != nil {
				t.Errorf("ip with A only: %v", err)
			}
			if _, _, err := r.LookupIP(ctx, "ip6", "signed.example"); !dns.IsNotFound(err) {
				t.Errorf("ip6 with A only: %v", err)
			}
		})
	}
}

func TestTimeoutIsTimeout(t *testing.T) {
	for name, r := range resolvers(t, testZone) {
		t.Run(name, func(t *testing.T) {
			_, _, err := r.LookupTXT(context.Background(), "timeout.example.com")
			de, ok := err.(*net.DNSError)
			if !ok || !de.IsTimeout || !de.IsTemporary {
				t.Fatalf("err = %#v", err)
			}
		})
	}
}

func TestContextCancelIsTemporary(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for name, r := range resolvers(t, testZone) {
		t.Run(name, func(t *testing.T) {
			_, _, err := r.LookupTXT(ctx, "example.com")
			if !dns.IsTemporary(err) {
				t.Fatalf("err = %v", err)
			}
		})
	}
}

func TestCNAMEFollowing(t *testing.T) {
	ctx := context.Background()
	for name, r := range resolvers(t, testZone) {
		t.Run(name, func(t *testing.T) {
			txt, _, err := r.LookupTXT(ctx, "deep.example.com")
			if err != nil || len(txt) != 3 {
				t.Errorf("TXT through CNAMEs = %q, %v", txt, err)
			}
			cn, _, err := r.LookupCNAME(ctx, "deep.example.com")
			if err != nil || cn != "example.com." {
				t.Errorf("CNAME = %q, %v", cn, err)
			}
			cn, _, err = r.LookupCNAME(ctx, "empty.example.com")
			if err != nil || cn != "empty.example.com." {
				t.Errorf("CNAME of a name without one = %q, %v", cn, err)
			}
			if _, _, err := r.LookupCNAME(ctx, "nxdomain.example.com"); !dns.IsNotFound(err) {
				t.Errorf("CNAME of a missing name: %v", err)
			}
			if _, _, err := r.LookupTXT(ctx, "loop1.example.com"); err == nil {
				t.Error("CNAME loop resolved")
			}
		})
	}
}

func TestAuthenticFollowsADBit(t *testing.T) {
	ctx := context.Background()
	for name, r := range resolvers(t, testZone) {
		t.Run(name, func(t *testing.T) {
			for host, want := range map[string]bool{
				"signed.example":       true,
				"alias.signed.example": true,
				"alias2.example":       false, // one unsigned link in the chain
				"example.com":          false,
			} {
				_, res, err := r.LookupIP(ctx, "ip4", host)
				if err != nil {
					t.Fatalf("%s: %v", host, err)
				}
				if res.Authentic != want {
					t.Errorf("%s: Authentic = %v, want %v", host, res.Authentic, want)
				}
			}
		})
	}
}

func TestTruncatedAnswerRetriedOverTCP(t *testing.T) {
	var big []string
	for i := range 60 {
		big = append(big, fmt.Sprintf("record %02d %s", i, strings.Repeat("x", 200)))
	}
	srv := dnstest.NewServer(t, dnstest.Zone{"big.example": {TXT: big}})
	c := dns.NewClient(dns.ClientOptions{Servers: []string{srv.Addr()}, Timeout: time.Second})
	txt, _, err := c.LookupTXT(context.Background(), "big.example")
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(txt)
	if !reflect.DeepEqual(txt, big) {
		t.Errorf("got %d records, want %d", len(txt), len(big))
	}
}

func TestServersTriedInOrder(t *testing.T) {
	bad := dnstest.NewServer(t, dnstest.Zone{"example.com": {ServFail: true}})
	good := dnstest.NewServer(t, dnstest.Zone{"example.com": {A: []string{"192.0.2.7"}}})
	c := dns.NewClient(dns.ClientOptions{Servers: []string{bad.Addr(), good.Addr()}, Timeout: time.Second})
	ips, _, err := c.LookupIP(context.Background(), "ip4", "example.com")
	if err != nil || fmt.Sprint(ips) != "[192.0.2.7]" {
		t.Fatalf("ips = %v, %v", ips, err)
	}
	// NXDOMAIN from the first server is an answer: the second is not asked.
	nx := dnstest.NewServer(t, dnstest.Zone{})
	c = dns.NewClient(dns.ClientOptions{Servers: []string{nx.Addr(), good.Addr()}, Timeout: time.Second})
	if _, _, err := c.LookupIP(context.Background(), "ip4", "example.com"); !dns.IsNotFound(err) {
		t.Fatalf("err = %v", err)
	}
}

func TestSetZoneChangesAnswers(t *testing.T) {
	srv := dnstest.NewServer(t, dnstest.Zone{"example.com": {TXT: []string{"one"}}})
	c := dns.NewClient(dns.ClientOptions{Servers: []string{srv.Addr()}, Timeout: time.Second})
	srv.SetZone(dnstest.Zone{"example.com": {TXT: []string{"two"}}})
	txt, _, err := c.LookupTXT(context.Background(), "example.com")
	if err != nil || fmt.Sprint(txt) != "[two]" {
		t.Fatalf("txt = %v, %v", txt, err)
	}
}
