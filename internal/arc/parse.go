package arc

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/posthorn/posthorn/internal/authres"
	"github.com/posthorn/posthorn/internal/dkim"
)

// Seal is a parsed ARC-Seal field value (RFC 8617 4.1.3).
type Seal struct {
	Instance        int
	Algorithm       string // a=, lower-cased: "rsa-sha256" or "ed25519-sha256"
	KeyAlgorithm    string // "rsa" or "ed25519"
	Signature       []byte // b=, decoded
	ChainValidation Status // cv=
	Domain          string // d=, lower-cased
	Selector        string // s=
	Timestamp       int64  // t=; -1 when absent
	Tags            []dkim.Tag
}

// MessageSignature is a parsed ARC-Message-Signature field value
// (RFC 8617 4.1.2): a DKIM-Signature without v= and with i= the instance.
type MessageSignature struct {
	Instance     int
	Algorithm    string // a=, lower-cased
	KeyAlgorithm string
	Signature    []byte // b=, decoded
	BodyHash     []byte // bh=, decoded
	HeaderCanon  string // "simple" or "relaxed"
	BodyCanon    string
	Domain       string // d=, lower-cased
	Selector     string // s=
	// HeaderFields is h= as listed; an empty h= (or an empty element of it)
	// is accepted and selects nothing.
	HeaderFields []string
	BodyLength   int64 // l=; -1 when absent
	Timestamp    int64 // t=; -1 when absent
	Expiration   int64 // x=; -1 when absent
	Tags         []dkim.Tag
}

// AuthResults is a parsed ARC-Authentication-Results field value
// (RFC 8617 4.1.1): instance, authserv-id, then the results.
type AuthResults struct {
	Instance   int
	AuthServID string
	// Payload is everything after "i=N;": the authserv-id and the results,
	// unfolded and trimmed.
	Payload string
}

// supportedAlgorithms are the a= values we verify and sign with.
var supportedAlgorithms = map[string]string{
	"rsa-sha256":     "rsa",
	"ed25519-sha256": "ed25519", // RFC 8463, by RFC 8617's reference to DKIM
}

// maxTimeDigits bounds t= and x= as RFC 6376 3.5 does (12 digits).
const maxTimeDigits = 12

// parseTagList parses a tag-list strictly: dkim.ParseTags tolerates empty
// elements (";;") anywhere, but RFC 6376 3.2 allows an empty one only at
// the end (tag-list = tag-spec *( ";" tag-spec ) [ ";" ]), and the
// ValiMail suite fails an ARC-Seal with ";;" between tags
// (as_format_tags_sc). A ';' never occurs inside a tag value.
func parseTagList(value string) ([]dkim.Tag, error) {
	specs := strings.Split(value, ";")
	for _, spec := range specs[:len(specs)-1] {
		if strings.Trim(spec, " \t\r\n") == "" {
			return nil, errors.New(`empty tag-spec (";;" or a leading ";")`)
		}
	}
	return dkim.ParseTags(value)
}

func tagMap(tags []dkim.Tag) map[string]string {
	m := make(map[string]string, len(tags))
	for _, t := range tags {
		m[t.Name] = t.Value
	}
	return m
}

func require(m map[string]string, names ...string) error {
	for _, n := range names {
		if _, ok := m[n]; !ok {
			return fmt.Errorf("missing required tag %s=", n)
		}
	}
	return nil
}

// parseInstance parses position = 1*2DIGIT with a value of 1 to 50
// (RFC 8617 3.9, 4.2.1).
func parseInstance(s string) (int, error) {
	s = stripFWS(s)
	if len(s) == 0 || len(s) > 2 || !allDigits(s) {
		return 0, fmt.Errorf("instance i=%q is not 1 or 2 digits", s)
	}
	n, _ := strconv.Atoi(s)
	if n < 1 || n > MaxInstances {
		return 0, fmt.Errorf("instance i=%d is outside 1..%d", n, MaxInstances)
	}
	return n, nil
}

func parseAlgorithm(s string) (alg, keyAlg string, err error) {
	alg = strings.ToLower(stripFWS(s))
	k, ok := supportedAlgorithms[alg]
	if !ok {
		// rsa-sha1 included: RFC 8301 3.1.
		return "", "", fmt.Errorf("unsupported algorithm a=%s", s)
	}
	return alg, k, nil
}

// decodeBase64 decodes b= and bh= values, which may carry FWS.
func decodeBase64(name, s string) ([]byte, error) {
	b, err := base64.StdEncoding.DecodeString(stripFWS(s))
	if err != nil || len(b) == 0 {
		return nil, fmt.Errorf("malformed %s= (not base64)", name)
	}
	return b, nil
}

func parseDomainSelector(m map[string]string) (domain, selector string, err error) {
	domain = strings.ToLower(stripFWS(m["d"]))
	if !dkim.ValidDomain(domain) {
		return "", "", fmt.Errorf("invalid domain d=%s", m["d"])
	}
	selector = stripFWS(m["s"])
	if !dkim.ValidDomain(selector) {
		return "", "", fmt.Errorf("invalid selector s=%s", m["s"])
	}
	return domain, selector, nil
}

func parseTime(name, s string) (int64, error) {
	s = stripFWS(s)
	if s == "" || len(s) > maxTimeDigits || !allDigits(s) {
		return 0, fmt.Errorf("malformed %s=%q", name, s)
	}
	return strconv.ParseInt(s, 10, 64)
}

// ParseSeal parses and checks the value of an ARC-Seal field: a tag-list
// with i, a, b, cv, d and s (t optional), no h= (RFC 8617 4.1.3: its
// presence MUST make the chain fail), and an algorithm we support.
func ParseSeal(value string) (*Seal, error) {
	tags, err := parseTagList(value)
	if err != nil {
		return nil, err
	}
	m := tagMap(tags)
	if err := require(m, "i", "a", "b", "cv", "d", "s"); err != nil {
		return nil, err
	}
	if _, ok := m["h"]; ok {
		return nil, errors.New("h= is not allowed in an ARC-Seal")
	}
	s := &Seal{Tags: tags, Timestamp: -1}
	if s.Instance, err = parseInstance(m["i"]); err != nil {
		return nil, err
	}
	if s.Algorithm, s.KeyAlgorithm, err = parseAlgorithm(m["a"]); err != nil {
		return nil, err
	}
	if s.Signature, err = decodeBase64("b", m["b"]); err != nil {
		return nil, err
	}
	switch cv := Status(strings.ToLower(stripFWS(m["cv"]))); cv {
	case StatusNone, StatusPass, StatusFail:
		s.ChainValidation = cv
	default:
		return nil, fmt.Errorf("invalid chain validation status cv=%s", m["cv"])
	}
	if s.Domain, s.Selector, err = parseDomainSelector(m); err != nil {
		return nil, err
	}
	if t, ok := m["t"]; ok {
		if s.Timestamp, err = parseTime("t", t); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// ParseMessageSignature parses and checks the value of an
// ARC-Message-Signature field: a DKIM-Signature tag-list (RFC 6376 3.5)
// with i= the instance, required i, a, b, bh, d, h and s, a v= ignored if
// present (RFC 8617 4.1.2), and no ARC-Seal in h=.
func ParseMessageSignature(value string) (*MessageSignature, error) {
	tags, err := parseTagList(value)
	if err != nil {
		return nil, err
	}
	m := tagMap(tags)
	if err := require(m, "i", "a", "b", "bh", "d", "h", "s"); err != nil {
		return nil, err
	}
	s := &MessageSignature{Tags: tags, BodyLength: -1, Timestamp: -1, Expiration: -1}
	if s.Instance, err = parseInstance(m["i"]); err != nil {
		return nil, err
	}
	if s.Algorithm, s.KeyAlgorithm, err = parseAlgorithm(m["a"]); err != nil {
		return nil, err
	}
	if s.Signature, err = decodeBase64("b", m["b"]); err != nil {
		return nil, err
	}
	if s.BodyHash, err = decodeBase64("bh", m["bh"]); err != nil {
		return nil, err
	}
	// Without c=, relaxed/relaxed. RFC 6376 3.5 makes simple/simple the
	// DKIM default, and RFC 8617 4.1.2 gives the AMS DKIM's semantics;
	// but the ARC drafts' implementations (dkimpy, the ValiMail suite's
	// ams_fields_c_na) take relaxed, the only canonicalization the
	// ARC-Seal knows. Every ARC signer we know writes c= anyway. A lone
	// header method still means a simple body (RFC 6376 3.5).
	s.HeaderCanon, s.BodyCanon = "relaxed", "relaxed"
	if c, ok := m["c"]; ok {
		hc, bc, hasBody := strings.Cut(strings.ToLower(stripFWS(c)), "/")
		s.HeaderCanon, s.BodyCanon = hc, "simple"
		if hasBody {
			s.BodyCanon = bc
		}
		for _, v := range []string{s.HeaderCanon, s.BodyCanon} {
			if v != "simple" && v != "relaxed" {
				return nil, fmt.Errorf("unknown canonicalization c=%s", c)
			}
		}
	}
	if s.Domain, s.Selector, err = parseDomainSelector(m); err != nil {
		return nil, err
	}
	for _, f := range strings.Split(m["h"], ":") {
		f = stripFWS(f)
		if f != "" && !dkim.ValidFieldName(f) {
			return nil, fmt.Errorf("invalid header field name %q in h=", f)
		}
		if strings.EqualFold(f, fieldSeal) {
			// RFC 8617 4.1.2: ARC header fields MUST NOT be signed. We
			// refuse the seal only, as dkimpy does: the ValiMail suite
			// expects AMS with ARC-Authentication-Results (and an older
			// AMS) in h= to verify, as draft versions required.
			return nil, errors.New("h= includes ARC-Seal")
		}
		if f != "" {
			s.HeaderFields = append(s.HeaderFields, f)
		}
	}
	if l, ok := m["l"]; ok {
		l = stripFWS(l)
		if l == "" || len(l) > 76 || !allDigits(l) {
			return nil, fmt.Errorf("malformed l=%q", l)
		}
		if s.BodyLength, err = strconv.ParseInt(l, 10, 64); err != nil {
			return nil, fmt.Errorf("l= out of range: %v", err)
		}
	}
	if t, ok := m["t"]; ok {
		if s.Timestamp, err = parseTime("t", t); err != nil {
			return nil, err
		}
	}
	if x, ok := m["x"]; ok {
		if s.Expiration, err = parseTime("x", x); err != nil {
			return nil, err
		}
		if s.Timestamp >= 0 && s.Expiration < s.Timestamp {
			return nil, errors.New("expiration x= precedes timestamp t=")
		}
	}
	if q, ok := m["q"]; ok {
		found := false
		for _, method := range strings.Split(q, ":") {
			if strings.EqualFold(stripFWS(method), "dns/txt") {
				found = true
			}
		}
		if !found {
			return nil, fmt.Errorf("no supported query method in q=%s", q)
		}
	}
	return s, nil
}

// ParseAuthResults parses the value of an ARC-Authentication-Results field:
// instance [CFWS] ";" authres-payload (RFC 8617 4.1.1). The instance tag
// must come first. The results themselves are not judged: their syntax
// does not affect the validity of the chain (RFC 8617 3.4).
func ParseAuthResults(value string) (*AuthResults, error) {
	s := unfold(value)
	rest := authres.SkipCFWS(s)
	if !strings.HasPrefix(rest, "i") {
		return nil, errors.New("instance tag i= does not come first")
	}
	rest = authres.SkipCFWS(rest[1:])
	if !strings.HasPrefix(rest, "=") {
		return nil, errors.New("instance tag i= does not come first")
	}
	rest = authres.SkipCFWS(rest[1:])
	n := 0
	for n < len(rest) && isDigit(rest[n]) {
		n++
	}
	inst, err := parseInstance(rest[:n])
	if err != nil {
		return nil, err
	}
	rest = authres.SkipCFWS(rest[n:])
	if !strings.HasPrefix(rest, ";") {
		return nil, errors.New(`missing ";" after the instance tag`)
	}
	payload := collapseWSP(rest[1:])
	id := leadingAuthServID(payload)
	if id == "" {
		return nil, errors.New("missing authserv-id")
	}
	return &AuthResults{Instance: inst, AuthServID: id, Payload: payload}, nil
}

// leadingAuthServID returns the leading authserv-id of an authres-payload: a
// token or a quoted-string (RFC 8601 2.2), without quotes.
func leadingAuthServID(payload string) string {
	s := authres.SkipCFWS(payload)
	if strings.HasPrefix(s, `"`) {
		var b strings.Builder
		for i := 1; i < len(s); i++ {
			switch c := s[i]; c {
			case '\\':
				if i+1 < len(s) {
					i++
					b.WriteByte(s[i])
				}
			case '"':
				return b.String()
			default:
				b.WriteByte(c)
			}
		}
		return ""
	}
	i := 0
	for i < len(s) && isTokenChar(s[i]) {
		i++
	}
	return s[:i]
}

// instanceOf finds the instance number of any ARC field value without
// judging the rest, for Sign, which must number its set even when the
// chain is broken.
func instanceOf(name, value string) (int, bool) {
	if strings.EqualFold(name, fieldAAR) {
		aar, err := ParseAuthResults(value)
		if err != nil {
			return 0, false
		}
		return aar.Instance, true
	}
	tags, err := dkim.ParseTags(value)
	if err != nil {
		return 0, false
	}
	for _, t := range tags {
		if t.Name == "i" {
			n, err := parseInstance(t.Value)
			return n, err == nil
		}
	}
	return 0, false
}

// collapseWSP unfolds s, turns each run of spaces and tabs into one
// space and trims it, as relaxed canonicalization does to field values.
func collapseWSP(s string) string {
	return strings.Join(strings.FieldsFunc(unfold(s), func(r rune) bool { return r == ' ' || r == '\t' }), " ")
}

// unfold removes the CRLFs of folding (RFC 5322 2.2.3).
func unfold(s string) string {
	return strings.NewReplacer("\r\n", "", "\n", "", "\r", "").Replace(s)
}

func stripFWS(s string) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case ' ', '\t', '\r', '\n':
			return -1
		}
		return r
	}, s)
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return true
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// isTokenChar: RFC 2045 token characters.
func isTokenChar(c byte) bool {
	return c > ' ' && c < 0x7f && !strings.ContainsRune(`()<>@,;:\"/[]?=`, rune(c))
}
