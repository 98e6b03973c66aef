package dane

import (
	"context"
	"strings"

	"github.com/posthorn/posthorn/internal/dns"
)

// TLSABases returns the names at which to look for the TLSA records of an
// MX host, in order (RFC 7672 2.2.2): when the host is an alias reached
// through a DNSSEC-secure CNAME chain, the fully expanded name first, then
// the host's own name; otherwise the host's name alone. Names come without
// the final dot. The first base with secure TLSA records is the TLSA base
// domain, and together with the MX host name the reference identifiers
// of a DANE-TA(2) match (3.2.2).
func TLSABases(ctx context.Context, r dns.Resolver, host string) []string {
	hostName := strings.TrimSuffix(host, ".")
	end, res, err := r.LookupCNAME(ctx, host)
	if err != nil || !res.Authentic {
		return []string{hostName}
	}
	if e := strings.TrimSuffix(end, "."); e != "" && !strings.EqualFold(e, hostName) {
		return []string{e, hostName}
	}
	return []string{hostName}
}

// ReferenceNames returns the DANE-TA(2) reference identifiers for TLSA
// records found at base for MX host: base, and the host's name when it
// differs.
func ReferenceNames(base, host string) []string {
	hostName := strings.TrimSuffix(host, ".")
	if strings.EqualFold(base, hostName) {
		return []string{base}
	}
	return []string{base, hostName}
}

// Found is the outcome of Lookup.
type Found struct {
	// Base is the TLSA base domain the records were found at or, when
	// none were, the last name asked.
	Base    string
	Records []dns.TLSA
	Result  dns.Result // of the last look-up: Authentic says if it was signed
	Err     error      // of the last look-up; IsNotFound when no base has records
}

// Lookup looks up the TLSA records for port 25 of MX host at each of its
// TLSABases in turn and stops at the first that has records, or at a
// look-up that fails other than with a denial (RFC 7672 2.2.2: a sender
// must then not use the host without TLSA). With secureOnly, records in
// an answer without DNSSEC validation are passed over as if there were
// none, as a sender must (2.2); without it the first records found are
// returned whatever their DNSSEC state, for a report of what is
// published.
func Lookup(ctx context.Context, r dns.Resolver, host string, secureOnly bool) Found {
	var f Found
	for _, f.Base = range TLSABases(ctx, r, host) {
		f.Records, f.Result, f.Err = r.LookupTLSA(ctx, 25, "tcp", f.Base)
		if secureOnly && !f.Result.Authentic {
			f.Records = nil
		}
		if f.Err != nil && !dns.IsNotFound(f.Err) || f.Err == nil && len(f.Records) > 0 {
			break
		}
	}
	return f
}
