package spf

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
)

// macroToken is a piece of a macro-string (RFC 7208 7.1): literal text, or
// a macro-expand. "%%", "%_" and "%-" are macro-expands whose text is fixed.
type macroToken struct {
	expand  bool
	literal string // the text of a literal, or of %% %_ %-
	letter  byte   // lower-case macro letter; 0 for literals
	upper   bool   // URL-escape the result (RFC 7208 7.3)
	digits  int    // keep this many right-hand parts; 0 = all
	reverse bool
	delims  string // split characters; "." when none given
}

// parseMacroString tokenizes a macro-string. The letters c, r and t are
// only allowed in explanation strings (exp is true; RFC 7208 7.2).
func parseMacroString(s string, exp bool) ([]macroToken, error) {
	var toks []macroToken
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			toks = append(toks, macroToken{literal: lit.String()})
			lit.Reset()
		}
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '%' {
			// macro-literal = %x21-24 / %x26-7E; explanation text may also
			// hold spaces (RFC 7208 6.2: the TXT is a macro-string with SP).
			if (c < 0x21 || c > 0x7e) && !(exp && c == ' ') {
				return nil, fmt.Errorf("character %q not allowed in a macro-string", c)
			}
			lit.WriteByte(c)
			continue
		}
		if i+1 >= len(s) {
			return nil, errors.New("macro-string ends with a lone %")
		}
		i++
		switch s[i] {
		case '%':
			flush()
			toks = append(toks, macroToken{expand: true, literal: "%"})
			continue
		case '_':
			flush()
			toks = append(toks, macroToken{expand: true, literal: " "})
			continue
		case '-':
			flush()
			toks = append(toks, macroToken{expand: true, literal: "%20"})
			continue
		case '{':
		default:
			return nil, fmt.Errorf("bad macro %q", s[i-1:i+1])
		}
		end := strings.IndexByte(s[i:], '}')
		if end < 0 {
			return nil, errors.New("macro without closing }")
		}
		body := s[i+1 : i+end]
		i += end
		t, err := parseMacroBody(body, exp)
		if err != nil {
			return nil, err
		}
		flush()
		toks = append(toks, t)
	}
	flush()
	if len(toks) == 0 {
		toks = append(toks, macroToken{})
	}
	return toks, nil
}

// parseMacroBody parses what is between "%{" and "}":
// macro-letter transformers *delimiter.
func parseMacroBody(body string, exp bool) (macroToken, error) {
	t := macroToken{expand: true}
	if body == "" {
		return t, errors.New("empty macro %{}")
	}
	l := body[0]
	t.upper = 'A' <= l && l <= 'Z'
	t.letter = l | 0x20
	switch t.letter {
	case 's', 'l', 'o', 'd', 'i', 'p', 'h', 'v':
	case 'c', 'r', 't':
		if !exp {
			return t, fmt.Errorf("macro %%{%c} is only allowed in explanations", l)
		}
	default:
		return t, fmt.Errorf("unknown macro letter %q", l)
	}
	rest := body[1:]
	n := 0
	for n < len(rest) && isDigit(rest[n]) {
		n++
	}
	if n > 0 {
		d, err := strconv.Atoi(rest[:n])
		if err != nil || d == 0 {
			// RFC 7208 7.1: the digit transformer must be nonzero.
			return t, fmt.Errorf("bad macro transformer %q", rest[:n])
		}
		t.digits = d
	}
	rest = rest[n:]
	if strings.HasPrefix(rest, "r") || strings.HasPrefix(rest, "R") {
		t.reverse = true
		rest = rest[1:]
	}
	for i := 0; i < len(rest); i++ {
		if !strings.ContainsRune(".-+,/_=", rune(rest[i])) {
			return t, fmt.Errorf("bad macro delimiter %q", rest[i])
		}
	}
	t.delims = rest
	if t.delims == "" {
		t.delims = "."
	}
	return t, nil
}

// macroEnv holds the values the macro letters expand to.
type macroEnv struct {
	sender   string                      // s
	local    string                      // l
	domain   string                      // o
	current  string                      // d
	ip       net.IP                      // i, c, v
	helo     string                      // h
	receiver string                      // r
	now      int64                       // t
	ptr      func(current string) string // p
}

func (e *macroEnv) value(letter byte) string {
	switch letter {
	case 's':
		return e.sender
	case 'l':
		return e.local
	case 'o':
		return e.domain
	case 'd':
		return e.current
	case 'i':
		return dottedIP(e.ip)
	case 'p':
		return e.ptr(e.current)
	case 'v':
		if e.ip.To4() != nil {
			return "in-addr"
		}
		return "ip6"
	case 'h':
		return e.helo
	case 'c':
		return e.ip.String()
	case 'r':
		return e.receiver
	case 't':
		return strconv.FormatInt(e.now, 10)
	}
	return ""
}

// dottedIP is the "i" macro: dotted quad, or for IPv6 the 32 nibbles in
// upper case separated by dots (RFC 7208 7.3).
func dottedIP(ip net.IP) string {
	if v4 := ip.To4(); v4 != nil {
		return v4.String()
	}
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i, c := range ip.To16() {
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteByte(hex[c>>4])
		b.WriteByte('.')
		b.WriteByte(hex[c&0xf])
	}
	return b.String()
}

// expand expands tokens (RFC 7208 7.3).
func (e *macroEnv) expand(toks []macroToken) string {
	var b strings.Builder
	for _, t := range toks {
		if t.letter == 0 {
			b.WriteString(t.literal)
			continue
		}
		v := e.value(t.letter)
		if t.digits > 0 || t.reverse || t.delims != "." {
			parts := strings.FieldsFunc(v, func(r rune) bool { return strings.ContainsRune(t.delims, r) })
			if t.reverse {
				for i, j := 0, len(parts)-1; i < j; i, j = i+1, j-1 {
					parts[i], parts[j] = parts[j], parts[i]
				}
			}
			if t.digits > 0 && t.digits < len(parts) {
				parts = parts[len(parts)-t.digits:]
			}
			v = strings.Join(parts, ".")
		}
		if t.upper {
			v = urlEscape(v)
		}
		b.WriteString(v)
	}
	return b.String()
}

// urlEscape escapes everything but RFC 3986 unreserved characters.
func urlEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if isAlpha(c) || isDigit(c) || c == '-' || c == '.' || c == '_' || c == '~' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}
