// Package authres builds and inspects Authentication-Results header fields (RFC 8601).
package authres

import (
	"strings"
)

// Prop is one property of a result, written ptype.property=value
// (RFC 8601 2.2), e.g. {"smtp", "mailfrom", "alice@example.com"}.
type Prop struct {
	Type, Name, Value string
}

// Result is one resinfo: method=result, an optional reason and comment,
// and properties (RFC 8601 2.2).
type Result struct {
	Method  string // "spf", "dkim", "dmarc", "arc", "auth", ...
	Value   string // "pass", "fail", "none", ...
	Reason  string // reason="..." when not empty
	Comment string // a parenthesized comment after the result, when not empty
	Props   []Prop
}

// SPF is the result of an SPF check (RFC 7208 9.1, RFC 8601 2.7.2):
// smtp.mailfrom is the checked MAIL FROM address (or postmaster@HELO when
// MAIL FROM was empty) and smtp.helo the HELO name; empty ones are left out.
func SPF(result, mailFrom, helo string) Result {
	r := Result{Method: "spf", Value: result}
	if mailFrom != "" {
		r.Props = append(r.Props, Prop{"smtp", "mailfrom", mailFrom})
	}
	if helo != "" {
		r.Props = append(r.Props, Prop{"smtp", "helo", helo})
	}
	return r
}

// DKIM is the result of one signature (RFC 8601 2.7.1, RFC 6008):
// header.d, header.s, header.a, and header.b (the first 8 characters of the
// signature, which tell apart two signatures of one domain). reason is
// written as reason= when the result is not a pass.
func DKIM(result, domain, selector, algorithm, b, reason string) Result {
	r := Result{Method: "dkim", Value: result}
	if result != "pass" {
		r.Reason = reason
	}
	for _, p := range []Prop{{"header", "d", domain}, {"header", "s", selector}, {"header", "a", algorithm}} {
		if p.Value != "" {
			r.Props = append(r.Props, p)
		}
	}
	if len(b) > 8 {
		b = b[:8]
	}
	if b != "" {
		r.Props = append(r.Props, Prop{"header", "b", b})
	}
	return r
}

// DMARC is a DMARC result for the Author Domain (RFC 7489 11.2, kept by
// RFC 9989); policy, when given, goes into a comment such as "p=reject".
func DMARC(result, fromDomain, policy string) Result {
	r := Result{Method: "dmarc", Value: result}
	if policy != "" {
		r.Comment = "p=" + policy
	}
	if fromDomain != "" {
		r.Props = append(r.Props, Prop{"header", "from", fromDomain})
	}
	return r
}

// maxLine is where Format folds (RFC 5322 2.1.1 SHOULD).
const maxLine = 78

// Format returns a whole Authentication-Results header field, folded, with
// a final CRLF: "Authentication-Results: <authserv-id>;" and one result per
// line, or "none" when there are no results (RFC 8601 2.2). Every value is
// written as a token, a domain or address, or a quoted-string, and control
// characters (CR and LF among them) never reach the output.
func Format(authservID string, results []Result) string {
	var b strings.Builder
	line := "Authentication-Results: " + value(authservID) + ";"
	if len(results) == 0 {
		return line + " none\r\n"
	}
	for i, r := range results {
		b.WriteString(line)
		b.WriteString("\r\n")
		words := []string{clean(r.Method) + "=" + value(r.Value)}
		if r.Comment != "" {
			words = append(words, comment(r.Comment))
		}
		if r.Reason != "" {
			words = append(words, "reason="+quoted(r.Reason))
		}
		for _, p := range r.Props {
			words = append(words, clean(p.Type)+"."+clean(p.Name)+"="+pvalue(p.Value))
		}
		line = "\t"
		for j, w := range words {
			if j > 0 && len(line)+1+len(w) > maxLine {
				b.WriteString(line)
				b.WriteString("\r\n")
				line = "\t"
			} else if j > 0 {
				line += " "
			}
			line += w
		}
		if i < len(results)-1 {
			line += ";"
		}
	}
	b.WriteString(line)
	b.WriteString("\r\n")
	return b.String()
}

// isTokenChar: RFC 2045 token, any CHAR but SPACE, CTLs and tspecials.
func isTokenChar(c byte) bool {
	return c > ' ' && c < 0x7f && !strings.ContainsRune(`()<>@,;:\"/[]?=`, rune(c))
}

// clean keeps only token characters, for method, ptype and property names
// that we choose ourselves.
func clean(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if isTokenChar(s[i]) {
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

// value writes s as a token when it is one, else as a quoted-string.
func value(s string) string {
	if s == "" {
		return `""`
	}
	for i := 0; i < len(s); i++ {
		if !isTokenChar(s[i]) {
			return quoted(s)
		}
	}
	return s
}

// pvalue also allows a bare domain or local-part@domain (RFC 8601 2.2),
// so that smtp.mailfrom=alice@example.com needs no quotes.
func pvalue(s string) string {
	if isDomain(s) {
		return s
	}
	if local, domain, ok := strings.Cut(s, "@"); ok && isDotAtom(local) && isDomain(domain) {
		return s
	}
	return value(s)
}

func isDomain(s string) bool {
	if s == "" || len(s) > 255 {
		return false
	}
	for _, l := range strings.Split(s, ".") {
		if l == "" {
			return false
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// isDotAtom: RFC 5322 dot-atom (atext separated by single dots), or empty.
func isDotAtom(s string) bool {
	if s == "" {
		return true
	}
	for _, a := range strings.Split(s, ".") {
		if a == "" {
			return false
		}
		for i := 0; i < len(a); i++ {
			c := a[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0) {
				return false
			}
		}
	}
	return true
}

// quoted writes a quoted-string, escaping \ and ", with control characters
// (CR, LF, TAB, DEL...) replaced by a space.
func quoted(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c < ' ' || c == 0x7f:
			b.WriteByte(' ')
		case c == '\\' || c == '"':
			b.WriteByte('\\')
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// comment writes a parenthesized comment, escaping parentheses and \.
func comment(s string) string {
	var b strings.Builder
	b.WriteByte('(')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c < ' ' || c == 0x7f:
			b.WriteByte(' ')
		case c == '(' || c == ')' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte(')')
	return b.String()
}

// ClaimsAuthServID reports whether an Authentication-Results field claims
// to come from authservID (compared case-insensitively), so that the
// server can delete such fields arriving from outside before adding its own
// (RFC 8601 5). field may be the whole field ("Authentication-Results: ...")
// or only its value; folding, comments and a quoted authserv-id are
// understood. An unparseable field does not claim anything.
func ClaimsAuthServID(field, authservID string) bool {
	s := strings.NewReplacer("\r\n", "", "\n", "", "\r", "").Replace(field)
	if name, rest, ok := strings.Cut(s, ":"); ok && strings.EqualFold(strings.TrimSpace(name), "Authentication-Results") {
		s = rest
	}
	s = SkipCFWS(s)
	var id string
	if strings.HasPrefix(s, `"`) {
		var b strings.Builder
		i := 1
		for ; i < len(s) && s[i] != '"'; i++ {
			if s[i] == '\\' && i+1 < len(s) {
				i++
			}
			b.WriteByte(s[i])
		}
		if i >= len(s) {
			return false
		}
		id = b.String()
	} else {
		i := 0
		for i < len(s) && isTokenChar(s[i]) {
			i++
		}
		id = s[:i]
	}
	return id != "" && strings.EqualFold(strings.TrimSuffix(id, "."), strings.TrimSuffix(authservID, "."))
}

// SkipCFWS drops leading whitespace (folding included) and comments,
// nested and with quoted-pairs (RFC 5322 3.2.2 CFWS), from s.
func SkipCFWS(s string) string {
	for {
		s = strings.TrimLeft(s, " \t\r\n")
		if !strings.HasPrefix(s, "(") {
			return s
		}
		depth := 0
		i := 0
		for ; i < len(s); i++ {
			switch s[i] {
			case '\\':
				i++
				continue
			case '(':
				depth++
			case ')':
				depth--
			}
			if depth == 0 {
				break
			}
		}
		if i >= len(s) {
			return ""
		}
		s = s[i+1:]
	}
}
