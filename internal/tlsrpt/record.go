// Package tlsrpt counts outbound TLS sessions per policy domain and writes the daily SMTP TLS reports of RFC 8460.
package tlsrpt

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/posthorn/posthorn/internal/dns"
)

// Record is a parsed _smtp._tls TXT record (RFC 8460 3).
type Record struct {
	// RUA are the report URIs: "mailto:" and "https:" ones, as written.
	RUA []string
}

// Errors of record look-up and parsing.
var (
	ErrNoRecord  = errors.New("tlsrpt: no TLSRPT record")
	ErrBadRecord = errors.New("tlsrpt: malformed TLSRPT record")
)

// ParseRecord parses "v=TLSRPTv1; rua=mailto:reports@example.com".
func ParseRecord(txt string) (Record, error) {
	// RFC 8460 3: tlsrpt-record = tlsrpt-version 1*(field-delim tlsrpt-field) [field-delim]
	fields := strings.Split(txt, ";")
	var rec Record
	sawRUA := false
	for i, f := range fields {
		f = strings.Trim(f, " \t")
		if f == "" {
			if i == len(fields)-1 && i > 0 {
				break
			}
			return Record{}, fmt.Errorf("%w: empty field", ErrBadRecord)
		}
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			return Record{}, fmt.Errorf("%w: field %q has no '='", ErrBadRecord, f)
		}
		k, v = strings.Trim(k, " \t"), strings.Trim(v, " \t")
		if i == 0 {
			if k != "v" || v != "TLSRPTv1" {
				return Record{}, fmt.Errorf("%w: must start with v=TLSRPTv1", ErrBadRecord)
			}
			continue
		}
		if k != "rua" {
			continue // tlsrpt-extension: ignored
		}
		if sawRUA {
			return Record{}, fmt.Errorf("%w: rua given twice", ErrBadRecord)
		}
		sawRUA = true
		for _, u := range strings.Split(v, ",") {
			u = strings.Trim(u, " \t")
			p, err := url.Parse(u)
			if err != nil || (p.Scheme != "mailto" && p.Scheme != "https") {
				return Record{}, fmt.Errorf("%w: rua %q is not a mailto: or https: URI", ErrBadRecord, u)
			}
			rec.RUA = append(rec.RUA, u)
		}
	}
	if !sawRUA {
		return Record{}, fmt.Errorf("%w: no rua", ErrBadRecord)
	}
	return rec, nil
}

// LookupRecord finds domain's record at _smtp._tls.<domain>: of the TXT
// records, exactly one must start with "v=TLSRPTv1" (RFC 8460 3).
func LookupRecord(ctx context.Context, r dns.Resolver, domain string) (Record, error) {
	txts, _, err := r.LookupTXT(ctx, "_smtp._tls."+strings.TrimSuffix(domain, "."))
	if err != nil {
		if dns.IsNotFound(err) {
			return Record{}, ErrNoRecord
		}
		return Record{}, err
	}
	var found []string
	for _, t := range txts {
		if strings.HasPrefix(t, "v=TLSRPTv1") {
			found = append(found, t)
		}
	}
	switch len(found) {
	case 0:
		return Record{}, ErrNoRecord
	case 1:
		return ParseRecord(found[0])
	}
	return Record{}, fmt.Errorf("%w: more than one record", ErrBadRecord)
}

// MailtoAddrs returns the addresses of the mailto: URIs of rec (RFC 6068;
// query parts are ignored).
func (rec Record) MailtoAddrs() []string {
	var out []string
	for _, u := range rec.RUA {
		p, err := url.Parse(u)
		if err != nil || p.Scheme != "mailto" {
			continue
		}
		for _, a := range strings.Split(p.Opaque, ",") {
			if a, err := url.PathUnescape(a); err == nil && strings.Contains(a, "@") {
				out = append(out, a)
			}
		}
	}
	return out
}
