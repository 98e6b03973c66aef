package dnsbl

import (
	"net/netip"
	"strings"
	"testing"
)

// FuzzParseList: a list that parses has a zone of DNS labels, its query
// names are under the zone, and its filter never matches outside
// 127.0.0.0/8 unless asked to.
func FuzzParseList(f *testing.F) {
	for _, s := range []string{"zen.spamhaus.org=127.0.0.[2..11]", "list.dnswl.org=127.0.[0..255].[1;2;3]", "bl.example", "a=1.2.3.4", "x=[..].1.1.1", "b.example=127.0.0.[2;", "c=127.[1..2..3].0.1"} {
		f.Add(s, "192.0.2.1")
	}
	f.Fuzz(func(t *testing.T, spec, ip string) {
		l, err := ParseList(spec)
		if err != nil {
			return
		}
		if l.Zone == "" || strings.ContainsAny(l.Zone, " \r\n\x00=[]") {
			t.Fatalf("zone %q from %q", l.Zone, spec)
		}
		a, err := netip.ParseAddr(ip)
		if err != nil {
			return
		}
		if q := l.Query(a); !strings.HasSuffix(q, "."+l.Zone) {
			t.Fatalf("query %q not under %q", q, l.Zone)
		}
		if l.filter == nil && l.matches(a) && a.Unmap().As4()[0] != 127 {
			t.Fatalf("unfiltered list matched %s", a)
		}
	})
}

// FuzzClean: a list's TXT text is made safe for a reply line.
func FuzzClean(f *testing.F) {
	f.Add("Listed: see https://bl.example/q?1.2.3.4\r\n250 injected")
	f.Fuzz(func(t *testing.T, s string) {
		c := clean(s)
		if len(c) > 201 || strings.ContainsFunc(c, func(r rune) bool { return r < 0x20 || r >= 0x7f }) {
			t.Fatalf("clean(%q) = %q", s, c)
		}
	})
}
