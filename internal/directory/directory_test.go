package directory

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func testDirectory(t *testing.T) *Directory {
	t.Helper()
	accounts := map[string]bool{"alice@example.com": true, "carol@example.com": true, "first-last@example.com": true, "dave@xn--bcher-kva.example": true}
	d, err := New(Options{
		Domains: []Domain{
			{Name: "example.com", Delivery: "maildir", Mailboxes: []string{"Info", "bob"}},
			{Name: "catch.example", Delivery: "maildir", CatchAll: "Sink", Mailboxes: []string{"known"}},
			{Name: "any.example", Delivery: "lmtp:unix:/run/lmtp", AcceptAny: true},
			{Name: "Bücher.example", Delivery: "maildir"},
			{Name: "fwd.example", CatchAll: "alice@example.com"},
			{Name: "remote-catch.example", CatchAll: "Someone@Elsewhere.ORG"},
		},
		Aliases: map[string][]string{
			"postmaster@example.com":  {"alice@example.com"},
			"list@example.com":        {"alice@example.com", "Someone@Elsewhere.org", "bob@example.com", "alice@example.com"},
			"bob+special@example.com": {"carol@example.com"},
			"team@example.com":        {"list@example.com", "carol@example.com"},
			"copy@example.com":        {"copy@example.com", "backup@elsewhere.org"},
			"carol@example.com":       {"carol@example.com", "carol@archive.example.net"},
			"loop1@example.com":       {"loop2@example.com"},
			"loop2@example.com":       {"loop1@example.com"},
			"partial@example.com":     {"gone@example.com", "bob@example.com"},
			"broken@example.com":      {"gone@example.com"},
			"sink@catch.example":      {"alice@example.com"},
			"Alias@BÜCHER.example":    {"dave@bücher.example"},
		},
		SubaddressDelimiter: "+-",
		UserExists:          func(a string) bool { return accounts[a] },
	})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func mb(dom, local, delivery string) Mailbox {
	return Mailbox{Domain: dom, LocalPart: local, Delivery: delivery}
}

func TestResolve(t *testing.T) {
	d := testDirectory(t)
	const md = "maildir"
	cases := []struct {
		addr    string
		local   []Mailbox
		forward []string
		unknown []string
		err     error
	}{
		{addr: "alice@example.com", local: []Mailbox{mb("example.com", "alice", md)}},
		{addr: "ALICE@Example.COM", local: []Mailbox{mb("example.com", "alice", md)}},
		{addr: "alice+news@example.com", local: []Mailbox{mb("example.com", "alice", md)}},
		{addr: "alice-news@example.com", local: []Mailbox{mb("example.com", "alice", md)}},
		{addr: "alice+a-b@example.com", local: []Mailbox{mb("example.com", "alice", md)}},
		{addr: "first-last@example.com", local: []Mailbox{mb("example.com", "first-last", md)}}, // full name before the base
		{addr: "info@example.com", local: []Mailbox{mb("example.com", "info", md)}},
		{addr: "bob@example.com", local: []Mailbox{mb("example.com", "bob", md)}},
		{addr: "bob+special@example.com", local: []Mailbox{mb("example.com", "carol", md)}, forward: []string{"carol@archive.example.net"}}, // alias on the full address first
		{addr: "bob+other@example.com", local: []Mailbox{mb("example.com", "bob", md)}},
		{addr: "nobody@example.com", err: ErrUnknownUser},
		{addr: "nobody+x@example.com", err: ErrUnknownUser},
		{addr: "+x@example.com", err: ErrUnknownUser},
		{addr: "list@example.com", local: []Mailbox{mb("example.com", "alice", md), mb("example.com", "bob", md)}, forward: []string{"Someone@elsewhere.org"}},
		{addr: "list+tag@example.com", local: []Mailbox{mb("example.com", "alice", md), mb("example.com", "bob", md)}, forward: []string{"Someone@elsewhere.org"}},
		{addr: "team@example.com", local: []Mailbox{mb("example.com", "alice", md), mb("example.com", "bob", md), mb("example.com", "carol", md)}, forward: []string{"Someone@elsewhere.org", "carol@archive.example.net"}},
		{addr: "copy@example.com", forward: []string{"backup@elsewhere.org"}, unknown: []string{"copy@example.com"}},
		{addr: "carol@example.com", local: []Mailbox{mb("example.com", "carol", md)}, forward: []string{"carol@archive.example.net"}},
		{addr: "loop1@example.com", err: ErrUnknownUser},
		{addr: "partial@example.com", local: []Mailbox{mb("example.com", "bob", md)}, unknown: []string{"gone@example.com"}},
		{addr: "broken@example.com", err: ErrUnknownUser},
		// postmaster: the alias; RFC 5321 4.5.1 wants it to always work.
		{addr: "PostMaster@example.com", local: []Mailbox{mb("example.com", "alice", md)}},
		{addr: "postmaster", local: []Mailbox{mb("example.com", "alice", md)}},
		{addr: "postmaster@bücher.example", local: []Mailbox{mb("xn--bcher-kva.example", "postmaster", md)}},
		{addr: "postmaster@catch.example", local: []Mailbox{mb("example.com", "alice", md)}}, // the catch-all, an alias
		// catch-all only when nothing else matched
		{addr: "known@catch.example", local: []Mailbox{mb("catch.example", "known", md)}},
		{addr: "whatever@catch.example", local: []Mailbox{mb("example.com", "alice", md)}},
		{addr: "x@fwd.example", local: []Mailbox{mb("example.com", "alice", md)}},
		{addr: "x@remote-catch.example", forward: []string{"Someone@elsewhere.org"}},
		// accept_any: every local part, subaddress stripped, lowercased
		{addr: "Zed+tag@ANY.example", local: []Mailbox{mb("any.example", "zed", "lmtp:unix:/run/lmtp")}},
		{addr: "Ünïcode@any.example", local: []Mailbox{mb("any.example", "ünïcode", "lmtp:unix:/run/lmtp")}},
		// IDNA: U-labels and A-labels are one domain
		{addr: "dave@BÜCHER.example", local: []Mailbox{mb("xn--bcher-kva.example", "dave", md)}},
		{addr: "dave@xn--bcher-kva.example", local: []Mailbox{mb("xn--bcher-kva.example", "dave", md)}},
		{addr: "alias@xn--bcher-kva.example", local: []Mailbox{mb("xn--bcher-kva.example", "dave", md)}},
		// not ours, malformed, unsafe as a directory name
		{addr: "alice@example.org", err: ErrNotLocal},
		{addr: "alice", err: ErrBadAddress},
		{addr: "@example.com", err: ErrBadAddress},
		{addr: "alice@exa mple.com", err: ErrBadAddress},
		{addr: "a\r\nb@any.example", err: ErrBadAddress},
		{addr: "a\x00b@any.example", err: ErrBadAddress},
		{addr: "../etc@any.example", err: ErrBadAddress},
		{addr: ".hidden@any.example", err: ErrBadAddress},
		{addr: "a/b@any.example", err: ErrBadAddress},
		{addr: "\xff@any.example", err: ErrBadAddress},
	}
	for _, tc := range cases {
		t.Run(tc.addr, func(t *testing.T) {
			r, err := d.Resolve(tc.addr)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("err = %v, want %v", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(r.Local, tc.local) || !reflect.DeepEqual(r.Forward, tc.forward) || !reflect.DeepEqual(r.Unknown, tc.unknown) {
				t.Errorf("got  %+v\nwant %+v %v %v", r, tc.local, tc.forward, tc.unknown)
			}
		})
	}
}

func TestIsLocalDomain(t *testing.T) {
	d := testDirectory(t)
	for dom, want := range map[string]bool{
		"example.com": true, "EXAMPLE.COM": true, "bücher.example": true, "BÜCHER.EXAMPLE": true,
		"xn--bcher-kva.example": true, "example.org": false, "": false, "exa mple.com": false, "sub.example.com": false,
	} {
		if got := d.IsLocalDomain(dom); got != want {
			t.Errorf("IsLocalDomain(%q) = %v", dom, got)
		}
	}
	if got := d.Domains(); len(got) != 6 || got[0] != "any.example" {
		t.Errorf("Domains() = %v", got)
	}
}

func TestAliasDepthBound(t *testing.T) {
	aliases := map[string][]string{}
	for i := 0; i <= MaxAliasDepth+1; i++ {
		aliases[name(i)] = []string{name(i + 1)}
	}
	d, err := New(Options{Domains: []Domain{{Name: "example.com", AcceptAny: true}}, Aliases: aliases})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Resolve(name(0)); !errors.Is(err, ErrAliasDepth) {
		t.Errorf("err = %v", err)
	}
	if r, err := d.Resolve(name(3)); err != nil || len(r.Local) != 1 {
		t.Errorf("a chain within the bound: %+v %v", r, err)
	}
}

func name(i int) string { return "a" + strings.Repeat("x", i) + "@example.com" }

func TestAliasFanOutIsExpandedOnce(t *testing.T) {
	// Each level points twice at the next: 2^16 paths if expanded naively.
	aliases := map[string][]string{}
	for i := 0; i < MaxAliasDepth; i++ {
		aliases[name(i)] = []string{name(i + 1), name(i + 1)}
	}
	d, err := New(Options{Domains: []Domain{{Name: "example.com", AcceptAny: true}}, Aliases: aliases})
	if err != nil {
		t.Fatal(err)
	}
	r, err := d.Resolve(name(0))
	if err != nil || len(r.Local) != 1 {
		t.Errorf("%+v %v", r, err)
	}
}

func TestPostmasterWithoutAnything(t *testing.T) {
	d, err := New(Options{Domains: []Domain{{Name: "example.com", Delivery: "maildir"}}})
	if err != nil {
		t.Fatal(err)
	}
	r, err := d.Resolve("Postmaster@example.com")
	if err != nil || !reflect.DeepEqual(r.Local, []Mailbox{mb("example.com", "postmaster", "maildir")}) {
		t.Errorf("%+v %v", r, err)
	}
	if _, err := d.Resolve("someone@example.com"); !errors.Is(err, ErrUnknownUser) {
		t.Errorf("err = %v", err)
	}
}

func TestNewRefusesBadInput(t *testing.T) {
	for _, o := range []Options{
		{Domains: []Domain{{Name: "bad domain"}}},
		{Domains: []Domain{{Name: "example.com"}, {Name: "EXAMPLE.com"}}},
		{Domains: []Domain{{Name: "example.com", Mailboxes: []string{"../x"}}}},
		{Domains: []Domain{{Name: "example.com", Mailboxes: []string{"a/b"}}}},
		{Domains: []Domain{{Name: "example.com", CatchAll: ".x"}}},
		{Domains: []Domain{{Name: "example.com"}}, Aliases: map[string][]string{"nope": {"a@example.com"}}},
		{Domains: []Domain{{Name: "example.com"}}, Aliases: map[string][]string{"a@example.com": {"b@"}}},
	} {
		if _, err := New(o); err == nil {
			t.Errorf("New(%+v) succeeded", o)
		}
	}
}

func TestBase(t *testing.T) {
	d := testDirectory(t)
	for in, want := range map[string]string{
		"Bob+tag@Example.COM": "bob@example.com",
		"bob-a+b@example.com": "bob@example.com",
		"bob@bücher.example":  "bob@xn--bcher-kva.example",
		"+x@example.com":      "+x@example.com",
	} {
		if got, err := d.Base(in); err != nil || got != want {
			t.Errorf("Base(%q) = %q, %v", in, got, err)
		}
	}
	if got, _ := NormalizeAddress("Bob+Tag@BÜCHER.example"); got != "bob+tag@xn--bcher-kva.example" {
		t.Errorf("NormalizeAddress = %q", got)
	}
}

func FuzzResolve(f *testing.F) {
	d, err := New(Options{
		Domains:             []Domain{{Name: "example.com", AcceptAny: true}, {Name: "c.example", CatchAll: "x"}},
		Aliases:             map[string][]string{"a@example.com": {"b@example.com", "a@example.com", "z@c.example"}},
		SubaddressDelimiter: "+",
	})
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{"a@example.com", "../x@example.com", "x+y@c.example", "postmaster", "\x00@example.com"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, addr string) {
		r, err := d.Resolve(addr)
		if err != nil {
			return
		}
		for _, m := range r.Local {
			if checkMailboxName(m.LocalPart) != nil || m.LocalPart != strings.ToLower(m.LocalPart) {
				t.Errorf("unsafe mailbox %q from %q", m.LocalPart, addr)
			}
		}
	})
}
