// Package srs rewrites envelope senders of forwarded mail with the Sender Rewriting Scheme, and reverses them.
//
// A forwarder that relays alice@origin.example to another domain with the
// envelope sender unchanged fails SPF at the destination: origin.example
// never authorised the forwarder's addresses. SRS (Shevek's scheme, as
// libsrs2, postsrsd and Exim implement it) replaces the sender with an
// address at the forwarder's own domain that encodes the original one and
// carries a keyed hash and a timestamp, so that a bounce to it can be
// routed back, and nobody else can make the forwarder send mail to an
// address of their choice:
//
//	SRS0=HHHHH=TT=origin.example=alice@forwarder.example
//	SRS1=HHHHH=first.example==HHHH=TT=origin.example=alice@forwarder.example
//
// SRS0 is the first rewrite: HHHHH is a truncated HMAC of the rest, TT the
// day the rewrite was made (days since 1970 modulo 1024, two base32
// characters). SRS1 is what a second forwarder makes of an SRS0 (or SRS1)
// address of another domain: it keeps the first forwarder's domain and the
// SRS0 part as an opaque string and only adds its own hash, so the address
// does not grow with every hop, and a bounce goes back to the first
// forwarder, who alone can check the SRS0 hash and timestamp.
//
// Local parts are often folded to lower case in transit, so the hash is
// base32 (case-insensitive) computed over lower-cased input, and compared
// ignoring case. The hash is HMAC-SHA256; addresses we make can only be
// reversed by us, so compatibility with other implementations' hashes is
// not needed, only their syntax.
package srs

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/posthorn/posthorn/internal/smtp"
)

// Errors of Reverse. Test with errors.Is. Suggested replies at the SMTP
// edge, when a bounce arrives for such an address: ErrForged 550 5.7.1
// ("invalid SRS signature"), ErrExpired 550 5.1.1 (the address is no
// longer valid), ErrNotSRS and ErrSyntax 550 5.1.1 (no such address).
var (
	// ErrNotSRS: the local part does not start with SRS0 or SRS1.
	ErrNotSRS = errors.New("srs: not an SRS address")
	// ErrSyntax: it starts like one but its fields are malformed.
	ErrSyntax = errors.New("srs: malformed SRS address")
	// ErrForged: the hash does not match under any of our keys.
	ErrForged = errors.New("srs: hash does not verify (forged address)")
	// ErrExpired: the timestamp is older than MaxAge (or in the future).
	ErrExpired = errors.New("srs: timestamp expired")
)

// Defaults of Options.
const (
	DefaultMaxAge     = 21 * 24 * time.Hour
	DefaultHashLength = 5
	minHashLength     = 4
	maxHashLength     = 16
)

// Options configure a Rewriter.
type Options struct {
	// Domain is the domain of rewritten addresses. It must be one of ours
	// (bounces to it must reach us) and it must have an SPF record that
	// authorises this host.
	Domain string
	// Key signs new addresses and verifies. At least 16 bytes; see
	// LoadOrCreateKey.
	Key []byte
	// OldKeys only verify: addresses made before a key rotation stay
	// valid until they expire.
	OldKeys [][]byte
	// MaxAge is how long an SRS0 address can be reversed; default
	// DefaultMaxAge (21 days, as libsrs2). At most 1000 days.
	MaxAge time.Duration
	// HashLength is the number of base32 characters of the hash (5 bits
	// each); default DefaultHashLength, between 4 and 16.
	HashLength int
	// IsLocal reports whether a domain is one of ours: senders there are
	// not rewritten. Domain itself always counts as ours.
	IsLocal func(domain string) bool
	// Now replaces the clock in tests.
	Now func() time.Time
}

// Rewriter makes and reverses SRS addresses. It is safe for concurrent use.
type Rewriter struct {
	o      Options
	keys   [][]byte // Key first
	domain string   // Options.Domain, lower case
}

// New returns a Rewriter.
func New(o Options) (*Rewriter, error) {
	o.Domain = strings.TrimSuffix(strings.ToLower(o.Domain), ".")
	if !smtp.IsDomain(o.Domain, true) {
		return nil, fmt.Errorf("srs: bad rewrite domain %q", o.Domain)
	}
	if len(o.Key) < 16 {
		return nil, errors.New("srs: the key must have at least 16 bytes")
	}
	for _, k := range o.OldKeys {
		if len(k) < 16 {
			return nil, errors.New("srs: every old key must have at least 16 bytes")
		}
	}
	if o.MaxAge == 0 {
		o.MaxAge = DefaultMaxAge
	}
	if o.MaxAge < 24*time.Hour || o.MaxAge > 1000*24*time.Hour {
		return nil, fmt.Errorf("srs: MaxAge %s is out of range (1 to 1000 days)", o.MaxAge)
	}
	if o.HashLength == 0 {
		o.HashLength = DefaultHashLength
	}
	if o.HashLength < minHashLength || o.HashLength > maxHashLength {
		return nil, fmt.Errorf("srs: HashLength %d is out of range (%d to %d)", o.HashLength, minHashLength, maxHashLength)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	keys := append([][]byte{o.Key}, o.OldKeys...)
	return &Rewriter{o: o, keys: keys, domain: o.Domain}, nil
}

// IsSRS reports whether a local part is an SRS0 or SRS1 address: the tag
// in any case followed by one of the separators libsrs2 accepts ('=', '+'
// or '-').
func IsSRS(local string) bool {
	_, _, ok := tag(local)
	return ok
}

// tag splits "SRS0=rest" into 0 and "rest" (and 1 for SRS1).
func tag(local string) (n int, rest string, ok bool) {
	if len(local) < 5 || !strings.EqualFold(local[:3], "SRS") {
		return 0, "", false
	}
	switch local[3] {
	case '0':
		n = 0
	case '1':
		n = 1
	default:
		return 0, "", false
	}
	if c := local[4]; c != '=' && c != '+' && c != '-' {
		return 0, "", false
	}
	return n, local[5:], true
}

// ShouldRewrite reports whether Forward rewrites the sender addr: not the
// null sender, not an address of one of our domains (our own SRS
// addresses included), not something that does not parse.
func (r *Rewriter) ShouldRewrite(addr string) bool {
	a, ok := split(addr)
	return ok && !r.isLocal(a.Domain)
}

func (r *Rewriter) isLocal(domain string) bool {
	d := strings.TrimSuffix(strings.ToLower(domain), ".")
	if d == r.domain {
		return true
	}
	return r.o.IsLocal != nil && r.o.IsLocal(d)
}

// Forward returns the envelope sender to use when forwarding a message
// from addr to another domain: addr itself when ShouldRewrite says no (the
// null sender stays null), otherwise an SRS0 address, or an SRS1 address
// when addr is already an SRS address of another forwarder.
func (r *Rewriter) Forward(addr string) (string, error) {
	if addr == "" || !r.ShouldRewrite(addr) {
		return addr, nil
	}
	a, ok := split(addr)
	if !ok {
		return "", fmt.Errorf("srs: cannot rewrite %q: not an address", addr)
	}
	var local string
	n, rest, isSRS := tag(a.Local)
	if isSRS && n == 0 {
		// SRS0 of another forwarder: SRS1 pointing back at it, with the
		// SRS0 part kept opaque (its separator included).
		opaque := a.Local[4:]
		local = "SRS1=" + r.hash(a.Domain, opaque) + "=" + a.Domain + "=" + opaque
	} else if first, opaque, ok := splitSRS1(rest); isSRS && n == 1 && ok {
		// SRS1 of another forwarder: keep its first domain and opaque
		// part and sign them ourselves.
		local = "SRS1=" + r.hash(first, opaque) + "=" + first + "=" + opaque
	} else {
		ts := timestamp(r.o.Now())
		local = "SRS0=" + r.hash(ts, a.Domain, a.Local) + "=" + ts + "=" + a.Domain + "=" + a.Local
	}
	return smtp.Address{Local: local, Domain: r.domain}.String(), nil
}

// Reverse returns the address an SRS address stands for: for SRS0 the
// original sender, after checking hash and timestamp; for SRS1 the SRS0
// address at the first forwarder, after checking our hash. The domain of
// addr is not checked: route only addresses of our domains here. Errors
// wrap ErrNotSRS, ErrSyntax, ErrForged or ErrExpired.
func (r *Rewriter) Reverse(addr string) (string, error) {
	a, ok := split(addr)
	if !ok {
		return "", ErrNotSRS
	}
	n, rest, ok := tag(a.Local)
	if !ok {
		return "", ErrNotSRS
	}
	if n == 1 {
		hh, _, _ := strings.Cut(rest, "=")
		first, opaque, ok := splitSRS1(rest)
		if !ok {
			return "", fmt.Errorf("%w: %q", ErrSyntax, addr)
		}
		if !r.verify(hh, first, opaque) {
			return "", ErrForged
		}
		return smtp.Address{Local: "SRS0" + opaque, Domain: first}.String(), nil
	}
	// HHH=TT=domain=local; the local part may contain '=' itself.
	f := strings.SplitN(rest, "=", 4)
	if len(f) != 4 || f[3] == "" || len(f[1]) != 2 || !smtp.IsDomain(f[2], true) {
		return "", fmt.Errorf("%w: %q", ErrSyntax, addr)
	}
	hh, ts, domain, local := f[0], f[1], f[2], f[3]
	day, ok := decodeTimestamp(ts)
	if !ok {
		return "", fmt.Errorf("%w: bad timestamp in %q", ErrSyntax, addr)
	}
	// Check the hash first: an expired but forged address is forged.
	if !r.verify(hh, ts, domain, local) {
		return "", ErrForged
	}
	age := (today(r.o.Now()) - day + tsCycle) % tsCycle
	if time.Duration(age)*24*time.Hour > r.o.MaxAge {
		return "", ErrExpired
	}
	return smtp.Address{Local: local, Domain: domain}.String(), nil
}

// splitSRS1 splits what follows "SRS1=": HHH=first-domain=opaque, where
// opaque starts with the separator that followed the SRS0 tag.
func splitSRS1(rest string) (first, opaque string, ok bool) {
	_, rest, ok1 := strings.Cut(rest, "=")
	first, opaque, ok2 := strings.Cut(rest, "=")
	if !ok1 || !ok2 || opaque == "" || !smtp.IsDomain(first, true) {
		return "", "", false
	}
	return first, opaque, true
}

// split parses "local@domain", the local part possibly quoted, without
// the 64-octet limit of RFC 5321 4.5.3.1.1: SRS addresses often exceed it
// and are accepted by MTAs everywhere. The null sender, addresses without
// a domain and anything with control characters do not split.
func split(addr string) (smtp.Address, bool) {
	at := strings.LastIndexByte(addr, '@')
	if at <= 0 || len(addr) > 512 {
		return smtp.Address{}, false
	}
	local, domain := addr[:at], strings.TrimSuffix(addr[at+1:], ".")
	if !smtp.IsDomain(domain, true) && !smtp.IsAddressLiteral(domain) {
		return smtp.Address{}, false
	}
	if len(local) >= 2 && local[0] == '"' && local[len(local)-1] == '"' {
		var b strings.Builder
		for i := 1; i < len(local)-1; i++ {
			if local[i] == '\\' && i+1 < len(local)-1 {
				i++
			}
			b.WriteByte(local[i])
		}
		local = b.String()
	}
	if local == "" {
		return smtp.Address{}, false
	}
	for i := 0; i < len(local); i++ {
		if local[i] < 0x20 || local[i] == 0x7f {
			return smtp.Address{}, false
		}
	}
	return smtp.Address{Local: local, Domain: domain}, true
}

// b32 is RFC 4648 base32 without padding; we emit upper case.
var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// hash is the truncated HMAC of the fields under the current key.
func (r *Rewriter) hash(fields ...string) string {
	return mac(r.keys[0], fields, r.o.HashLength)
}

// verify compares hh against the hash under every key, ignoring case.
func (r *Rewriter) verify(hh string, fields ...string) bool {
	if len(hh) != r.o.HashLength {
		return false
	}
	got := []byte(strings.ToUpper(hh))
	ok := false
	for _, k := range r.keys {
		// No early exit: the time taken does not say which key matched.
		if hmac.Equal(got, []byte(mac(k, fields, r.o.HashLength))) {
			ok = true
		}
	}
	return ok
}

// mac is HMAC-SHA256 over the lower-cased fields, each followed by a NUL
// (which no field can contain, so field boundaries are unambiguous),
// base32, cut to n characters.
func mac(key []byte, fields []string, n int) string {
	h := hmac.New(sha256.New, key)
	for _, f := range fields {
		h.Write([]byte(strings.ToLower(f)))
		h.Write([]byte{0})
	}
	return b32.EncodeToString(h.Sum(nil))[:n]
}

// The timestamp: days since the epoch modulo 1024, two base32 characters
// (libsrs2's SRS_TIME_PRECISION and SRS_TIME_SLOTS).
const tsCycle = 1024

const b32Alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"

func today(t time.Time) int { return int(t.Unix()/86400) % tsCycle }

func timestamp(t time.Time) string {
	d := today(t)
	return string([]byte{b32Alphabet[d>>5], b32Alphabet[d&31]})
}

func decodeTimestamp(s string) (int, bool) {
	hi := strings.IndexByte(b32Alphabet, upper(s[0]))
	lo := strings.IndexByte(b32Alphabet, upper(s[1]))
	if hi < 0 || lo < 0 {
		return 0, false
	}
	return hi<<5 | lo, true
}

func upper(c byte) byte {
	if 'a' <= c && c <= 'z' {
		return c - 'a' + 'A'
	}
	return c
}
