// Package dnstest serves made-up DNS zones to tests, in memory or on loopback.
package dnstest

import (
	"encoding/hex"
	"net"
	"strings"

	"github.com/posthorn/posthorn/internal/dns"

	mdns "github.com/miekg/dns"
)

// Zone maps a domain name to its records. Names are case-insensitive and
// may be written with or without the trailing dot. A key that is an IP
// address stands for its reverse name (in-addr.arpa or ip6.arpa), so PTR
// records can be written as Zone{"192.0.2.1": {PTR: ...}}.
//
// A name present in the zone exists: asking it for a type it has no records
// of is NODATA; a name absent from the zone is NXDOMAIN.
//
// A Zone given to NewResolver or NewServer must not be changed afterwards;
// use SetZone to replace it.
type Zone map[string]Records

// Records are the records at one name, and how the name misbehaves.
type Records struct {
	A    []string // "192.0.2.1"
	AAAA []string // "2001:db8::1"
	MX   []*net.MX
	// TXT records, one string each; strings over 255 octets are served
	// split into several character-strings.
	TXT []string
	// TXTStrings are further TXT records each given as its character-strings,
	// served as is (RFC 7208 3.3: a resolver joins them).
	TXTStrings [][]string
	PTR        []string
	// CNAME, when set, makes the name an alias: every other field but the
	// modes below is ignored.
	CNAME string
	TLSA  []dns.TLSA

	// ServFail answers every question for the name with SERVFAIL.
	ServFail bool
	// Timeout never answers questions for the name (the in-memory resolver
	// returns a timeout error at once).
	Timeout bool
	// Authentic sets the AD bit on answers for the name, as a validating
	// resolver does for a signed zone. Through a CNAME chain the answer is
	// authentic only if every name in the chain is.
	Authentic bool
}

// normalize gives the zone's key form of a name: lower case, no final dot,
// IP addresses turned into their reverse names, and the presentation-form
// escapes miekg/dns puts in names off the wire (\DDD, \X) undone.
func normalize(name string) string {
	name = dns.UnescapeTXT(name)
	if ip := net.ParseIP(name); ip != nil {
		if arpa, err := mdns.ReverseAddr(name); err == nil {
			name = arpa
		}
	}
	return strings.TrimSuffix(strings.ToLower(name), ".")
}

// index returns the zone with normalized keys.
func index(z Zone) map[string]Records {
	m := make(map[string]Records, len(z))
	for k, v := range z {
		m[normalize(k)] = v
	}
	return m
}

// outcome is how a name answers one question.
type outcome struct {
	answer    []mdns.RR
	rcode     int
	authentic bool
	timeout   bool
}

// maxChain bounds the CNAMEs followed for one question.
const maxChain = 8

// resolve answers qtype at name as a recursive resolver in front of the
// zone would: following CNAMEs inside the zone and putting the whole chain
// in the answer.
func resolve(zone map[string]Records, name string, qtype uint16) outcome {
	out := outcome{rcode: mdns.RcodeSuccess, authentic: true}
	owner := mdns.Fqdn(name)
	for hop := 0; ; hop++ {
		rec, ok := zone[normalize(owner)]
		if !ok {
			out.rcode = mdns.RcodeNameError
			return out
		}
		if rec.Timeout {
			return outcome{timeout: true}
		}
		if rec.ServFail {
			return outcome{rcode: mdns.RcodeServerFailure}
		}
		out.authentic = out.authentic && rec.Authentic
		if rec.CNAME != "" && qtype != mdns.TypeCNAME {
			target := mdns.Fqdn(rec.CNAME)
			out.answer = append(out.answer, &mdns.CNAME{Hdr: hdr(owner, mdns.TypeCNAME), Target: target})
			if hop >= maxChain {
				return outcome{rcode: mdns.RcodeServerFailure}
			}
			owner = target
			continue
		}
		out.answer = append(out.answer, records(owner, rec, qtype)...)
		return out
	}
}

func hdr(owner string, t uint16) mdns.RR_Header {
	return mdns.RR_Header{Name: owner, Rrtype: t, Class: mdns.ClassINET, Ttl: 300}
}

// records builds the resource records of type t that rec holds at owner.
func records(owner string, rec Records, t uint16) []mdns.RR {
	var rrs []mdns.RR
	switch t {
	case mdns.TypeA:
		for _, s := range rec.A {
			if ip := net.ParseIP(s).To4(); ip != nil {
				rrs = append(rrs, &mdns.A{Hdr: hdr(owner, t), A: ip})
			}
		}
	case mdns.TypeAAAA:
		for _, s := range rec.AAAA {
			if ip := net.ParseIP(s); ip != nil && ip.To4() == nil {
				rrs = append(rrs, &mdns.AAAA{Hdr: hdr(owner, t), AAAA: ip})
			}
		}
	case mdns.TypeMX:
		for _, mx := range rec.MX {
			rrs = append(rrs, &mdns.MX{Hdr: hdr(owner, t), Preference: mx.Pref, Mx: mdns.Fqdn(mx.Host)})
		}
	case mdns.TypeTXT:
		for _, s := range rec.TXT {
			rrs = append(rrs, &mdns.TXT{Hdr: hdr(owner, t), Txt: split255(s)})
		}
		for _, ss := range rec.TXTStrings {
			var parts []string
			for _, s := range ss {
				parts = append(parts, split255(s)...)
			}
			rrs = append(rrs, &mdns.TXT{Hdr: hdr(owner, t), Txt: parts})
		}
	case mdns.TypePTR:
		for _, s := range rec.PTR {
			rrs = append(rrs, &mdns.PTR{Hdr: hdr(owner, t), Ptr: mdns.Fqdn(s)})
		}
	case mdns.TypeCNAME:
		if rec.CNAME != "" {
			rrs = append(rrs, &mdns.CNAME{Hdr: hdr(owner, t), Target: mdns.Fqdn(rec.CNAME)})
		}
	case mdns.TypeTLSA:
		for _, r := range rec.TLSA {
			rrs = append(rrs, &mdns.TLSA{
				Hdr: hdr(owner, t), Usage: r.Usage, Selector: r.Selector,
				MatchingType: r.MatchingType, Certificate: hex.EncodeToString(r.CertData),
			})
		}
	}
	return rrs
}

// split255 cuts s into character-strings of at most 255 octets (RFC 1035
// 3.3.14). An empty s is one empty character-string.
func split255(s string) []string {
	if len(s) <= 255 {
		return []string{escapeTXT(s)}
	}
	var out []string
	for len(s) > 255 {
		out = append(out, escapeTXT(s[:255]))
		s = s[255:]
	}
	return append(out, escapeTXT(s))
}

// escapeTXT writes s the way miekg/dns keeps TXT data in memory: in
// presentation form, with backslash, quote and non-printable octets escaped.
func escapeTXT(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' || c == '"':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < ' ' || c > '~':
			b.WriteByte('\\')
			b.WriteByte('0' + c/100)
			b.WriteByte('0' + c/10%10)
			b.WriteByte('0' + c%10)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}
