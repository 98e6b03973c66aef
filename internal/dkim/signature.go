package dkim

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Signature is a parsed DKIM-Signature field value (RFC 6376 3.5).
type Signature struct {
	Algorithm    string // a= as written, lower-cased: "rsa-sha256"
	KeyAlgorithm string // "rsa", "ed25519"
	Hash         string // "sha256", "sha1"
	B            []byte // b=, decoded
	BRaw         string // b= with whitespace removed
	BodyHash     []byte // bh=, decoded
	HeaderCanon  string // "simple" or "relaxed"
	BodyCanon    string // "simple" or "relaxed"
	Domain       string // d=, lower-cased
	HeaderFields []string
	Identifier   string // i=; "@" + Domain when absent
	BodyLength   int64  // l=; -1 when absent
	QueryMethods []string
	Selector     string // s=
	Timestamp    int64  // t=; -1 when absent
	Expiration   int64  // x=; -1 when absent
	Tags         []Tag
}

// maxTimeDigits bounds t= and x= (RFC 6376 3.5 allows 12 digits).
const maxTimeDigits = 12

// ParseSignature parses and checks the value of a DKIM-Signature header
// field: required tags present (v, a, b, bh, d, h, s), v=1, d= and s= valid
// domain names, i= within d=, h= including From, known canonicalizations,
// numeric t=, x= (not before t=) and l=. Every error is a permanent error for
// the signature. It does not judge the algorithm (sha1 is refused by Verify).
func ParseSignature(value string) (*Signature, error) {
	tags, err := ParseTags(value)
	if err != nil {
		return nil, err
	}
	m := make(map[string]string, len(tags))
	for _, t := range tags {
		m[t.Name] = t.Value
	}
	for _, name := range []string{"v", "a", "b", "bh", "d", "h", "s"} {
		if _, ok := m[name]; !ok {
			return nil, fmt.Errorf("missing required tag %s=", name)
		}
	}
	if m["v"] != "1" {
		return nil, fmt.Errorf("unsupported version v=%s", m["v"])
	}
	sig := &Signature{Tags: tags, BodyLength: -1, Timestamp: -1, Expiration: -1}

	sig.Algorithm = strings.ToLower(stripFWS(m["a"]))
	k, h, ok := strings.Cut(sig.Algorithm, "-")
	if !ok || k == "" || h == "" {
		return nil, fmt.Errorf("malformed algorithm a=%s", sig.Algorithm)
	}
	sig.KeyAlgorithm, sig.Hash = k, h

	sig.BRaw = stripFWS(m["b"])
	if sig.B, err = base64.StdEncoding.DecodeString(sig.BRaw); err != nil || len(sig.B) == 0 {
		return nil, errors.New("malformed signature b=")
	}
	if sig.BodyHash, err = base64.StdEncoding.DecodeString(stripFWS(m["bh"])); err != nil || len(sig.BodyHash) == 0 {
		return nil, errors.New("malformed body hash bh=")
	}

	sig.HeaderCanon, sig.BodyCanon = "simple", "simple"
	if c, ok := m["c"]; ok {
		hc, bc, hasBody := strings.Cut(strings.ToLower(stripFWS(c)), "/")
		sig.HeaderCanon = hc
		if hasBody {
			sig.BodyCanon = bc
		}
		for _, v := range []string{sig.HeaderCanon, sig.BodyCanon} {
			if v != "simple" && v != "relaxed" {
				return nil, fmt.Errorf("unknown canonicalization c=%s", c)
			}
		}
	}

	sig.Domain = strings.ToLower(stripFWS(m["d"]))
	if !validDomain(sig.Domain) {
		return nil, fmt.Errorf("invalid signing domain d=%s", m["d"])
	}
	sig.Selector = stripFWS(m["s"])
	if !validDomain(sig.Selector) {
		return nil, fmt.Errorf("invalid selector s=%s", m["s"])
	}

	fromSigned := false
	for _, f := range splitList(m["h"]) {
		if !validFieldName(f) {
			return nil, fmt.Errorf("invalid header field name %q in h=", f)
		}
		if strings.EqualFold(f, "from") {
			fromSigned = true
		}
		sig.HeaderFields = append(sig.HeaderFields, f)
	}
	if !fromSigned {
		// RFC 6376 5.4: From MUST be signed.
		return nil, errors.New("From field not signed (h= lacks from)")
	}

	sig.Identifier = "@" + sig.Domain
	if i, ok := m["i"]; ok {
		// i= is dkim-quoted-printable; we only need its domain part, which
		// never contains '='-escapes in practice, and compare it as text.
		sig.Identifier = stripFWS(i)
		at := strings.LastIndexByte(sig.Identifier, '@')
		if at < 0 {
			return nil, fmt.Errorf("malformed identity i=%s", i)
		}
		idom := strings.ToLower(sig.Identifier[at+1:])
		// RFC 6376 3.5: the domain of i= must be d= or a subdomain of it.
		if idom != sig.Domain && !strings.HasSuffix(idom, "."+sig.Domain) {
			return nil, fmt.Errorf("identity i=%s is not within d=%s", i, sig.Domain)
		}
	}

	if l, ok := m["l"]; ok {
		if sig.BodyLength, err = parseDecimal(l, 76); err != nil {
			return nil, fmt.Errorf("malformed body length l=: %v", err)
		}
	}
	if t, ok := m["t"]; ok {
		if sig.Timestamp, err = parseDecimal(t, maxTimeDigits); err != nil {
			return nil, fmt.Errorf("malformed timestamp t=: %v", err)
		}
	}
	if x, ok := m["x"]; ok {
		if sig.Expiration, err = parseDecimal(x, maxTimeDigits); err != nil {
			return nil, fmt.Errorf("malformed expiration x=: %v", err)
		}
		// RFC 6376 3.5: x= MUST be greater than t=.
		if sig.Timestamp >= 0 && sig.Expiration < sig.Timestamp {
			return nil, errors.New("expiration x= precedes timestamp t=")
		}
	}

	sig.QueryMethods = []string{"dns/txt"}
	if q, ok := m["q"]; ok {
		sig.QueryMethods = splitList(strings.ToLower(q))
	}
	return sig, nil
}

// parseDecimal parses 1*max DIGIT. Values that overflow int64 are an error.
func parseDecimal(s string, max int) (int64, error) {
	s = stripFWS(s)
	if s == "" || len(s) > max {
		return 0, fmt.Errorf("%q is not 1 to %d digits", s, max)
	}
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return 0, fmt.Errorf("%q is not a number", s)
		}
	}
	return strconv.ParseInt(s, 10, 64)
}

// validFieldName: field-name = 1*ftext, ftext = %d33-57 / %d59-126 (RFC 5322 3.6.8).
func validFieldName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 33 || c > 126 || c == ':' {
			return false
		}
	}
	return true
}
