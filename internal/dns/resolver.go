// Package dns is posthorn's context-aware DNS resolver that says whether each answer was DNSSEC-authenticated.
package dns

import (
	"context"
	"net"
)

// Result describes how an answer was obtained.
type Result struct {
	// Authentic is true when the upstream validating resolver set the AD bit
	// (RFC 4035 3.2.3) on the response. posthorn does not validate DNSSEC
	// itself: it trusts a configured validating resolver, as Postfix does.
	Authentic bool
}

// TLSA is one TLSA record (RFC 6698 2.1).
type TLSA struct {
	Usage        uint8
	Selector     uint8
	MatchingType uint8
	CertData     []byte
}

// Resolver is what every DNS-using package in posthorn takes, so that SPF,
// DKIM, DMARC, MX, MTA-STS and DANE can be tested without the internet.
//
// Errors are *net.DNSError: IsNotFound is set for NXDOMAIN and for a name
// that exists without records of the asked type (NODATA); IsTemporary for
// SERVFAIL, timeouts and network errors. Callers distinguish "none" from
// "temperror" with those two flags alone (IsNotFound and IsTemporary in
// this package test them).
//
// Names given may be relative or absolute; names returned (MX hosts, PTR
// names, canonical names) are absolute, with the trailing dot. CNAME
// chains are followed to the asked type.
type Resolver interface {
	// LookupTXT returns each TXT record with its character-strings joined
	// (RFC 7208 3.3).
	LookupTXT(ctx context.Context, name string) ([]string, Result, error)
	// LookupMX returns the MX records as served (not sorted, not shuffled).
	// A null MX (RFC 7505) comes back as one record with Host ".".
	LookupMX(ctx context.Context, name string) ([]*net.MX, Result, error)
	// LookupIP returns addresses; network is "ip", "ip4" or "ip6".
	LookupIP(ctx context.Context, network, host string) ([]net.IP, Result, error)
	// LookupAddr returns the PTR names for an address.
	LookupAddr(ctx context.Context, addr string) ([]string, Result, error)
	// LookupCNAME returns the canonical name of host.
	LookupCNAME(ctx context.Context, host string) (string, Result, error)
	// LookupTLSA returns the TLSA records at _port._proto.host.
	LookupTLSA(ctx context.Context, port int, proto, host string) ([]TLSA, Result, error)
}
