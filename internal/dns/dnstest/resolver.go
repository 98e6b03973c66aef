package dnstest

import (
	"context"
	"net"
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
	dns.QueryResolver // the lookups dns.Client runs, over r.query
	mu                sync.RWMutex
	zone              map[string]Records
	queries           []string
}

var _ dns.Resolver = (*Resolver)(nil)

// NewResolver returns a Resolver answering from zone.
func NewResolver(zone Zone) *Resolver {
	r := &Resolver{zone: index(zone)}
	r.QueryResolver = dns.QueryResolver{Query: r.query}
	return r
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
