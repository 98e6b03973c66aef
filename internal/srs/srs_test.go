package srs

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var (
	testKey  = []byte("0123456789abcdef0123456789abcdef")
	otherKey = []byte("fedcba9876543210fedcba9876543210")
	day0     = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
)

// clock is a settable clock for the Rewriter.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newRewriter(t *testing.T, domain string, key []byte, c *clock, mod func(*Options)) *Rewriter {
	t.Helper()
	o := Options{
		Domain:  domain,
		Key:     key,
		Now:     c.now,
		IsLocal: func(d string) bool { return d == "local.example" },
	}
	if mod != nil {
		mod(&o)
	}
	r, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestForwardAndReverseRoundTrip(t *testing.T) {
	c := &clock{day0}
	r := newRewriter(t, "fwd.example", testKey, c, nil)
	for _, orig := range []string{
		"alice@origin.example",
		"a=b=c@origin.example",   // '=' in the local part
		"bob+tag@origin.example", // subaddress
		"x+y=z-w@sub.origin.example",
		`"john doe"@origin.example`, // quoted local part
		"Mixed.Case@Origin.Example",
		"ünïcode@origin.example",
	} {
		t.Run(orig, func(t *testing.T) {
			s, err := r.Forward(orig)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasSuffix(s, "@fwd.example") {
				t.Fatalf("Forward(%q) = %q: not at the forwarding domain", orig, s)
			}
			local := strings.Trim(s[:strings.LastIndexByte(s, '@')], `"`)
			if !IsSRS(local) || !strings.HasPrefix(local, "SRS0=") {
				t.Fatalf("Forward(%q) = %q: not an SRS0 address", orig, s)
			}
			back, err := r.Reverse(s)
			if err != nil {
				t.Fatalf("Reverse(%q): %v", s, err)
			}
			if back != orig {
				t.Fatalf("Reverse(Forward(%q)) = %q", orig, back)
			}
		})
	}
}

func TestSRS0Format(t *testing.T) {
	c := &clock{day0}
	r := newRewriter(t, "fwd.example", testKey, c, nil)
	s, err := r.Forward("alice@origin.example")
	if err != nil {
		t.Fatal(err)
	}
	// SRS0=HHHHH=TT=origin.example=alice@fwd.example
	f := strings.Split(strings.TrimSuffix(s, "@fwd.example"), "=")
	if len(f) != 5 || f[0] != "SRS0" || len(f[1]) != DefaultHashLength || len(f[2]) != 2 || f[3] != "origin.example" || f[4] != "alice" {
		t.Fatalf("unexpected SRS0 address %q", s)
	}
	if got := timestamp(day0); f[2] != got {
		t.Fatalf("timestamp %q, want %q", f[2], got)
	}
}

func TestNotRewritten(t *testing.T) {
	c := &clock{day0}
	r := newRewriter(t, "fwd.example", testKey, c, nil)
	for _, a := range []string{
		"",                                      // null sender
		"bob@fwd.example",                       // the forwarding domain
		"bob@FWD.example.",                      // any case, trailing dot
		"carol@local.example",                   // another local domain
		"SRS0=XXXXX=AA=x.example=y@fwd.example", // our own SRS address
		"no-domain",
	} {
		if r.ShouldRewrite(a) {
			t.Errorf("ShouldRewrite(%q) = true", a)
		}
		got, err := r.Forward(a)
		if err != nil || got != a {
			t.Errorf("Forward(%q) = %q, %v; want it unchanged", a, got, err)
		}
	}
	if !r.ShouldRewrite("alice@origin.example") {
		t.Error("ShouldRewrite(alice@origin.example) = false")
	}
}

func TestSRS1FromForeignSRS0AndBack(t *testing.T) {
	c := &clock{day0}
	first := newRewriter(t, "first.example", otherKey, c, nil)
	second := newRewriter(t, "second.example", testKey, c, nil)

	srs0, err := first.Forward("alice@origin.example")
	if err != nil {
		t.Fatal(err)
	}
	srs1, err := second.Forward(srs0)
	if err != nil {
		t.Fatal(err)
	}
	local := srs1[:strings.LastIndexByte(srs1, '@')]
	// SRS1=HHHHH=first.example==HHHHH=TT=origin.example=alice
	if !strings.HasPrefix(local, "SRS1=") || !strings.Contains(local, "=first.example==") || !strings.HasSuffix(srs1, "@second.example") {
		t.Fatalf("second.Forward(%q) = %q", srs0, srs1)
	}
	// A third forwarder keeps the first domain: the address does not grow.
	third := newRewriter(t, "third.example", []byte("third-key-third-key-third-key-32"), c, nil)
	srs1b, err := third.Forward(srs1)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(srs1b, "@third.example") || !strings.Contains(srs1b, "=first.example==") || len(srs1b) != len(srs1)-len("second")+len("third") {
		t.Fatalf("third.Forward(%q) = %q", srs1, srs1b)
	}

	// Bounces travel back: third -> first, second -> first, first -> alice.
	for _, hop := range []struct {
		r    *Rewriter
		addr string
	}{{third, srs1b}, {second, srs1}} {
		back, err := hop.r.Reverse(hop.addr)
		if err != nil {
			t.Fatalf("Reverse(%q): %v", hop.addr, err)
		}
		if !strings.EqualFold(back, srs0) {
			t.Fatalf("Reverse(%q) = %q, want %q", hop.addr, back, srs0)
		}
	}
	orig, err := first.Reverse(srs0)
	if err != nil || orig != "alice@origin.example" {
		t.Fatalf("first.Reverse(%q) = %q, %v", srs0, orig, err)
	}
	// The SRS1 hash is ours: the first forwarder cannot verify it, and a
	// changed opaque part does not verify.
	if _, err := first.Reverse(strings.Replace(srs1, "second.example", "first.example", 1)); !errors.Is(err, ErrForged) {
		t.Fatalf("SRS1 under another key: %v, want ErrForged", err)
	}
	if _, err := second.Reverse(strings.Replace(srs1, "=alice@", "=mallory@", 1)); !errors.Is(err, ErrForged) {
		t.Fatalf("SRS1 with changed opaque part: %v, want ErrForged", err)
	}
}

func TestCaseFoldedHashStillVerifies(t *testing.T) {
	c := &clock{day0}
	r := newRewriter(t, "fwd.example", testKey, c, nil)
	s, err := r.Forward("Alice@Origin.Example")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{strings.ToLower(s), strings.ToUpper(s)} {
		back, err := r.Reverse(v)
		if err != nil {
			t.Fatalf("Reverse(%q): %v", v, err)
		}
		if !strings.EqualFold(back, "alice@origin.example") {
			t.Fatalf("Reverse(%q) = %q", v, back)
		}
	}
	srs1, err := r.Forward("SRS0=abcd=AB=origin.example=alice@first.example")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Reverse(strings.ToLower(srs1)); err != nil {
		t.Fatalf("lower-cased SRS1: %v", err)
	}
}

func TestForgedRefused(t *testing.T) {
	c := &clock{day0}
	r := newRewriter(t, "fwd.example", testKey, c, nil)
	s, _ := r.Forward("alice@origin.example")
	f := strings.SplitN(s, "=", 5)
	cases := map[string]string{
		"other original local":  strings.Replace(s, "=alice@", "=mallory@", 1),
		"other original domain": strings.Replace(s, "=origin.example=", "=evil.example=", 1),
		"other timestamp":       strings.Join([]string{f[0], f[1], otherTS(f[2]), f[3], f[4]}, "="),
		"other hash":            strings.Join([]string{f[0], flip(f[1]), f[2], f[3], f[4]}, "="),
		"short hash":            strings.Join([]string{f[0], f[1][:4], f[2], f[3], f[4]}, "="),
		"empty hash":            strings.Join([]string{f[0], "", f[2], f[3], f[4]}, "="),
	}
	for name, a := range cases {
		if _, err := r.Reverse(a); !errors.Is(err, ErrForged) {
			t.Errorf("%s: Reverse(%q) = %v, want ErrForged", name, a, err)
		}
	}
	// Under another key.
	o := newRewriter(t, "fwd.example", otherKey, c, nil)
	if _, err := o.Reverse(s); !errors.Is(err, ErrForged) {
		t.Errorf("other key: %v, want ErrForged", err)
	}
}

func otherTS(ts string) string {
	d, _ := decodeTimestamp(ts)
	return string([]byte{b32Alphabet[((d+1)%tsCycle)>>5], b32Alphabet[(d+1)&31]})
}

func flip(h string) string {
	b := []byte(h)
	if b[0] == 'A' {
		b[0] = 'B'
	} else {
		b[0] = 'A'
	}
	return string(b)
}

func TestExpiredRefused(t *testing.T) {
	c := &clock{day0}
	r := newRewriter(t, "fwd.example", testKey, c, nil)
	s, _ := r.Forward("alice@origin.example")

	c.t = day0.Add(21 * 24 * time.Hour)
	if _, err := r.Reverse(s); err != nil {
		t.Fatalf("21 days later: %v", err)
	}
	c.t = day0.Add(22 * 24 * time.Hour)
	if _, err := r.Reverse(s); !errors.Is(err, ErrExpired) {
		t.Fatalf("22 days later: %v, want ErrExpired", err)
	}
	// From the future (the clock went back): refused too.
	c.t = day0.Add(-24 * time.Hour)
	if _, err := r.Reverse(s); !errors.Is(err, ErrExpired) {
		t.Fatalf("a day earlier: %v, want ErrExpired", err)
	}
	// MaxAge is configurable.
	c.t = day0
	short := newRewriter(t, "fwd.example", testKey, c, func(o *Options) { o.MaxAge = 2 * 24 * time.Hour })
	s, _ = short.Forward("alice@origin.example")
	c.t = day0.Add(3 * 24 * time.Hour)
	if _, err := short.Reverse(s); !errors.Is(err, ErrExpired) {
		t.Fatalf("MaxAge 2 days, 3 days later: %v", err)
	}
}

func TestOldKeysVerify(t *testing.T) {
	c := &clock{day0}
	before := newRewriter(t, "fwd.example", otherKey, c, nil)
	s, _ := before.Forward("alice@origin.example")
	after := newRewriter(t, "fwd.example", testKey, c, func(o *Options) { o.OldKeys = [][]byte{otherKey} })
	if back, err := after.Reverse(s); err != nil || back != "alice@origin.example" {
		t.Fatalf("old key: %q, %v", back, err)
	}
	// New addresses are signed with the new key only.
	n, _ := after.Forward("alice@origin.example")
	if _, err := before.Reverse(n); !errors.Is(err, ErrForged) {
		t.Fatalf("new address verified under the old key alone: %v", err)
	}
}

func TestReverseRefusesNonSRSAndMalformed(t *testing.T) {
	c := &clock{day0}
	r := newRewriter(t, "fwd.example", testKey, c, nil)
	for _, a := range []string{"alice@fwd.example", "SRS2=a=b@fwd.example", "SRS0@fwd.example", "", "SRSx=1@fwd.example"} {
		if _, err := r.Reverse(a); !errors.Is(err, ErrNotSRS) {
			t.Errorf("Reverse(%q) = %v, want ErrNotSRS", a, err)
		}
	}
	for _, a := range []string{
		"SRS0=abcde=AB=origin.example@fwd.example", // no local part
		"SRS0=abcde=ABC=origin.example=a@fwd.example",
		"SRS0=abcde=A!=origin.example=a@fwd.example",
		"SRS0=abcde=AB=bad_domain!=a@fwd.example",
		"SRS0=abcde=AB=origin.example=@fwd.example",
		"SRS1=abcde=first.example@fwd.example",
		"SRS1=abcde@fwd.example",
	} {
		if _, err := r.Reverse(a); !errors.Is(err, ErrSyntax) {
			t.Errorf("Reverse(%q) = %v, want ErrSyntax", a, err)
		}
	}
}

func TestIsSRS(t *testing.T) {
	for s, want := range map[string]bool{
		"SRS0=h=tt=d=l": true, "srs0=h": true, "SRS0+x": true, "SRS0-x": true, "SRS1=h=d==x": true,
		"SRS0": false, "SRS2=x": false, "SRS0x": false, "alice": false, "": false, "SRS": false,
	} {
		if got := IsSRS(s); got != want {
			t.Errorf("IsSRS(%q) = %v", s, got)
		}
	}
}

func TestLongSRSAddressesStillReverse(t *testing.T) {
	// SRS local parts exceed 64 octets easily; they must still work.
	c := &clock{day0}
	r := newRewriter(t, "fwd.example", testKey, c, nil)
	orig := "a.very.long.local.part.of.sixty.characters.or.so.here@a-rather-long-domain-name.origin.example"
	s, err := r.Forward(orig)
	if err != nil {
		t.Fatal(err)
	}
	if back, err := r.Reverse(s); err != nil || back != orig {
		t.Fatalf("Reverse(%q) = %q, %v", s, back, err)
	}
}

func TestNewRefusesBadOptions(t *testing.T) {
	for name, o := range map[string]Options{
		"no domain":      {Key: testKey},
		"short key":      {Domain: "fwd.example", Key: []byte("short")},
		"short old":      {Domain: "fwd.example", Key: testKey, OldKeys: [][]byte{[]byte("x")}},
		"hash too short": {Domain: "fwd.example", Key: testKey, HashLength: 2},
		"max age":        {Domain: "fwd.example", Key: testKey, MaxAge: time.Hour},
	} {
		if _, err := New(o); err == nil {
			t.Errorf("%s: New accepted %+v", name, o)
		}
	}
}

func TestLoadOrCreateKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "srs.key")
	k1, old, err := LoadOrCreateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(k1) != KeySize || len(old) != 0 {
		t.Fatalf("new key: %d bytes, %d old keys", len(k1), len(old))
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %04o, want 0600", fi.Mode().Perm())
	}
	k2, _, err := LoadOrCreateKey(path)
	if err != nil || !bytes.Equal(k1, k2) {
		t.Fatalf("second load: %v, same key %v", err, bytes.Equal(k1, k2))
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Fatalf("temporary files left behind: %v", entries)
	}

	if err := RotateKey(path); err != nil {
		t.Fatal(err)
	}
	k3, old, err := LoadOrCreateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(k3, k1) || len(old) != 1 || !bytes.Equal(old[0], k1) {
		t.Fatalf("after rotation: new key differs %v, old keys %d", !bytes.Equal(k3, k1), len(old))
	}
	for range 10 {
		if err := RotateKey(path); err != nil {
			t.Fatal(err)
		}
	}
	if _, old, _ = LoadOrCreateKey(path); len(old) != maxOldKeys {
		t.Fatalf("%d old keys kept, want %d", len(old), maxOldKeys)
	}

	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadOrCreateKey(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("world-readable key file accepted: %v", err)
	}

	bad := filepath.Join(t.TempDir(), "bad.key")
	os.WriteFile(bad, []byte("# comment\nnot base64!\n"), 0o600)
	if _, _, err := LoadOrCreateKey(bad); err == nil || !strings.Contains(err.Error(), ":2:") {
		t.Fatalf("bad key file: %v", err)
	}
}

func TestKeyFromFileWorks(t *testing.T) {
	path := filepath.Join(t.TempDir(), "srs.key")
	key, old, err := LoadOrCreateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	c := &clock{day0}
	r := newRewriter(t, "fwd.example", key, c, func(o *Options) { o.OldKeys = old })
	s, _ := r.Forward("alice@origin.example")
	if back, err := r.Reverse(s); err != nil || back != "alice@origin.example" {
		t.Fatalf("%q, %v", back, err)
	}
}

// FuzzReverse: Reverse sees RCPT TO addresses from the network. It must
// never panic, and whatever it accepts must have been made with our key
// (which a random input cannot do, short of a 25-bit guess).
func FuzzReverse(f *testing.F) {
	c := &clock{day0}
	r, err := New(Options{Domain: "fwd.example", Key: testKey, Now: c.now})
	if err != nil {
		f.Fatal(err)
	}
	s0, _ := r.Forward("alice@origin.example")
	s1, _ := r.Forward("SRS0=abcd=AB=origin.example=alice@first.example")
	for _, s := range []string{s0, s1, "SRS0=====@x", "SRS1==x.example==@y", `"SRS0=a=b=c=d"@e`, "srs0-@", "SRS0=\x00@a.b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		orig, err := r.Reverse(s)
		if err != nil {
			return
		}
		// Accepted (only our own seeds can be): no control characters.
		if strings.ContainsAny(orig, "\r\n\x00") {
			t.Fatalf("Reverse(%q) = %q", s, orig)
		}
	})
}
