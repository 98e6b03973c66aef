package screen

import (
	"context"
	"errors"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/posthorn/posthorn/internal/dns/dnstest"
	"github.com/posthorn/posthorn/internal/dnsbl"
	"github.com/posthorn/posthorn/internal/greylist"
	"github.com/posthorn/posthorn/internal/smtp"
)

func lists(t *testing.T, specs ...string) []dnsbl.List {
	var out []dnsbl.List
	for _, s := range specs {
		l, err := dnsbl.ParseList(s)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, l)
	}
	return out
}

func code(err error) string {
	var r smtp.Reply
	if errors.As(err, &r) {
		return r.Enhanced
	}
	if err != nil {
		return "not a reply: " + err.Error()
	}
	return ""
}

var zone = dnstest.Zone{
	"2.2.0.192.bl.example":     {A: []string{"127.0.0.2"}, TXT: []string{"https://bl.example/lookup?ip=192.0.2.2"}},
	"3.2.0.192.bl.example":     {A: []string{"127.0.0.2"}},
	"3.2.0.192.wl.example":     {A: []string{"127.0.9.2"}},
	"192.0.2.4":                {PTR: []string{"mail.good.example."}},
	"mail.good.example":        {A: []string{"192.0.2.4"}},
	"192.0.2.5":                {PTR: []string{"liar.example."}},
	"liar.example":             {A: []string{"198.51.100.1"}},
	"192.0.2.6":                {ServFail: true},
	"2001:db8::25":             {PTR: []string{"mx6.good.example."}},
	"mx6.good.example":         {AAAA: []string{"2001:db8::25"}},
	"7.2.0.192.broken.example": {ServFail: true},
}

func TestDNSBLAtRcptWithText(t *testing.T) {
	s := New(Options{Resolver: dnstest.NewResolver(zone), Block: lists(t, "broken.example", "bl.example=127.0.0.[2..11]")})
	ctx := context.Background()
	ss := s.Begin(netip.MustParseAddr("192.0.2.2"), nil)
	if err := ss.Connect(ctx); err != nil {
		t.Fatalf("refused at connect with the stage set to RCPT: %v", err)
	}
	err := ss.Rcpt(ctx, "a@x.example", "b@y.example")
	if code(err) != "5.7.1" || !strings.Contains(err.Error(), "554") || !strings.Contains(err.Error(), "https://bl.example/lookup?ip=192.0.2.2") || !strings.Contains(err.Error(), "bl.example") {
		t.Fatalf("listed client: %v", err)
	}
	if err := s.Begin(netip.MustParseAddr("192.0.2.7"), nil).Rcpt(ctx, "a@x", "b@y"); err != nil {
		t.Fatalf("a failing list blocked a client: %v", err)
	}
}

func TestDNSBLAtConnectAndAllowListExempts(t *testing.T) {
	s := New(Options{Resolver: dnstest.NewResolver(zone), Block: lists(t, "bl.example"), Allow: lists(t, "wl.example"), At: AtConnect, StrictHelo: true})
	ctx := context.Background()
	if err := s.Begin(netip.MustParseAddr("192.0.2.2"), nil).Connect(ctx); code(err) != "5.7.1" || !strings.HasPrefix(err.Error(), "554") {
		t.Fatalf("listed client at connect: %v", err)
	}
	ss := s.Begin(netip.MustParseAddr("192.0.2.3"), nil)
	if err := ss.Connect(ctx); err != nil {
		t.Fatalf("client on the allow list refused: %v", err)
	}
	if err := ss.Helo(ctx, "localhost"); err != nil {
		t.Fatalf("allow-listed client's HELO checked: %v", err)
	}
}

func TestFCrDNS(t *testing.T) {
	s := New(Options{Resolver: dnstest.NewResolver(zone), FCrDNS: true})
	ctx := context.Background()
	for ip, want := range map[string]string{
		"192.0.2.4":    "",
		"2001:db8::25": "",
		"192.0.2.5":    "5.7.25", // PTR does not resolve back
		"192.0.2.9":    "5.7.25", // no PTR
		"192.0.2.6":    "4.7.25", // SERVFAIL: try later
	} {
		if got := code(s.Begin(netip.MustParseAddr(ip), nil).Rcpt(ctx, "a@x", "b@y")); got != want {
			t.Errorf("%s: %q, want %q", ip, got, want)
		}
	}
}

func TestStrictHelo(t *testing.T) {
	s := New(Options{StrictHelo: true})
	ss := s.Begin(netip.MustParseAddr("192.0.2.4"), nil)
	ctx := context.Background()
	for name, want := range map[string]string{
		"mail.example.com":  "",
		"mail.example.com.": "",
		"[192.0.2.4]":       "",
		"localhost":         "5.5.2",
		"host.123":          "5.5.2",
		"[192.0.2.99]":      "5.7.1",
	} {
		if got := code(ss.Helo(ctx, name)); got != want {
			t.Errorf("HELO %s: %q, want %q", name, got, want)
		}
	}
	if err := New(Options{}).Begin(netip.MustParseAddr("192.0.2.4"), nil).Helo(ctx, "localhost"); err != nil {
		t.Errorf("HELO checked with StrictHelo off: %v", err)
	}
}

func TestGreylistAtRcpt(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	g, err := greylist.Open(greylist.Options{Path: filepath.Join(t.TempDir(), "greylist"), Delay: time.Minute, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	s := New(Options{Greylist: g, Resolver: dnstest.NewResolver(zone), Allow: lists(t, "wl.example")})
	ctx := context.Background()
	err = s.Begin(netip.MustParseAddr("192.0.2.4"), nil).Rcpt(ctx, "a@x", "b@y")
	if code(err) != "4.7.1" || !strings.HasPrefix(err.Error(), "451") || !strings.Contains(err.Error(), "60 seconds") {
		t.Fatalf("first attempt: %v", err)
	}
	now = now.Add(2 * time.Minute)
	if err := s.Begin(netip.MustParseAddr("192.0.2.4"), nil).Rcpt(ctx, "a@x", "b@y"); err != nil {
		t.Fatalf("retry: %v", err)
	}
	if err := s.Begin(netip.MustParseAddr("192.0.2.3"), nil).Rcpt(ctx, "new@x", "b@y"); err != nil {
		t.Fatalf("allow-listed client greylisted: %v", err)
	}
}
