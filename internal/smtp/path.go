package smtp

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"unicode/utf8"
)

// Address is a mailbox of RFC 5321 4.1.2: a local part and a domain (or an
// address literal in brackets). The zero Address is the null reverse-path
// "<>".
type Address struct {
	Local  string // as sent, quotes removed and quoted-pairs resolved
	Domain string // as sent, without trailing dot; "[1.2.3.4]" for literals
}

// IsNull reports the null path <>.
func (a Address) IsNull() bool { return a.Local == "" && a.Domain == "" }

// String renders the address for the wire and for storage: the local
// part is quoted when it is not a dot-string.
func (a Address) String() string {
	if a.IsNull() {
		return ""
	}
	local := a.Local
	if !isDotString(local, true) {
		local = quoteLocal(local)
	}
	if a.Domain == "" {
		return local
	}
	return local + "@" + a.Domain
}

// ASCII reports whether the address needs no SMTPUTF8.
func (a Address) ASCII() bool { return isASCII(a.Local) && isASCII(a.Domain) }

// Limits. RFC 5321 4.5.3.1 sets 64 octets for a local part and 256 for a
// path as the least a server must accept, and asks for no limits where
// possible; forwarded mail needs more: an SRS address (SRS0=hash=tt=
// domain=local@forwarder) of a 64-octet local part is longer than 64.
const (
	maxLocalPart = 255
	maxDomain    = 255
	maxPath      = 512
)

// Errors from the path parser. The server turns each into a 501 or 553
// reply that says what was wrong.
var (
	ErrPathSyntax   = errors.New("syntax error in address")
	ErrPathTooLong  = errors.New("address too long")
	ErrNeedSMTPUTF8 = errors.New("non-ASCII address without SMTPUTF8")
)

// PathArgs is the argument of MAIL or RCPT after "FROM:" or "TO:": the
// path and its ESMTP parameters.
type PathArgs struct {
	Addr   Address
	Params []Param
}

// Param is one ESMTP parameter (RFC 5321 4.1.2 esmtp-param).
type Param struct {
	Key   string // upper case
	Value string // as sent; "" when there was no "="
	Bare  bool   // no "=" at all
}

// ParseMailArgs parses the argument of MAIL ("FROM:<path> params") or
// RCPT ("TO:<path> params"); prefix is "FROM:" or "TO:". One space after
// the colon is tolerated, as most servers do, since many clients send it.
// Source routes (<@a,@b:user@d>) are accepted and dropped (RFC 5321 4.1.1.3,
// C.). utf8 says whether the client announced SMTPUTF8 on this MAIL (for
// RCPT: on the transaction's MAIL); the parameter list is checked for
// SMTPUTF8 by the caller before parsing the MAIL path with utf8 set.
func ParseMailArgs(arg, prefix string, allowUTF8 bool) (PathArgs, error) {
	if len(arg) < len(prefix) || !strings.EqualFold(arg[:len(prefix)], prefix) {
		return PathArgs{}, fmt.Errorf("%w: expected %s<address>", ErrPathSyntax, prefix)
	}
	rest := arg[len(prefix):]
	rest = strings.TrimPrefix(rest, " ")
	if !strings.HasPrefix(rest, "<") {
		return PathArgs{}, fmt.Errorf("%w: the address must be in angle brackets", ErrPathSyntax)
	}
	end := closingBracket(rest)
	if end < 0 {
		return PathArgs{}, fmt.Errorf("%w: no closing angle bracket", ErrPathSyntax)
	}
	inner := rest[1:end]
	if len(inner)+2 > maxPath {
		return PathArgs{}, ErrPathTooLong
	}
	var pa PathArgs
	if inner != "" {
		a, err := ParseAddress(dropSourceRoute(inner), allowUTF8)
		if err != nil {
			return PathArgs{}, err
		}
		pa.Addr = a
	}
	params, err := ParseParams(rest[end+1:], allowUTF8)
	if err != nil {
		return PathArgs{}, err
	}
	pa.Params = params
	return pa, nil
}

// closingBracket finds the '>' that ends the path, skipping quoted strings.
func closingBracket(s string) int {
	inQuote := false
	for i := 1; i < len(s); i++ {
		switch c := s[i]; {
		case inQuote && c == '\\':
			i++
		case c == '"':
			inQuote = !inQuote
		case !inQuote && c == '>':
			return i
		}
	}
	return -1
}

// dropSourceRoute removes an obsolete A-d-l ("@a,@b:") prefix.
func dropSourceRoute(s string) string {
	if !strings.HasPrefix(s, "@") {
		return s
	}
	if i := strings.IndexByte(s, ':'); i > 0 {
		return s[i+1:]
	}
	return s
}

// ParseAddress parses "local@domain" (RFC 5321 Mailbox); with allowUTF8,
// the RFC 6531 forms with UTF-8 in local part and domain. The bare
// "postmaster" (any case) without domain is accepted as RFC 5321 4.1.1.3
// requires for RCPT; callers that must not accept it check Domain.
func ParseAddress(s string, allowUTF8 bool) (Address, error) {
	if len(s) > maxPath {
		return Address{}, ErrPathTooLong
	}
	if !allowUTF8 && !isASCII(s) {
		return Address{}, ErrNeedSMTPUTF8
	}
	if !utf8.ValidString(s) {
		return Address{}, fmt.Errorf("%w: not valid UTF-8", ErrPathSyntax)
	}
	if strings.EqualFold(s, "postmaster") {
		return Address{Local: s}, nil
	}
	var local, domain string
	if strings.HasPrefix(s, `"`) {
		end := closingQuote(s)
		if end < 0 || end+1 >= len(s) || s[end+1] != '@' {
			return Address{}, fmt.Errorf("%w: bad quoted local part", ErrPathSyntax)
		}
		l, ok := unquoteLocal(s[:end+1])
		if !ok {
			return Address{}, fmt.Errorf("%w: bad quoted local part", ErrPathSyntax)
		}
		local, domain = l, s[end+2:]
	} else {
		at := strings.LastIndexByte(s, '@')
		if at < 0 {
			return Address{}, fmt.Errorf("%w: no @domain", ErrPathSyntax)
		}
		local, domain = s[:at], s[at+1:]
		if !isDotString(local, allowUTF8) {
			return Address{}, fmt.Errorf("%w: bad local part", ErrPathSyntax)
		}
	}
	if len(local) == 0 || len(local) > maxLocalPart {
		return Address{}, fmt.Errorf("%w: local part must be 1 to %d octets", ErrPathSyntax, maxLocalPart)
	}
	if strings.HasPrefix(domain, "[") {
		if !IsAddressLiteral(domain) {
			return Address{}, fmt.Errorf("%w: bad address literal", ErrPathSyntax)
		}
	} else {
		domain = strings.TrimSuffix(domain, ".")
		if !IsDomain(domain, allowUTF8) {
			return Address{}, fmt.Errorf("%w: bad domain", ErrPathSyntax)
		}
	}
	return Address{Local: local, Domain: domain}, nil
}

func closingQuote(s string) int {
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			return i
		}
	}
	return -1
}

// unquoteLocal resolves a Quoted-string (RFC 5321 4.1.2: qtextSMTP and
// quoted-pairSMTP; RFC 6531 adds UTF-8). Control characters are refused
// in any form, so they can never reach a header, a log or a file name.
func unquoteLocal(q string) (string, bool) {
	var b strings.Builder
	for i := 1; i < len(q)-1; i++ {
		c := q[i]
		if c == '\\' {
			i++
			if i >= len(q)-1 || q[i] < 32 || q[i] > 126 {
				return "", false
			}
			b.WriteByte(q[i])
			continue
		}
		if c < 32 || c == 127 || c == '"' {
			return "", false
		}
		b.WriteByte(c)
	}
	return b.String(), true
}

func quoteLocal(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	b.WriteByte('"')
	return b.String()
}

// isAtext reports RFC 5322 atext.
func isAtext(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}

// isDotString reports RFC 5321 Dot-string; with utf8, octets >= 0x80 count
// as atext (RFC 6531 3.3).
func isDotString(s string, utf8ok bool) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '.' || isAtext(c) || utf8ok && c >= 0x80 {
			continue
		}
		return false
	}
	return true
}

// IsDomain reports RFC 5321 Domain syntax (letters, digits, hyphens, dots;
// labels up to 63 octets; no leading or trailing hyphen). With utf8,
// U-labels are allowed (RFC 6531). Underscores are accepted in labels:
// they are common in real host names and harmless here.
func IsDomain(s string, utf8ok bool) bool {
	if s == "" || len(s) > maxDomain {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			switch {
			case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_':
			case c >= 0x80 && utf8ok:
			default:
				return false
			}
		}
	}
	return true
}

// IsAddressLiteral reports "[IPv4]" or "[IPv6:addr]" (RFC 5321 4.1.3).
// General address literals (tag:content) are refused: nobody uses them.
func IsAddressLiteral(s string) bool {
	if len(s) < 3 || s[0] != '[' || s[len(s)-1] != ']' {
		return false
	}
	in := s[1 : len(s)-1]
	if v6, ok := strings.CutPrefix(in, "IPv6:"); ok {
		a, err := netip.ParseAddr(v6)
		return err == nil && a.Is6() && a.Zone() == ""
	}
	a, err := netip.ParseAddr(in)
	return err == nil && a.Is4()
}

// IsHeloName reports whether an EHLO/HELO argument is acceptable: a domain
// or an address literal (RFC 5321 4.1.1.1). Anything else — spaces,
// control characters, quotes — is refused, so the name is safe to put in
// a Received header and a log line.
func IsHeloName(s string) bool {
	if strings.HasPrefix(s, "[") {
		return IsAddressLiteral(s)
	}
	return IsDomain(strings.TrimSuffix(s, "."), false)
}

// ParseParams parses the ESMTP parameters after a path: space-separated
// keyword[=value] (RFC 5321 4.1.2 esmtp-param). Values may not contain
// "=", space or control characters; with utf8, UTF-8 is allowed (RFC 6531).
func ParseParams(s string, allowUTF8 bool) ([]Param, error) {
	var params []Param
	for _, f := range strings.Split(s, " ") {
		if f == "" {
			continue
		}
		k, v, hasValue := strings.Cut(f, "=")
		if !isKeyword(k) {
			return nil, fmt.Errorf("%w: bad parameter %q", ErrPathSyntax, Printable(k))
		}
		if hasValue {
			if v == "" {
				return nil, fmt.Errorf("%w: empty value for %s", ErrPathSyntax, k)
			}
			for i := 0; i < len(v); i++ {
				c := v[i]
				if c < 33 || c == '=' || c == 127 || c >= 0x80 && !allowUTF8 {
					return nil, fmt.Errorf("%w: bad value for %s", ErrPathSyntax, strings.ToUpper(k))
				}
			}
		}
		params = append(params, Param{Key: strings.ToUpper(k), Value: v, Bare: !hasValue})
	}
	return params, nil
}

func isKeyword(k string) bool {
	if k == "" || len(k) > 64 {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		alnum := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
		if !alnum && (i == 0 || c != '-') {
			return false
		}
	}
	return true
}

// DecodeXtext decodes RFC 3461 4 xtext ("+" HEX HEX for unsafe octets).
// The result is refused when it contains control characters: ORCPT and
// ENVID end up in DSNs and in the spool.
func DecodeXtext(s string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '+':
			if i+2 >= len(s) {
				return "", fmt.Errorf("%w: truncated xtext", ErrPathSyntax)
			}
			h, ok := unhex(s[i+1], s[i+2])
			if !ok {
				return "", fmt.Errorf("%w: bad xtext escape", ErrPathSyntax)
			}
			if h < 33 || h > 126 {
				return "", fmt.Errorf("%w: control character in xtext", ErrPathSyntax)
			}
			b.WriteByte(h)
			i += 2
		case c < 33 || c > 126 || c == '=':
			return "", fmt.Errorf("%w: bad character in xtext", ErrPathSyntax)
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}

// EncodeXtext is the inverse of DecodeXtext.
func EncodeXtext(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 33 || c > 126 || c == '+' || c == '=' {
			fmt.Fprintf(&b, "+%02X", c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

func unhex(a, b byte) (byte, bool) {
	h, ok1 := hexval(a)
	l, ok2 := hexval(b)
	return h<<4 | l, ok1 && ok2
}

// hexval accepts upper-case hex only, as RFC 3461 4 specifies.
func hexval(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// Printable makes client-supplied text safe to echo in a reply or a log
// line: control characters and non-ASCII become '?', and it is cut short.
func Printable(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c < 0x20 || c >= 0x7f {
			b[i] = '?'
		}
	}
	if len(b) > 64 {
		b = append(b[:64], "..."...)
	}
	return string(b)
}
