// Package mtasts discovers, fetches and parses MTA-STS policies (RFC 8461).
//
// It is a protocol library: no logging. Cache keeps fetched policies in a
// directory of their own (RFC 8461 5.1). The probe
// uses it to judge a domain's posture; outbound delivery uses it to decide
// whether a next hop must be reached over authenticated TLS.
package mtasts

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/posthorn/posthorn/internal/dns"
)

// Mode is a policy mode (RFC 8461 3.2).
type Mode string

// The policy modes.
const (
	ModeEnforce Mode = "enforce"
	ModeTesting Mode = "testing"
	ModeNone    Mode = "none"
)

// MaxMaxAge is the largest max_age a policy may carry (RFC 8461 3.2:
// "up to 31557600").
const MaxMaxAge = 31557600

// Record is a parsed _mta-sts TXT record (RFC 8461 3.1).
type Record struct {
	ID         string
	Extensions map[string]string
}

// Errors of record and policy parsing. Callers test with errors.Is.
var (
	// ErrNoRecord: no TXT record starts with "v=STSv1" (the domain has no
	// policy).
	ErrNoRecord = errors.New("mtasts: no MTA-STS record")
	// ErrMultipleRecords: more than one record starts with "v=STSv1"
	// (RFC 8461 3.1: treated as having no policy).
	ErrMultipleRecords = errors.New("mtasts: more than one MTA-STS record")
	// ErrBadRecord: the record is malformed.
	ErrBadRecord = errors.New("mtasts: malformed MTA-STS record")
	// ErrBadPolicy: the policy body is malformed.
	ErrBadPolicy = errors.New("mtasts: malformed policy")
)

// ParseRecord parses one TXT record that starts with "v=STSv1".
func ParseRecord(txt string) (Record, error) {
	// RFC 8461 3.1: sts-text-record = sts-version 1*(sts-field-delim sts-field) [sts-field-delim]
	fields := strings.Split(txt, ";")
	rec := Record{}
	sawID := false
	for i, f := range fields {
		f = strings.Trim(f, " \t")
		if f == "" {
			if i == len(fields)-1 {
				break // trailing delimiter
			}
			return Record{}, fmt.Errorf("%w: empty field", ErrBadRecord)
		}
		name, value, ok := strings.Cut(f, "=")
		if !ok {
			return Record{}, fmt.Errorf("%w: field %q has no '='", ErrBadRecord, f)
		}
		if i == 0 {
			if name != "v" || value != "STSv1" {
				return Record{}, fmt.Errorf("%w: must start with v=STSv1", ErrBadRecord)
			}
			continue
		}
		switch {
		case name == "id":
			if sawID {
				return Record{}, fmt.Errorf("%w: id given twice", ErrBadRecord)
			}
			if !isSTSID(value) {
				return Record{}, fmt.Errorf("%w: id %q is not 1 to 32 letters and digits", ErrBadRecord, value)
			}
			rec.ID, sawID = value, true
		case isExtName(name) && isExtValue(value):
			if rec.Extensions == nil {
				rec.Extensions = map[string]string{}
			}
			rec.Extensions[name] = value
		default:
			return Record{}, fmt.Errorf("%w: bad field %q", ErrBadRecord, f)
		}
	}
	if !sawID {
		return Record{}, fmt.Errorf("%w: no id", ErrBadRecord)
	}
	return rec, nil
}

// SelectRecord picks the MTA-STS record among the TXT records of
// _mta-sts.<domain>: records not starting with "v=STSv1" are discarded, and
// exactly one must remain (RFC 8461 3.1).
func SelectRecord(txts []string) (Record, error) {
	var found []string
	for _, t := range txts {
		if strings.HasPrefix(t, "v=STSv1") {
			// "v=STSv12" starts with v=STSv1 too; ParseRecord refuses it.
			found = append(found, t)
		}
	}
	switch len(found) {
	case 0:
		return Record{}, ErrNoRecord
	case 1:
		return ParseRecord(found[0])
	default:
		return Record{}, ErrMultipleRecords
	}
}

// LookupRecord asks the resolver for _mta-sts.<domain> TXT and selects the
// record. A domain without one gives ErrNoRecord; DNS failures are returned
// as the resolver's error.
func LookupRecord(ctx context.Context, r dns.Resolver, domain string) (Record, dns.Result, error) {
	txts, res, err := r.LookupTXT(ctx, "_mta-sts."+strings.TrimSuffix(domain, "."))
	if err != nil {
		if dns.IsNotFound(err) {
			return Record{}, res, ErrNoRecord
		}
		return Record{}, res, err
	}
	rec, err := SelectRecord(txts)
	return rec, res, err
}

// Policy is a parsed policy body (RFC 8461 3.2).
type Policy struct {
	Mode   Mode
	MX     []string // the mx patterns, as written (lower-cased)
	MaxAge time.Duration
	// Extensions holds fields this parser does not know, as RFC 8461 3.2
	// asks receivers to ignore them.
	Extensions map[string]string
}

// Parse parses a policy body. Lines end in LF or CRLF; the last line may
// lack its end.
func Parse(body []byte) (*Policy, error) {
	p := &Policy{}
	var sawVersion, sawMode, sawMaxAge bool
	text := strings.ReplaceAll(string(body), "\r\n", "\n")
	text = strings.TrimSuffix(text, "\n")
	for n, line := range strings.Split(text, "\n") {
		// RFC 8461 3.2: sts-policy-field = key ":" *WSP value *WSP
		key, value, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("%w: line %d has no ':'", ErrBadPolicy, n+1)
		}
		value = strings.Trim(value, " \t")
		switch key {
		case "version":
			if n != 0 || value != "STSv1" {
				return nil, fmt.Errorf("%w: the first line must be \"version: STSv1\"", ErrBadPolicy)
			}
			sawVersion = true
		case "mode":
			if sawMode {
				return nil, fmt.Errorf("%w: mode given twice", ErrBadPolicy)
			}
			switch Mode(value) {
			case ModeEnforce, ModeTesting, ModeNone:
				p.Mode = Mode(value)
			default:
				return nil, fmt.Errorf("%w: unknown mode %q", ErrBadPolicy, value)
			}
			sawMode = true
		case "max_age":
			if sawMaxAge {
				return nil, fmt.Errorf("%w: max_age given twice", ErrBadPolicy)
			}
			secs, err := parseMaxAge(value)
			if err != nil {
				return nil, err
			}
			p.MaxAge = time.Duration(secs) * time.Second
			sawMaxAge = true
		case "mx":
			if !isMXPattern(value) {
				return nil, fmt.Errorf("%w: bad mx pattern %q", ErrBadPolicy, value)
			}
			p.MX = append(p.MX, strings.ToLower(value))
		default:
			if !isExtName(key) {
				return nil, fmt.Errorf("%w: line %d: bad key %q", ErrBadPolicy, n+1, key)
			}
			if p.Extensions == nil {
				p.Extensions = map[string]string{}
			}
			p.Extensions[key] = value
		}
		if n == 0 && !sawVersion {
			return nil, fmt.Errorf("%w: the first line must be \"version: STSv1\"", ErrBadPolicy)
		}
	}
	switch {
	case !sawMode:
		return nil, fmt.Errorf("%w: no mode", ErrBadPolicy)
	case !sawMaxAge:
		return nil, fmt.Errorf("%w: no max_age", ErrBadPolicy)
	case p.Mode != ModeNone && len(p.MX) == 0:
		// RFC 8461 3.2: mx is required for enforce and testing.
		return nil, fmt.Errorf("%w: mode %s without any mx", ErrBadPolicy, p.Mode)
	}
	return p, nil
}

func parseMaxAge(v string) (int64, error) {
	// max-age-value = 1*10DIGIT
	if len(v) == 0 || len(v) > 10 {
		return 0, fmt.Errorf("%w: max_age %q is not 1 to 10 digits", ErrBadPolicy, v)
	}
	for i := 0; i < len(v); i++ {
		if v[i] < '0' || v[i] > '9' {
			return 0, fmt.Errorf("%w: max_age %q is not a number", ErrBadPolicy, v)
		}
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n > MaxMaxAge {
		return 0, fmt.Errorf("%w: max_age %s is over %d", ErrBadPolicy, v, MaxMaxAge)
	}
	return n, nil
}

// Matches reports whether host, an MX host name, is covered by one of the
// policy's mx patterns (RFC 8461 4.1).
func (p *Policy) Matches(host string) bool {
	for _, pat := range p.MX {
		if MatchMX(pat, host) {
			return true
		}
	}
	return false
}

// MatchMX reports whether host matches one mx pattern: names compare
// without case and without a final dot; "*." as the whole left-most label
// matches exactly one label (RFC 8461 4.1).
func MatchMX(pattern, host string) bool {
	pattern = strings.ToLower(strings.TrimSuffix(pattern, "."))
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if rest, ok := strings.CutPrefix(pattern, "*."); ok {
		label, parent, ok := strings.Cut(host, ".")
		return ok && label != "" && parent == rest
	}
	return pattern == host
}

// isSTSID: sts-id-value = 1*32(ALPHA / DIGIT)
func isSTSID(s string) bool {
	if len(s) < 1 || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isAlnum(s[i]) {
			return false
		}
	}
	return true
}

// isExtName: sts-ext-name = (ALPHA / DIGIT) *31(ALPHA / DIGIT / "_" / "-" / ".")
func isExtName(s string) bool {
	if len(s) < 1 || len(s) > 32 || !isAlnum(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !isAlnum(c) && c != '_' && c != '-' && c != '.' {
			return false
		}
	}
	return true
}

// isExtValue: sts-ext-value = 1*(%x21-3A / %x3C / %x3E-7E)
func isExtValue(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c > 0x7e || c == ';' || c == '=' {
			return false
		}
	}
	return true
}

// isMXPattern: mx-pattern = ["*."] domain-name, the wildcard only as the
// whole left-most label.
func isMXPattern(s string) bool {
	s = strings.TrimPrefix(s, "*.")
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(strings.TrimSuffix(s, "."), ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !isAlnum(c) && c != '-' && c != '_' && c < 0x80 {
				return false
			}
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}
