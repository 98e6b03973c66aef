package spf

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
)

// Qualifier is a directive's result when its mechanism matches (RFC 7208 4.6.2).
type Qualifier byte

// The qualifiers.
const (
	QPass     Qualifier = '+'
	QFail     Qualifier = '-'
	QSoftFail Qualifier = '~'
	QNeutral  Qualifier = '?'
)

// Result returns the check_host() result the qualifier stands for.
func (q Qualifier) Result() Result {
	switch q {
	case QFail:
		return Fail
	case QSoftFail:
		return SoftFail
	case QNeutral:
		return Neutral
	}
	return Pass
}

// Mechanism is one directive of a record (RFC 7208 5).
type Mechanism struct {
	Qualifier Qualifier
	// Name is the mechanism in lower case: all, include, a, mx, ptr, ip4,
	// ip6 or exists.
	Name string
	// DomainSpec is the macro-string target of include, a, mx, ptr and
	// exists; empty when the mechanism uses the current domain.
	DomainSpec string
	// Net is the network of ip4 and ip6.
	Net *net.IPNet
	// CIDR4 and CIDR6 are the prefix lengths of a and mx (RFC 7208 5.6);
	// 32 and 128 when not given.
	CIDR4, CIDR6 int
}

// String returns the mechanism as it would be written in a record.
func (m Mechanism) String() string {
	var b strings.Builder
	if m.Qualifier != QPass {
		b.WriteByte(byte(m.Qualifier))
	}
	b.WriteString(m.Name)
	switch m.Name {
	case "ip4", "ip6":
		ones, _ := m.Net.Mask.Size()
		addr := m.Net.IP.String()
		if m.Name == "ip6" && m.Net.IP.To4() != nil {
			addr = "::ffff:" + addr // net.IP prints a mapped address as IPv4
		}
		fmt.Fprintf(&b, ":%s/%d", addr, ones)
	default:
		if m.DomainSpec != "" {
			b.WriteString(":" + m.DomainSpec)
		}
		if m.Name == "a" || m.Name == "mx" {
			if m.CIDR4 != 32 {
				fmt.Fprintf(&b, "/%d", m.CIDR4)
			}
			if m.CIDR6 != 128 {
				fmt.Fprintf(&b, "//%d", m.CIDR6)
			}
		}
	}
	return b.String()
}

// queriesDNS reports whether the mechanism counts against the limit of 10
// DNS-querying terms (RFC 7208 4.6.4).
func (m Mechanism) queriesDNS() bool {
	switch m.Name {
	case "include", "a", "mx", "ptr", "exists":
		return true
	}
	return false
}

// Modifier is a name=value term (RFC 7208 6) other than redirect and exp.
type Modifier struct {
	Name  string
	Value string
}

// Record is a parsed SPF record.
type Record struct {
	Mechanisms []Mechanism
	// Redirect and Exp are the domain-specs of the redirect= and exp=
	// modifiers, empty when absent.
	Redirect string
	Exp      string
	// Modifiers are the unknown modifiers, kept but ignored (RFC 7208 6).
	Modifiers []Modifier
}

// SyntaxError is the error of a record that does not parse; check_host()
// turns it into permerror (RFC 7208 4.6).
type SyntaxError struct {
	Term string
	Msg  string
}

func (e *SyntaxError) Error() string {
	if e.Term == "" {
		return "spf: " + e.Msg
	}
	return fmt.Sprintf("spf: term %q: %s", e.Term, e.Msg)
}

// IsSPFRecord reports whether a TXT record is an SPF version 1 record:
// "v=spf1" alone or followed by a space, case-insensitively (RFC 7208 4.5).
func IsSPFRecord(txt string) bool {
	if len(txt) < 6 || !strings.EqualFold(txt[:6], "v=spf1") {
		return false
	}
	return len(txt) == 6 || txt[6] == ' '
}

// Parse parses an SPF record (RFC 7208 4.6.1 and 12). Every term is
// checked, so an error after a term that would match is still an error.
func Parse(txt string) (*Record, error) {
	if !IsSPFRecord(txt) {
		return nil, &SyntaxError{Msg: "record does not start with v=spf1"}
	}
	rec := &Record{}
	seenRedirect, seenExp := false, false
	// Terms are separated by spaces only (RFC 7208 4.6.1); any other
	// control character makes its term invalid.
	for _, term := range strings.Split(txt[6:], " ") {
		if term == "" {
			continue
		}
		for i := 0; i < len(term); i++ {
			if term[i] < 0x21 || term[i] > 0x7e {
				return nil, &SyntaxError{Term: term, Msg: "character outside printable US-ASCII"}
			}
		}
		if name, value, ok := splitModifier(term); ok {
			if name == "" {
				return nil, &SyntaxError{Term: term, Msg: "modifier without a name"}
			}
			switch strings.ToLower(name) {
			case "redirect":
				if seenRedirect {
					return nil, &SyntaxError{Term: term, Msg: "redirect= given twice"}
				}
				seenRedirect = true
				if err := checkDomainSpec(value); err != nil {
					return nil, &SyntaxError{Term: term, Msg: err.Error()}
				}
				rec.Redirect = value
			case "exp":
				if seenExp {
					return nil, &SyntaxError{Term: term, Msg: "exp= given twice"}
				}
				seenExp = true
				if err := checkDomainSpec(value); err != nil {
					return nil, &SyntaxError{Term: term, Msg: err.Error()}
				}
				rec.Exp = value
			default:
				if _, err := parseMacroString(value, false); err != nil {
					return nil, &SyntaxError{Term: term, Msg: err.Error()}
				}
				rec.Modifiers = append(rec.Modifiers, Modifier{Name: name, Value: value})
			}
			continue
		}
		m, err := parseDirective(term)
		if err != nil {
			return nil, &SyntaxError{Term: term, Msg: err.Error()}
		}
		rec.Mechanisms = append(rec.Mechanisms, m)
	}
	return rec, nil
}

// splitModifier splits "name=value" when the part before the first "=" can
// only be a modifier name: name = ALPHA *( ALPHA / DIGIT / "-" / "_" / "." ).
// A term whose first "=" follows a ":" or "/" is a directive.
func splitModifier(term string) (name, value string, ok bool) {
	i := strings.IndexByte(term, '=')
	if i < 0 {
		return "", "", false
	}
	name = term[:i]
	if strings.ContainsAny(name, ":/") {
		return "", "", false
	}
	if name == "" {
		return "", term[1:], true
	}
	if !isAlpha(name[0]) {
		// Not a name, so this is neither a modifier nor a mechanism;
		// parseDirective reports it.
		return "", "", false
	}
	for i := 1; i < len(name); i++ {
		c := name[i]
		if !isAlpha(c) && !isDigit(c) && c != '-' && c != '_' && c != '.' {
			return "", "", false
		}
	}
	return name, term[i+1:], true
}

func isAlpha(c byte) bool { return 'a' <= c|0x20 && c|0x20 <= 'z' }
func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func parseDirective(term string) (Mechanism, error) {
	m := Mechanism{Qualifier: QPass, CIDR4: 32, CIDR6: 128}
	switch term[0] {
	case '+', '-', '~', '?':
		m.Qualifier = Qualifier(term[0])
		term = term[1:]
	}
	name, arg := term, ""
	hasArg := false
	if i := strings.IndexAny(term, ":/"); i >= 0 {
		name, arg = term[:i], term[i:]
		hasArg = true
	}
	m.Name = strings.ToLower(name)
	switch m.Name {
	case "all":
		if hasArg {
			return m, errors.New("all takes no argument")
		}
	case "include", "exists":
		if !strings.HasPrefix(arg, ":") {
			return m, fmt.Errorf("%s needs :domain", m.Name)
		}
		m.DomainSpec = arg[1:]
		if err := checkDomainSpec(m.DomainSpec); err != nil {
			return m, err
		}
	case "ptr":
		if hasArg {
			if !strings.HasPrefix(arg, ":") {
				return m, errors.New("ptr takes no prefix length")
			}
			m.DomainSpec = arg[1:]
			if err := checkDomainSpec(m.DomainSpec); err != nil {
				return m, err
			}
		}
	case "a", "mx":
		spec, c4, c6, err := splitDualCIDR(arg)
		if err != nil {
			return m, err
		}
		m.CIDR4, m.CIDR6 = c4, c6
		if strings.HasPrefix(spec, ":") {
			m.DomainSpec = spec[1:]
			if err := checkDomainSpec(m.DomainSpec); err != nil {
				return m, err
			}
		} else if spec != "" {
			return m, errors.New("unexpected text after mechanism name")
		}
	case "ip4", "ip6":
		if !strings.HasPrefix(arg, ":") {
			return m, fmt.Errorf("%s needs :address", m.Name)
		}
		n, err := parseIPNet(m.Name, arg[1:])
		if err != nil {
			return m, err
		}
		m.Net = n
	default:
		return m, errors.New("unknown mechanism")
	}
	return m, nil
}

// splitDualCIDR takes ":domain/24//64" (any part optional) apart
// (RFC 7208 5.6, dual-cidr-length).
func splitDualCIDR(arg string) (rest string, c4, c6 int, err error) {
	c4, c6 = 32, 128
	// A "/" followed by anything but digits belongs to the domain-spec,
	// where "/" is a macro-literal (RFC 7208 7.1).
	if i := strings.Index(arg, "//"); i >= 0 && allDigits(arg[i+2:]) {
		c6, err = parseCIDR(arg[i+2:], 128)
		if err != nil {
			return "", 0, 0, err
		}
		arg = arg[:i]
	}
	if i := strings.LastIndexByte(arg, '/'); i >= 0 && allDigits(arg[i+1:]) {
		c4, err = parseCIDR(arg[i+1:], 32)
		if err != nil {
			return "", 0, 0, err
		}
		arg = arg[:i]
	}
	return arg, c4, c6, nil
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return true
}

// parseCIDR parses a prefix length: "0" or a number without leading zero,
// at most max (RFC 7208 12, ip4-cidr-length and ip6-cidr-length).
func parseCIDR(s string, max int) (int, error) {
	if s == "" || len(s) > 3 || (len(s) > 1 && s[0] == '0') {
		return 0, fmt.Errorf("bad prefix length %q", s)
	}
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return 0, fmt.Errorf("bad prefix length %q", s)
		}
	}
	n, _ := strconv.Atoi(s)
	if n > max {
		return 0, fmt.Errorf("prefix length %d over %d", n, max)
	}
	return n, nil
}

func parseIPNet(kind, s string) (*net.IPNet, error) {
	addr, bits := s, -1
	max := 32
	if kind == "ip6" {
		max = 128
	}
	if i := strings.IndexByte(s, '/'); i >= 0 {
		n, err := parseCIDR(s[i+1:], max)
		if err != nil {
			return nil, err
		}
		addr, bits = s[:i], n
	}
	if bits < 0 {
		bits = max
	}
	var ip net.IP
	if kind == "ip4" {
		ip = parseIPv4(addr)
		if ip == nil {
			return nil, fmt.Errorf("bad IPv4 address %q", addr)
		}
	} else {
		ip = net.ParseIP(addr)
		if ip == nil || !strings.Contains(addr, ":") {
			return nil, fmt.Errorf("bad IPv6 address %q", addr)
		}
		ip = ip.To16()
	}
	mask := net.CIDRMask(bits, max)
	return &net.IPNet{IP: ip.Mask(mask), Mask: mask}, nil
}

// parseIPv4 accepts only the dotted-quad form (RFC 7208 12, ip4-network).
func parseIPv4(s string) net.IP {
	parts := strings.Split(s, ".")
	if len(parts) != 4 {
		return nil
	}
	for _, p := range parts {
		if p == "" || len(p) > 3 {
			return nil
		}
		for i := 0; i < len(p); i++ {
			if !isDigit(p[i]) {
				return nil
			}
		}
		if n, _ := strconv.Atoi(p); n > 255 {
			return nil
		}
	}
	return net.ParseIP(s).To4()
}

// checkDomainSpec checks domain-spec = macro-string domain-end, where
// domain-end is "." toplabel ["."] or a macro-expand (RFC 7208 7.1).
func checkDomainSpec(spec string) error {
	if spec == "" {
		return errors.New("empty domain")
	}
	toks, err := parseMacroString(spec, false)
	if err != nil {
		return err
	}
	last := toks[len(toks)-1]
	if last.expand {
		return nil
	}
	lit := last.literal
	// The literal text after the last macro must hold "." toplabel ["."].
	lit = strings.TrimSuffix(lit, ".")
	i := strings.LastIndexByte(lit, '.')
	if i < 0 {
		return fmt.Errorf("domain %q does not end in .toplabel", spec)
	}
	if !isTopLabel(lit[i+1:]) {
		return fmt.Errorf("domain %q has a bad top label %q", spec, lit[i+1:])
	}
	return nil
}

// isTopLabel: toplabel = ( *alphanum ALPHA *alphanum ) /
// ( 1*alphanum "-" *( alphanum / "-" ) alphanum ) (RFC 7208 7.1).
func isTopLabel(s string) bool {
	if s == "" {
		return false
	}
	alpha := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case isAlpha(c):
			alpha = true
		case isDigit(c):
		case c == '-':
			if i == 0 || i == len(s)-1 {
				return false
			}
			alpha = true // the second form: a hyphen inside is enough
		default:
			return false
		}
	}
	return alpha
}

// String returns the record in its canonical form: "v=spf1", the
// mechanisms, then redirect=, exp= and the unknown modifiers.
func (r *Record) String() string {
	var b strings.Builder
	b.WriteString("v=spf1")
	for _, m := range r.Mechanisms {
		b.WriteString(" " + m.String())
	}
	if r.Redirect != "" {
		b.WriteString(" redirect=" + r.Redirect)
	}
	if r.Exp != "" {
		b.WriteString(" exp=" + r.Exp)
	}
	for _, m := range r.Modifiers {
		b.WriteString(" " + m.Name + "=" + m.Value)
	}
	return b.String()
}
