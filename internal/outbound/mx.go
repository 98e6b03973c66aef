package outbound

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/posthorn/posthorn/internal/dns"
)

// Errors of MX resolution. Each is wrapped with the domain in question.
var (
	// ErrNullMX: the domain publishes a null MX (RFC 7505): it accepts no mail.
	ErrNullMX = errors.New("the domain accepts no mail (null MX, RFC 7505)")
	// ErrNoDomain: neither MX nor address records exist for the domain.
	ErrNoDomain = errors.New("no MX and no address records: the domain does not receive mail")
	// ErrLoop: we are the best MX of the domain, yet it is not local here.
	ErrLoop = errors.New("mail for the domain loops back to myself")
)

// LookupMX returns the hosts to try for domain, most preferred first,
// equal preferences in random order (RFC 5321 5.1). Without MX records
// the domain itself is the one host (the implicit MX), provided it has
// an address. Host names are returned without the trailing dot.
//
// A domain whose answer is a single "." is a null MX: ErrNullMX. A
// temporary DNS error comes back as is (dns.IsTemporary holds). When
// self (our hostname) is among the MX hosts, only the more preferred ones
// are kept (RFC 5321 5.1), and none left is ErrLoop.
func LookupMX(ctx context.Context, r dns.Resolver, domain, self string, shuffle func(n int, swap func(i, j int))) ([]string, error) {
	if shuffle == nil {
		shuffle = rand.Shuffle
	}
	mxs, _, err := r.LookupMX(ctx, domain)
	switch {
	case err != nil && !dns.IsNotFound(err):
		return nil, fmt.Errorf("MX lookup for %s: %w", domain, err)
	case err != nil || len(mxs) == 0:
		// RFC 5321 5.1: no MX, so the domain is its own implicit MX —
		// if it has an address at all.
		_, _, aerr := r.LookupIP(ctx, "ip", domain)
		switch {
		case aerr == nil:
			return []string{strings.TrimSuffix(domain, ".")}, nil
		case dns.IsNotFound(aerr):
			return nil, fmt.Errorf("%s: %w", domain, ErrNoDomain)
		default:
			return nil, fmt.Errorf("address lookup for %s: %w", domain, aerr)
		}
	}
	// RFC 7505 3: a null MX is the only record, with host ".". One "."
	// among others is to be ignored as garbage.
	if len(mxs) == 1 && (mxs[0].Host == "." || mxs[0].Host == "") {
		return nil, fmt.Errorf("%s: %w", domain, ErrNullMX)
	}
	slices.SortStableFunc(mxs, func(a, b *net.MX) int { return int(a.Pref) - int(b.Pref) })
	for i := 0; i < len(mxs); {
		j := i + 1
		for j < len(mxs) && mxs[j].Pref == mxs[i].Pref {
			j++
		}
		part := mxs[i:j]
		shuffle(len(part), func(a, b int) { part[a], part[b] = part[b], part[a] })
		i = j
	}
	// RFC 5321 5.1: if we are one of the MX hosts, only the more
	// preferred ones may be used; none of them means a loop.
	self = strings.TrimSuffix(self, ".")
	if self != "" {
		for _, mx := range mxs {
			if strings.EqualFold(strings.TrimSuffix(mx.Host, "."), self) {
				pref := mx.Pref
				mxs = slices.DeleteFunc(mxs, func(m *net.MX) bool { return m.Pref >= pref })
				if len(mxs) == 0 {
					return nil, fmt.Errorf("%s: %w", domain, ErrLoop)
				}
				break
			}
		}
	}
	var hosts []string
	for _, mx := range mxs {
		h := strings.TrimSuffix(mx.Host, ".")
		if h != "" && !slices.ContainsFunc(hosts, func(x string) bool { return strings.EqualFold(x, h) }) {
			hosts = append(hosts, h)
		}
	}
	if len(hosts) == 0 {
		return nil, fmt.Errorf("%s: %w", domain, ErrNoDomain)
	}
	return hosts, nil
}

// lookupAddrs returns the addresses of host for network ("ip", "ip4",
// "ip6"), IPv6 first unless preferV4. An IP literal is returned as is.
func lookupAddrs(ctx context.Context, r dns.Resolver, network, host string, preferV4 bool) ([]netip.Addr, error) {
	if a, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		return []netip.Addr{a.Unmap()}, nil
	}
	ips, _, err := r.LookupIP(ctx, network, host)
	if err != nil {
		return nil, err
	}
	var v4, v6 []netip.Addr
	for _, ip := range ips {
		a, ok := netip.AddrFromSlice(ip)
		if !ok {
			continue
		}
		a = a.Unmap()
		if a.Is4() {
			if !slices.Contains(v4, a) {
				v4 = append(v4, a)
			}
		} else if !slices.Contains(v6, a) {
			v6 = append(v6, a)
		}
	}
	if preferV4 {
		return append(v4, v6...), nil
	}
	return append(v6, v4...), nil
}
