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
