// Package dnsbl looks client addresses up in DNS block and allow lists (RFC 5782).
package dnsbl

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"

	"github.com/posthorn/posthorn/internal/dns"
)

// List is one DNS list zone with an optional filter on the answers, as
// Postfix writes it: "zen.spamhaus.org=127.0.0.[2..11]" lists only the
// addresses for which the zone answers 127.0.0.2 to 127.0.0.11. Each
// octet of the filter is a number, "[n..m]" or "[n;m;k]".
type List struct {
	Zone   string
	filter []octetSet // four sets, or nil: any answer in 127.0.0.0/8
	spec   string
}

type octetSet struct{ lo, hi []int }

func (o octetSet) has(v int) bool {
	for i := range o.lo {
		if o.lo[i] <= v && v <= o.hi[i] {
			return true
		}
	}
	return false
}

// String returns the list as it was written.
func (l List) String() string { return l.spec }

// ParseList parses "zone" or "zone=filter".
func ParseList(spec string) (List, error) {
	zone, filter, hasFilter := strings.Cut(strings.TrimSpace(spec), "=")
	zone = strings.ToLower(strings.TrimSuffix(zone, "."))
	if zone == "" || len(zone) > 200 || !validZone(zone) {
		return List{}, fmt.Errorf("%q is not a DNS zone name, as in \"zen.spamhaus.org\"", zone)
	}
	l := List{Zone: zone, spec: spec}
	if !hasFilter {
		return l, nil
	}
	parts := splitOctets(filter)
	if len(parts) != 4 {
		return List{}, fmt.Errorf("filter %q: expected four octets, as in 127.0.0.[2..11]", filter)
	}
	for _, p := range parts {
		o, err := parseOctet(p)
		if err != nil {
			return List{}, fmt.Errorf("filter %q: %v", filter, err)
		}
		l.filter = append(l.filter, o)
	}
	return l, nil
}

// splitOctets splits a filter at the dots outside brackets.
func splitOctets(f string) []string {
	var parts []string
	depth, start := 0, 0
	for i := 0; i < len(f); i++ {
		switch f[i] {
		case '[':
			depth++
		case ']':
			depth--
		case '.':
			if depth == 0 {
				parts = append(parts, f[start:i])
				start = i + 1
			}
		}
	}
	return append(parts, f[start:])
}

func parseOctet(p string) (octetSet, error) {
	num := func(s string) (int, error) {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 || n > 255 || s == "" || len(s) > 3 {
			return 0, fmt.Errorf("%q is not an octet (0 to 255)", s)
		}
		return n, nil
	}
	if !strings.HasPrefix(p, "[") {
		n, err := num(p)
		return octetSet{lo: []int{n}, hi: []int{n}}, err
	}
	if !strings.HasSuffix(p, "]") {
		return octetSet{}, fmt.Errorf("%q: missing ]", p)
	}
	var o octetSet
	for _, r := range strings.Split(p[1:len(p)-1], ";") {
		a, b, isRange := strings.Cut(r, "..")
		lo, err := num(a)
		if err != nil {
			return o, err
		}
		hi := lo
		if isRange {
			if hi, err = num(b); err != nil {
				return o, err
			}
			if hi < lo {
				return o, fmt.Errorf("range %q runs backwards", r)
			}
		}
		o.lo, o.hi = append(o.lo, lo), append(o.hi, hi)
	}
	return o, nil
}

func validZone(z string) bool {
	for _, label := range strings.Split(z, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// Query returns the name to look up for ip in the list: the address's
// octets (IPv4) or nibbles (IPv6) reversed, under the zone (RFC 5782 2.1, 2.4).
func (l List) Query(ip netip.Addr) string {
	ip = ip.Unmap()
	var b strings.Builder
	if ip.Is4() {
		a := ip.As4()
		for i := 3; i >= 0; i-- {
			b.WriteString(strconv.Itoa(int(a[i])))
			b.WriteByte('.')
		}
	} else {
		a := ip.As16()
		const hex = "0123456789abcdef"
		for i := 15; i >= 0; i-- {
			b.WriteByte(hex[a[i]&0xf])
			b.WriteByte('.')
			b.WriteByte(hex[a[i]>>4])
			b.WriteByte('.')
		}
	}
	b.WriteString(l.Zone)
	return b.String()
}

// matches reports whether an answer of the list counts as a listing.
func (l List) matches(a netip.Addr) bool {
	a = a.Unmap()
	if !a.Is4() {
		return false
	}
	o := a.As4()
	if l.filter == nil {
		// RFC 5782 2.3: answers are in 127.0.0.0/8; 127.255.255.0/24 is
		// what Spamhaus answers to refused or malformed queries, not a
		// listing.
		return o[0] == 127 && !(o[1] == 255 && o[2] == 255)
	}
	for i := range 4 {
		if !l.filter[i].has(int(o[i])) {
			return false
		}
	}
	return true
}

// Hit is a listing of an address.
type Hit struct {
	Zone string
	Code netip.Addr // the answer, as 127.0.0.2
	Text string     // the list's TXT record, printable and bounded; may be ""
}

// Lookup asks list about ip. listed is false when the address is not
// listed (NXDOMAIN, or no answer passing the filter); err is a failure to
// find out.
func Lookup(ctx context.Context, r dns.Resolver, l List, ip netip.Addr) (Hit, bool, error) {
	name := l.Query(ip)
	ips, _, err := r.LookupIP(ctx, "ip4", name)
	if dns.IsNotFound(err) {
		return Hit{}, false, nil
	}
	if err != nil {
		return Hit{}, false, fmt.Errorf("dnsbl %s: %w", l.Zone, err)
	}
	for _, a := range ips {
		addr, ok := netip.AddrFromSlice(a)
		if !ok || !l.matches(addr) {
			continue
		}
		h := Hit{Zone: l.Zone, Code: addr.Unmap()}
		// The text is a courtesy: a failure to get it does not unlist.
		if txt, _, err := r.LookupTXT(ctx, name); err == nil && len(txt) > 0 {
			h.Text = clean(txt[0])
		}
		return h, true, nil
	}
	return Hit{}, false, nil
}

// clean keeps a list's text safe to put in a reply: printable ASCII, at
// most 200 characters.
func clean(s string) string {
	var b strings.Builder
	for _, c := range s {
		if b.Len() >= 200 {
			break
		}
		if c >= 0x20 && c < 0x7f {
			b.WriteRune(c)
		} else {
			b.WriteByte('?')
		}
	}
	return b.String()
}

// Verdict is what the lists say about one address.
type Verdict struct {
	Allowed *Hit // on an allow list: exempt from the block lists and further checks
	Blocked *Hit // on a block list (nil when Allowed)
}

// Checker asks every list about an address, in parallel.
type Checker struct {
	Resolver dns.Resolver
	Block    []List // DNSBLs
	Allow    []List // DNSWLs
}

// Check returns the verdict on ip. err reports lists that could not be
// asked; the verdict is made from the others (a list that does not answer
// lists nobody, as in Postfix).
func (c *Checker) Check(ctx context.Context, ip netip.Addr) (Verdict, error) {
	type answer struct {
		allow bool
		i     int
		hit   Hit
		ok    bool
		err   error
	}
	lists := len(c.Block) + len(c.Allow)
	if lists == 0 || !ip.IsValid() {
		return Verdict{}, nil
	}
	answers := make([]answer, lists)
	var wg sync.WaitGroup
	for i, l := range append(append([]List(nil), c.Allow...), c.Block...) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h, ok, err := Lookup(ctx, c.Resolver, l, ip)
			answers[i] = answer{allow: i < len(c.Allow), i: i, hit: h, ok: ok, err: err}
		}()
	}
	wg.Wait()
	var v Verdict
	var errs []error
	for _, a := range answers { // list order: the first listing wins
		if a.err != nil {
			errs = append(errs, a.err)
			continue
		}
		if !a.ok {
			continue
		}
		h := a.hit
		switch {
		case a.allow && v.Allowed == nil:
			v.Allowed = &h
		case !a.allow && v.Blocked == nil:
			v.Blocked = &h
		}
	}
	if v.Allowed != nil {
		v.Blocked = nil
	}
	return v, errors.Join(errs...)
}
