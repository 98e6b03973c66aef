package dsn

import (
	"strings"
	"testing"
)

func TestParseDetail(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Detail
	}{
		{"mx1.example.net[192.0.2.1]: 550 5.1.1 user unknown", Detail{
			RemoteHost: "mx1.example.net", RemoteIP: "192.0.2.1", Code: 550, Enhanced: "5.1.1",
			Reply: "550 5.1.1 user unknown", Text: "user unknown"}},
		{"mx1.example.net[192.0.2.1]:25: 451 4.3.0 <bob@example.net>: temporarily unavailable", Detail{
			RemoteHost: "mx1.example.net", RemoteIP: "192.0.2.1", Code: 451, Enhanced: "4.3.0",
			Reply: "451 4.3.0 <bob@example.net>: temporarily unavailable", Text: "<bob@example.net>: temporarily unavailable"}},
		{"[2001:db8::25]: 421 4.7.0 too many connections", Detail{
			RemoteIP: "2001:db8::25", Code: 421, Enhanced: "4.7.0", Reply: "421 4.7.0 too many connections", Text: "too many connections"}},
		{"mx.example.org[IPv6:2001:db8::1]: 554 no thanks", Detail{
			RemoteHost: "mx.example.org", RemoteIP: "2001:db8::1", Code: 554, Reply: "554 no thanks", Text: "no thanks"}},
		{"550 5.1.1 no such user here", Detail{Code: 550, Enhanced: "5.1.1", Reply: "550 5.1.1 no such user here", Text: "no such user here"}},
		{"552 message too big", Detail{Code: 552, Reply: "552 message too big", Text: "message too big"}},
		{"550", Detail{Code: 550, Reply: "550"}},
		{"550 5.7.1", Detail{Code: 550, Enhanced: "5.7.1", Reply: "550 5.7.1"}},
		// An enhanced code of the wrong class is text, not a status.
		{"550 4.1.1 odd", Detail{Code: 550, Reply: "550 4.1.1 odd", Text: "4.1.1 odd"}},
		{"mx[192.0.2.9]: 550-5.7.1 line one\n550-5.7.1 line two\r\n550 5.7.1 line three", Detail{
			RemoteHost: "mx", RemoteIP: "192.0.2.9", Code: 550, Enhanced: "5.7.1",
			Reply: "550-5.7.1 line one 550-5.7.1 line two 550 5.7.1 line three", Text: "line one line two line three"}},
		{"connect to mx.example.net[192.0.2.3]:25: connection refused", Detail{
			RemoteHost: "mx.example.net", RemoteIP: "192.0.2.3", Text: "connection refused"}},
		// Failures of our own, led by their status code (internal/outbound).
		{"5.1.2 elsewhere.example: no MX and no address records", Detail{
			Enhanced: "5.1.2", Text: "elsewhere.example: no MX and no address records"}},
		{"4.4.1 connect to mx.example.net[192.0.2.3]:25: connection refused", Detail{
			RemoteHost: "mx.example.net", RemoteIP: "192.0.2.3", Enhanced: "4.4.1", Text: "connection refused"}},
		{"maildir: open /srv/mail/x/tmp/1: no space left on device", Detail{
			Text: "maildir: open /srv/mail/x/tmp/1: no space left on device"}},
		{"expired: still undeliverable after 120h0m0s in the queue; last error: mx1.example.net[192.0.2.1]: 451 4.2.1 mailbox busy", Detail{
			RemoteHost: "mx1.example.net", RemoteIP: "192.0.2.1", Code: 451, Enhanced: "4.2.1", Expired: true,
			Reply: "451 4.2.1 mailbox busy", Text: "mailbox busy"}},
		{"expired: still undeliverable after 1h0m0s in the queue; last error: dial tcp: lookup example.invalid: no such host", Detail{
			Expired: true, Text: "dial tcp: lookup example.invalid: no such host"}},
		{"", Detail{}},
		{"delivered", Detail{Text: "delivered"}},
		// A code-like number inside text is not a reply.
		{"maildir: quota 5500 exceeded", Detail{Text: "maildir: quota 5500 exceeded"}},
	} {
		got := ParseDetail(tc.in)
		tc.want.Raw = clean(tc.in)
		if got != tc.want {
			t.Errorf("ParseDetail(%q)\n got %+v\nwant %+v", tc.in, got, tc.want)
		}
	}
}

func TestDetailStatus(t *testing.T) {
	for _, tc := range []struct {
		detail string
		a      Action
		want   string
	}{
		{"mx[192.0.2.1]: 550 5.1.1 no", Failed, "5.1.1"},
		{"mx[192.0.2.1]: 550 no", Failed, "5.0.0"},
		{"mx[192.0.2.1]: 451 try later", Delayed, "4.0.0"},
		{"mx[192.0.2.1]: 451 4.7.1 greylisted", Delayed, "4.7.1"},
		{"maildir: broken", Failed, "5.0.0"},
		{"maildir: broken", Delayed, "4.0.0"},
		{"", Delivered, "2.0.0"},
		{"mx[192.0.2.1]: 250 2.6.0 queued", Relayed, "2.6.0"},
		{"expired: still undeliverable; last error: connect to mx[192.0.2.1]:25: timeout", Failed, "4.4.7"},
		{"expired: still undeliverable; last error: mx[192.0.2.1]: 452 4.2.2 full", Failed, "4.2.2"},
	} {
		if got := ParseDetail(tc.detail).Status(tc.a); got != tc.want {
			t.Errorf("Status(%q, %s) = %s, want %s", tc.detail, tc.a, got, tc.want)
		}
	}
}

func FuzzParseDetail(f *testing.F) {
	for _, s := range []string{
		"mx1.example.net[192.0.2.1]: 550 5.1.1 user unknown",
		"expired: x; last error: [::1]:25: 421 4.7.0 bye",
		"550-5.1.1 a\r\n550 5.1.1 b",
		"connect to a[", "[]: 5", "x]: 550 ", "\xff\xfe[192.0.2.1]",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d := ParseDetail(s)
		for _, a := range []Action{Failed, Delayed, Delivered} {
			st := d.Status(a)
			if len(st) < 5 || st[1] != '.' {
				t.Fatalf("Status %q", st)
			}
		}
		if strings.ContainsAny(d.Raw+d.Text+d.Reply+d.RemoteHost, "\r\n") {
			t.Fatalf("line end survived: %+v", d)
		}
	})
}
