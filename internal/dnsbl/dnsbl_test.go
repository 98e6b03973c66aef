package dnsbl

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"github.com/posthorn/posthorn/internal/dns/dnstest"
)

func TestQueryNames(t *testing.T) {
	l, err := ParseList("zen.spamhaus.org")
	if err != nil {
		t.Fatal(err)
	}
	if got := l.Query(netip.MustParseAddr("192.0.2.99")); got != "99.2.0.192.zen.spamhaus.org" {
		t.Errorf("IPv4 query %q", got)
	}
	// RFC 5782 2.4's example.
	want := "b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.zen.spamhaus.org"
	if got := l.Query(netip.MustParseAddr("2001:db8:1:2:3:4:567:89ab")); got != want {
		t.Errorf("IPv6 query %q, want %q", got, want)
	}
	if got := l.Query(netip.MustParseAddr("::ffff:192.0.2.99")); got != "99.2.0.192.zen.spamhaus.org" {
		t.Errorf("mapped IPv4 query %q", got)
	}
}

func TestParseListFilters(t *testing.T) {
	l, err := ParseList("zen.spamhaus.org=127.0.0.[2..11]")
	if err != nil {
		t.Fatal(err)
	}
	for a, want := range map[string]bool{"127.0.0.2": true, "127.0.0.11": true, "127.0.0.1": false, "127.0.0.12": false, "127.255.255.254": false, "127.0.1.2": false} {
		if got := l.matches(netip.MustParseAddr(a)); got != want {
			t.Errorf("%s: matches %v, want %v", a, got, want)
		}
	}
	l, err = ParseList("list.dnswl.org=127.0.[0..255].[1;2;3]")
	if err != nil {
		t.Fatal(err)
	}
	if !l.matches(netip.MustParseAddr("127.0.9.2")) || l.matches(netip.MustParseAddr("127.0.9.0")) {
		t.Error("[n;m;k] set filter wrong")
	}
	unfiltered, _ := ParseList("bl.example")
	if !unfiltered.matches(netip.MustParseAddr("127.0.0.2")) || unfiltered.matches(netip.MustParseAddr("127.255.255.254")) || unfiltered.matches(netip.MustParseAddr("10.0.0.2")) {
		t.Error("unfiltered list: want 127/8 except 127.255.255/24")
	}
	for _, bad := range []string{"", "=127.0.0.2", "bl.example=127.0.0", "bl.example=127.0.0.[2..1]", "bl.example=127.0.0.[2..300]", "bl example", "bl.example=127.0.0.[2", "bl..example"} {
		if _, err := ParseList(bad); err == nil {
			t.Errorf("ParseList(%q) accepted", bad)
		}
	}
}

func TestCheckerBlockAllowAndText(t *testing.T) {
	r := dnstest.NewResolver(dnstest.Zone{
		"2.0.0.127.bl.example":  {A: []string{"127.0.0.2"}, TXT: []string{"Listed: see https://bl.example/q?127.0.0.2\r\nX-Injected: yes"}},
		"3.0.0.127.bl.example":  {A: []string{"127.0.0.1"}}, // outside the filter
		"4.0.0.127.bl.example":  {A: []string{"127.0.0.4"}},
		"4.0.0.127.wl.example":  {A: []string{"127.0.10.2"}},
		"5.0.0.127.bl.example":  {A: []string{"127.255.255.254"}},
		"6.0.0.127.bad.example": {ServFail: true},
		"6.0.0.127.bl.example":  {A: []string{"127.0.0.3"}},
	})
	bl, _ := ParseList("bl.example=127.0.0.[2..11]")
	bad, _ := ParseList("bad.example")
	wl, _ := ParseList("wl.example=127.0.[0..255].[2..3]")
	c := &Checker{Resolver: r, Block: []List{bad, bl}, Allow: []List{wl}}
	ctx := context.Background()

	v, err := c.Check(ctx, netip.MustParseAddr("127.0.0.2"))
	if err != nil || v.Blocked == nil || v.Allowed != nil {
		t.Fatalf("127.0.0.2: %+v %v, want blocked", v, err)
	}
	if v.Blocked.Zone != "bl.example" || v.Blocked.Code != netip.MustParseAddr("127.0.0.2") || strings.ContainsAny(v.Blocked.Text, "\r\n") || !strings.HasPrefix(v.Blocked.Text, "Listed: see https://bl.example/") {
		t.Errorf("hit %+v", *v.Blocked)
	}
	for _, ip := range []string{"127.0.0.3", "127.0.0.5", "127.0.0.9"} {
		if v, err := c.Check(ctx, netip.MustParseAddr(ip)); err != nil || v.Blocked != nil {
			t.Errorf("%s: %+v %v, want not listed", ip, v, err)
		}
	}
	v, err = c.Check(ctx, netip.MustParseAddr("127.0.0.4"))
	if err != nil || v.Blocked != nil || v.Allowed == nil || v.Allowed.Zone != "wl.example" {
		t.Errorf("127.0.0.4 on the allow list: %+v %v", v, err)
	}
	// A list that fails is reported, and the others still decide.
	v, err = c.Check(ctx, netip.MustParseAddr("127.0.0.6"))
	if err == nil || v.Blocked == nil {
		t.Errorf("127.0.0.6: %+v %v, want blocked by bl.example and an error from bad.example", v, err)
	}
}
