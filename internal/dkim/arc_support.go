package dkim

// Exported building blocks for internal/arc (RFC 8617), whose
// ARC-Message-Signature and ARC-Seal reuse DKIM's tag lists,
// canonicalization and key records. Each is a thin wrapper over the code
// Verify uses, so DKIM and ARC canonicalize the same way.

import (
	"bufio"
	"context"
	"io"

	"github.com/posthorn/posthorn/internal/dns"
)

// HeaderField is one raw header field: Raw is "Name: value\r\n" with its
// folding kept and CRLF line ends (a bare LF read becomes CRLF); Name is
// the field name as written, without surrounding whitespace.
type HeaderField struct {
	Name string
	Raw  string
}

// ReadHeader reads the header section up to and including the empty line
// that ends it (or EOF), leaving br at the first octet of the body. It holds
// at most 1 MiB of header.
func ReadHeader(br *bufio.Reader) ([]HeaderField, error) {
	fields, err := readHeader(br)
	if err != nil {
		return nil, err
	}
	out := make([]HeaderField, len(fields))
	for i, f := range fields {
		out[i] = HeaderField{Name: f.name, Raw: f.raw}
	}
	return out, nil
}

// CanonicalizeHeader canonicalizes one raw field with method "simple" or
// "relaxed" (RFC 6376 3.4.1, 3.4.2); the result ends in CRLF.
func CanonicalizeHeader(raw, method string) string { return canonHeader(raw, method) }

// NewBodyCanonicalizer returns a writer that canonicalizes a body streamed
// through it with method "simple" or "relaxed" (RFC 6376 3.4.3, 3.4.4) and
// writes the result to w. Close must be called at the end of the body.
func NewBodyCanonicalizer(w io.Writer, method string) io.WriteCloser {
	return newBodyCanon(w, method)
}

// WithoutSignatureValue returns a raw signature field with the value of its
// b= tag removed and everything else kept byte for byte (RFC 6376 3.7).
func WithoutSignatureValue(raw string) string { return withoutB(raw) }

// ValidDomain reports whether s is a domain name as d= and s= accept it:
// ASCII labels of letters, digits, hyphens (and underscores).
func ValidDomain(s string) bool { return validDomain(s) }

// ValidFieldName reports whether s is an RFC 5322 field-name.
func ValidFieldName(s string) bool { return validFieldName(s) }

// AllowsEmail reports whether the key record's s= permits use for email.
func (k *KeyRecord) AllowsEmail() bool { return k.allowsEmail() }

// AllowsHash reports whether the key record's h= permits hash h ("sha256").
func (k *KeyRecord) AllowsHash(h string) bool { return k.allowsHash(h) }

// KeyError says why LookupKey produced no usable key: Status is
// StatusPermError (no record, malformed record), StatusFail (revoked key)
// or StatusTempError (the DNS lookup failed temporarily).
type KeyError struct {
	Status Status
	Reason string
}

func (e *KeyError) Error() string { return string(e.Status) + ": " + e.Reason }

// LookupKey fetches and parses the key record at selector._domainkey.domain
// as Verify does (RFC 6376 6.1.2: the first record that parses is used).
// Errors are *KeyError.
func LookupKey(ctx context.Context, resolver dns.Resolver, selector, domain string) (*KeyRecord, error) {
	key, v := fetchKey(ctx, resolver, &Signature{Selector: selector, Domain: domain})
	if v != nil {
		return nil, &KeyError{Status: v.status, Reason: v.reason}
	}
	return key, nil
}
