package dns

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"

	mdns "github.com/miekg/dns"
)

// Querier answers one question with the semantics of Resolver: the
// records of qtype at the end of the CNAME chain from name, the name the
// chain ended on, how the answer was obtained, and a *net.DNSError
// (NotFoundError, NoDataError, TemporaryError, TimeoutError) when there
// are no records.
type Querier func(ctx context.Context, name string, qtype uint16) (rrs []mdns.RR, end string, res Result, err error)

// QueryResolver is a Resolver over a Querier: the six lookups, shared by
// Client (over the network) and dnstest.Resolver (over a zone in memory),
// so that tests exercise the very code that runs in production.
type QueryResolver struct {
	Query Querier
}

var _ Resolver = QueryResolver{}

// LookupTXT implements Resolver.
func (q QueryResolver) LookupTXT(ctx context.Context, name string) ([]string, Result, error) {
	rrs, _, res, err := q.Query(ctx, name, mdns.TypeTXT)
	if err != nil {
		return nil, res, err
	}
	var out []string
	for _, rr := range rrs {
		var b strings.Builder
		for _, part := range rr.(*mdns.TXT).Txt {
			b.WriteString(UnescapeTXT(part))
		}
		out = append(out, b.String())
	}
	return out, res, nil
}

// LookupMX implements Resolver.
func (q QueryResolver) LookupMX(ctx context.Context, name string) ([]*net.MX, Result, error) {
	rrs, _, res, err := q.Query(ctx, name, mdns.TypeMX)
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

// LookupIP implements Resolver. For network "ip" it asks for A and AAAA
// and fails only when both fail; an IP literal is returned as is. The
// answer is authentic when every half that answered, or said "none", was.
func (q QueryResolver) LookupIP(ctx context.Context, network, host string) ([]net.IP, Result, error) {
	var qtypes []uint16
	switch network {
	case "ip":
		qtypes = []uint16{mdns.TypeA, mdns.TypeAAAA}
	case "ip4":
		qtypes = []uint16{mdns.TypeA}
	case "ip6":
		qtypes = []uint16{mdns.TypeAAAA}
	default:
		return nil, Result{}, &net.DNSError{Err: "unknown network " + strconv.Quote(network), Name: host}
	}
	if ip := net.ParseIP(host); ip != nil {
		if network == "ip" || (network == "ip4") == (ip.To4() != nil) {
			return []net.IP{ip}, Result{}, nil
		}
		return nil, Result{}, NoDataError(host, "")
	}
	var (
		ips      []net.IP
		firstErr error
		okCount  int
	)
	res := Result{Authentic: true}
	for _, qt := range qtypes {
		rrs, _, r, err := q.Query(ctx, host, qt)
		if err != nil {
			// A temporary error matters more than "not found".
			if firstErr == nil || (IsTemporary(err) && !IsTemporary(firstErr)) {
				firstErr = err
			}
			if IsNotFound(err) {
				res.Authentic = res.Authentic && r.Authentic
			}
			continue
		}
		okCount++
		res.Authentic = res.Authentic && r.Authentic
		for _, rr := range rrs {
			switch rr := rr.(type) {
			case *mdns.A:
				ips = append(ips, rr.A)
			case *mdns.AAAA:
				ips = append(ips, rr.AAAA)
			}
		}
	}
	if okCount == 0 {
		return nil, Result{Authentic: res.Authentic && IsNotFound(firstErr)}, firstErr
	}
	return ips, res, nil
}

// LookupAddr implements Resolver.
func (q QueryResolver) LookupAddr(ctx context.Context, addr string) ([]string, Result, error) {
	arpa, err := mdns.ReverseAddr(addr)
	if err != nil {
		return nil, Result{}, &net.DNSError{Err: "unrecognized address", Name: addr}
	}
	rrs, _, res, err := q.Query(ctx, arpa, mdns.TypePTR)
	if err != nil {
		return nil, res, err
	}
	var out []string
	for _, rr := range rrs {
		out = append(out, rr.(*mdns.PTR).Ptr)
	}
	return out, res, nil
}

// LookupCNAME implements Resolver: it asks for A records and returns the
// name at the end of the CNAME chain (absolute), or host itself when it
// has no CNAME. A name that does not exist is an IsNotFound error.
func (q QueryResolver) LookupCNAME(ctx context.Context, host string) (string, Result, error) {
	_, end, res, err := q.Query(ctx, host, mdns.TypeA)
	if err != nil && !isNoData(err) {
		return "", res, err
	}
	return end, res, nil
}

// LookupTLSA implements Resolver.
func (q QueryResolver) LookupTLSA(ctx context.Context, port int, proto, host string) ([]TLSA, Result, error) {
	name := fmt.Sprintf("_%d._%s.%s", port, proto, mdns.Fqdn(host))
	rrs, _, res, err := q.Query(ctx, name, mdns.TypeTLSA)
	if err != nil {
		return nil, res, err
	}
	var out []TLSA
	for _, rr := range rrs {
		t, err := tlsaFromRR(rr.(*mdns.TLSA))
		if err != nil {
			return nil, res, &net.DNSError{Err: err.Error(), Name: name}
		}
		out = append(out, t)
	}
	return out, res, nil
}
