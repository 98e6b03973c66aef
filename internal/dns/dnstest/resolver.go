package dnstest

import (
	"context"
	"encoding/hex"
	"fmt"
	"net"
	"strings"
	"sync"

	"github.com/posthorn/posthorn/internal/dns"

	mdns "github.com/miekg/dns"
)

// Resolver is an in-memory dns.Resolver over a Zone, with the semantics of
// dns.Client talking to a recursive server that serves the zone: CNAMEs
// followed, NXDOMAIN and NODATA as IsNotFound, SERVFAIL and Timeout as
// IsTemporary (a Timeout name fails at once rather than after a delay).
// It is safe for concurrent use.
type Resolver struct {
	mu      sync.RWMutex
	zone    map[string]Records
	queries []string
}

var _ dns.Resolver = (*Resolver)(nil)

// NewResolver returns a Resolver answering from zone.
func NewResolver(zone Zone) *Resolver {
	return &Resolver{zone: index(zone)}
}

// SetZone replaces the zone; lookups that follow see the new one.
func (r *Resolver) SetZone(zone Zone) {
	z := index(zone)
	r.mu.Lock()
	r.zone = z
	r.mu.Unlock()
}

// Queries returns the questions asked so far, as "TYPE name." in order.
func (r *Resolver) Queries() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return append([]string(nil), r.queries...)
}

// query answers one question and turns the outcome into the Resolver
// error semantics. It returns the records of qtype at the end of the chain.
func (r *Resolver) query(ctx context.Context, name string, qtype uint16) ([]mdns.RR, string, dns.Result, error) {
	if err := ctx.Err(); err != nil {
		return nil, "", dns.Result{}, &net.DNSError{Err: err.Error(), Name: name, IsTemporary: true, UnwrapErr: err}
	}
	fq := mdns.Fqdn(name)
	r.mu.Lock()
	r.queries = append(r.queries, mdns.TypeToString[qtype]+" "+fq)
	zone := r.zone
	r.mu.Unlock()

	out := resolve(zone, fq, qtype)
	switch {
	case out.timeout:
		return nil, "", dns.Result{}, dns.TimeoutError(name, "")
	case out.rcode == mdns.RcodeServerFailure:
		return nil, "", dns.Result{}, dns.TemporaryError(name, "", "server answered SERVFAIL")
	}
	res := dns.Result{Authentic: out.authentic}
	end := fq
	for _, rr := range out.answer {
		if c, ok := rr.(*mdns.CNAME); ok && qtype != mdns.TypeCNAME {
			end = c.Target
		}
	}
	var rrs []mdns.RR
	for _, rr := range out.answer {
		if rr.Header().Rrtype == qtype {
			rrs = append(rrs, rr)
		}
	}
	if out.rcode == mdns.RcodeNameError {
		return nil, end, res, dns.NotFoundError(name, "")
	}
	if len(rrs) == 0 {
		return nil, end, res, dns.NoDataError(name, "")
	}
	return rrs, end, res, nil
}

// LookupTXT implements dns.Resolver.
func (r *Resolver) LookupTXT(ctx context.Context, name string) ([]string, dns.Result, error) {
	rrs, _, res, err := r.query(ctx, name, mdns.TypeTXT)
	if err != nil {
		return nil, res, err
	}
	var out []string
	for _, rr := range rrs {
		var b strings.Builder
		for _, part := range rr.(*mdns.TXT).Txt {
			b.WriteString(dns.UnescapeTXT(part))
		}
		out = append(out, b.String())
	}
	return out, res, nil
}

// LookupMX implements dns.Resolver.
func (r *Resolver) LookupMX(ctx context.Context, name string) ([]*net.MX, dns.Result, error) {
	rrs, _, res, err := r.query(ctx, name, mdns.TypeMX)
	if err != nil {
		return nil, res, err
	}
	var out []*net.MX
	for _, rr := range rrs {
		mx := rr.(*mdns.MX)
		out = append(out, &net.MX{Host: mx.Mx, Pref: mx.Preference})
	}
	return out, res, nil
}

// LookupIP implements dns.Resolver.
func (r *Resolver) LookupIP(ctx context.Context, network, host string) ([]net.IP, dns.Result, error) {
	var qtypes []uint16
	switch network {
	case "ip":
		qtypes = []uint16{mdns.TypeA, mdns.TypeAAAA}
	case "ip4":
		qtypes = []uint16{mdns.TypeA}
	case "ip6":
		qtypes = []uint16{mdns.TypeAAAA}
	default:
		return nil, dns.Result{}, &net.DNSError{Err: fmt.Sprintf("unknown network %q", network), Name: host}
	}
	if ip := net.ParseIP(host); ip != nil {
		if network == "ip" || (network == "ip4") == (ip.To4() != nil) {
			return []net.IP{ip}, dns.Result{}, nil
		}
		return nil, dns.Result{}, dns.NoDataError(host, "")
	}
	var (
		ips      []net.IP
		firstErr error
		ok       int
	)
	res := dns.Result{Authentic: true}
	for _, qt := range qtypes {
		rrs, _, rr, err := r.query(ctx, host, qt)
		if err != nil {
			if firstErr == nil || (dns.IsTemporary(err) && !dns.IsTemporary(firstErr)) {
				firstErr = err
			}
			res.Authentic = res.Authentic && rr.Authentic
			continue
		}
		ok++
		res.Authentic = res.Authentic && rr.Authentic
		for _, x := range rrs {
			switch x := x.(type) {
			case *mdns.A:
				ips = append(ips, x.A)
			case *mdns.AAAA:
				ips = append(ips, x.AAAA)
			}
		}
	}
	if ok == 0 {
		return nil, res, firstErr
	}
	return ips, res, nil
}

// LookupAddr implements dns.Resolver.
func (r *Resolver) LookupAddr(ctx context.Context, addr string) ([]string, dns.Result, error) {
	arpa, err := mdns.ReverseAddr(addr)
	if err != nil {
		return nil, dns.Result{}, &net.DNSError{Err: "unrecognized address", Name: addr}
	}
	rrs, _, res, err := r.query(ctx, arpa, mdns.TypePTR)
	if err != nil {
		return nil, res, err
	}
	var out []string
	for _, rr := range rrs {
		out = append(out, rr.(*mdns.PTR).Ptr)
	}
	return out, res, nil
}

// LookupCNAME implements dns.Resolver.
func (r *Resolver) LookupCNAME(ctx context.Context, host string) (string, dns.Result, error) {
	_, end, res, err := r.query(ctx, host, mdns.TypeA)
	if err != nil && !(dns.IsNotFound(err) && end != "" && !isNXDomain(err)) {
		return "", res, err
	}
	return end, res, nil
}

func isNXDomain(err error) bool {
	de, ok := err.(*net.DNSError)
	return ok && de.IsNotFound && de.Err == dns.NotFoundError("", "").(*net.DNSError).Err
}

// LookupTLSA implements dns.Resolver.
func (r *Resolver) LookupTLSA(ctx context.Context, port int, proto, host string) ([]dns.TLSA, dns.Result, error) {
	name := fmt.Sprintf("_%d._%s.%s", port, proto, mdns.Fqdn(host))
	rrs, _, res, err := r.query(ctx, name, mdns.TypeTLSA)
	if err != nil {
		return nil, res, err
	}
	var out []dns.TLSA
	for _, rr := range rrs {
		t := rr.(*mdns.TLSA)
		data, err := hex.DecodeString(t.Certificate)
		if err != nil {
			return nil, res, &net.DNSError{Err: "bad TLSA certificate data", Name: name}
		}
		out = append(out, dns.TLSA{Usage: t.Usage, Selector: t.Selector, MatchingType: t.MatchingType, CertData: data})
	}
	return out, res, nil
}
