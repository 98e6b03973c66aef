// Package spf evaluates Sender Policy Framework records (RFC 7208).
package spf

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/posthorn/posthorn/internal/dns"
)

// Result is the outcome of check_host() (RFC 7208 2.6).
type Result string

// The results.
const (
	None      Result = "none"
	Neutral   Result = "neutral"
	Pass      Result = "pass"
	Fail      Result = "fail"
	SoftFail  Result = "softfail"
	TempError Result = "temperror"
	PermError Result = "permerror"
)

// Limits of RFC 7208 4.6.4.
const (
	maxLookups     = 10 // DNS-querying terms per check
	maxVoidLookups = 2  // lookups answered NXDOMAIN or empty
	maxMXNames     = 10 // MX names one mx mechanism may look up
	maxPTRNames    = 10 // PTR names one ptr mechanism or %{p} looks at
	maxDomainLen   = 253
)

// DefaultExplanation is the explanation of a fail when the record gives
// none (RFC 7208 6.2); it is a macro-string.
const DefaultExplanation = "%{i} is not one of %{d}'s designated mail senders"

// Options are what Check needs besides the identity being checked.
type Options struct {
	// Resolver answers the DNS questions; required.
	Resolver dns.Resolver
	// Now gives %{t} in explanations; time.Now when nil.
	Now func() time.Time
	// Receiver is our own domain, %{r} in explanations; "unknown" when empty.
	Receiver string
	// DefaultExplanation replaces the package's DefaultExplanation.
	DefaultExplanation string
}

// Check runs check_host() (RFC 7208 4) for a client at ip that said
// mailFrom ("local@domain", or "" for the null reverse-path) and helo.
// With an empty mailFrom the HELO identity is checked, as
// postmaster@helo (RFC 7208 2.4).
//
// The explanation is set only for Fail: the record's exp= text, or the
// default. err says why for TempError and PermError and is nil otherwise.
func Check(ctx context.Context, opts Options, ip net.IP, mailFrom, helo string) (Result, string, error) {
	if ip == nil {
		return PermError, "", errors.New("spf: no client IP address")
	}
	if v4 := ip.To4(); v4 != nil {
		ip = v4 // RFC 7208 5: an IPv4-mapped IPv6 address is IPv4
	}
	local, domain := "postmaster", helo
	if mailFrom != "" {
		i := strings.LastIndexByte(mailFrom, '@')
		if i < 0 {
			domain = mailFrom
		} else {
			domain = mailFrom[i+1:]
			if i > 0 {
				local = mailFrom[:i]
			}
		}
	}
	c := &checker{
		ctx: ctx, opts: opts, ip: ip,
		env: macroEnv{
			sender: local + "@" + domain, local: local, domain: domain,
			ip: ip, helo: helo, receiver: opts.Receiver,
		},
	}
	if c.env.receiver == "" {
		c.env.receiver = "unknown"
	}
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	c.env.now = now().Unix()
	c.env.ptr = c.validatedName
	// RFC 7208 4.3: a malformed domain gives none without any lookup.
	if !validDomain(domain) {
		return None, "", nil
	}
	res, exp, err := c.checkHost(domain, 0)
	if res != Fail {
		exp = ""
	}
	return res, exp, err
}

// checker is one evaluation of check_host(), with the counters that span
// include and redirect.
type checker struct {
	ctx     context.Context
	opts    Options
	ip      net.IP
	env     macroEnv
	lookups int
	voids   int
}

// maxDepth bounds include/redirect nesting; the lookup limit ends any real
// loop first.
const maxDepth = 20

type resultError struct {
	res Result
	err error
}

func (e *resultError) Error() string { return e.err.Error() }
func (e *resultError) Unwrap() error { return e.err }

func permErr(format string, args ...any) error {
	return &resultError{PermError, fmt.Errorf("spf: "+format, args...)}
}

func tempErr(err error) error {
	return &resultError{TempError, fmt.Errorf("spf: %w", err)}
}

// asResult turns an error from the evaluation into its result.
func asResult(err error) (Result, string, error) {
	var re *resultError
	if errors.As(err, &re) {
		return re.res, "", err
	}
	return PermError, "", err
}

// validDomain checks the form of a domain to check (RFC 7208 4.3): at
// least two labels, none empty or over 63 octets, not a domain literal.
func validDomain(d string) bool {
	d = strings.TrimSuffix(d, ".")
	if d == "" || len(d) > maxDomainLen || strings.HasPrefix(d, "[") {
		return false
	}
	labels := strings.Split(d, ".")
	if len(labels) < 2 {
		return false
	}
	for _, l := range labels {
		if l == "" || len(l) > 63 {
			return false
		}
	}
	return true
}

// fetchRecord returns the one SPF record of domain, or a result that ends
// the check: None for no record, TempError, PermError for several.
func (c *checker) fetchRecord(domain string) (string, Result, error) {
	txts, _, err := c.opts.Resolver.LookupTXT(c.ctx, domain)
	if err != nil {
		if dns.IsNotFound(err) {
			return "", None, nil
		}
		if dns.IsTemporary(err) {
			return "", TempError, fmt.Errorf("spf: looking up %s: %w", domain, err)
		}
		// An error that is neither, such as a name the resolver refuses.
		return "", None, nil
	}
	var found []string
	for _, t := range txts {
		if IsSPFRecord(t) {
			found = append(found, t)
		}
	}
	switch len(found) {
	case 0:
		return "", None, nil
	case 1:
		return found[0], "", nil
	}
	return "", PermError, fmt.Errorf("spf: %s has %d SPF records", domain, len(found))
}

// checkHost is check_host() for one domain (RFC 7208 4). The explanation
// returned is that of the record that decided a Fail.
func (c *checker) checkHost(domain string, depth int) (Result, string, error) {
	if depth > maxDepth {
		return PermError, "", errors.New("spf: include/redirect nested too deep")
	}
	txt, res, err := c.fetchRecord(domain)
	if res != "" {
		return res, "", err
	}
	rec, err := Parse(txt)
	if err != nil {
		return PermError, "", fmt.Errorf("spf: %s: %w", domain, err)
	}
	env := c.env
	env.current = strings.TrimSuffix(domain, ".")

	for _, m := range rec.Mechanisms {
		if m.queriesDNS() {
			c.lookups++
			if c.lookups > maxLookups {
				return PermError, "", fmt.Errorf("spf: more than %d DNS-querying terms", maxLookups)
			}
		}
		match, err := c.matches(m, &env, depth)
		if err != nil {
			return asResult(err)
		}
		if !match {
			continue
		}
		r := m.Qualifier.Result()
		if r != Fail {
			return r, "", nil
		}
		return Fail, c.explain(rec, &env), nil
	}

	if rec.Redirect != "" {
		// RFC 7208 6.1; a record with "all" never gets here.
		c.lookups++
		if c.lookups > maxLookups {
			return PermError, "", fmt.Errorf("spf: more than %d DNS-querying terms", maxLookups)
		}
		target, err := c.targetName(rec.Redirect, &env)
		if err != nil {
			return asResult(err)
		}
		if !validDomain(target) {
			return PermError, "", fmt.Errorf("spf: redirect to malformed domain %q", target)
		}
		r, exp, err := c.checkHost(target, depth+1)
		if r == None {
			return PermError, "", fmt.Errorf("spf: redirect to %s, which has no SPF record", target)
		}
		return r, exp, err
	}
	return Neutral, "", nil
}

// targetName expands a domain-spec and shortens it to 253 octets by
// dropping labels from the left (RFC 7208 7.3).
func (c *checker) targetName(spec string, env *macroEnv) (string, error) {
	toks, err := parseMacroString(spec, false)
	if err != nil {
		return "", permErr("%v", err)
	}
	name := strings.TrimSuffix(env.expand(toks), ".")
	for len(name) > maxDomainLen {
		i := strings.IndexByte(name, '.')
		if i < 0 {
			break
		}
		name = name[i+1:]
	}
	for _, l := range strings.Split(name, ".") {
		if l == "" || len(l) > 63 {
			return "", permErr("%q expands to malformed domain %q", spec, name)
		}
	}
	return name, nil
}

// domainOf is the target of a, mx, ptr: its domain-spec or the current domain.
func (c *checker) domainOf(m Mechanism, env *macroEnv) (string, error) {
	if m.DomainSpec == "" {
		return env.current, nil
	}
	return c.targetName(m.DomainSpec, env)
}

// void counts a lookup that found nothing (RFC 7208 4.6.4).
func (c *checker) void() error {
	c.voids++
	if c.voids > maxVoidLookups {
		return permErr("more than %d void lookups", maxVoidLookups)
	}
	return nil
}

// lookupErr turns a DNS error of a mechanism into no match (not found,
// counted as void), or temperror.
func (c *checker) lookupErr(err error) error {
	if dns.IsTemporary(err) {
		return tempErr(err)
	}
	return c.void()
}

func (c *checker) matches(m Mechanism, env *macroEnv, depth int) (bool, error) {
	switch m.Name {
	case "all":
		return true, nil
	case "ip4", "ip6":
		return m.Net.Contains(c.ip) && (len(m.Net.IP) == net.IPv4len) == (c.ip.To4() != nil), nil
	case "a":
		name, err := c.domainOf(m, env)
		if err != nil {
			return false, err
		}
		ips, err := c.addrs(name)
		if err != nil {
			return false, c.lookupErr(err)
		}
		return c.inAny(ips, m.CIDR4, m.CIDR6), nil
	case "mx":
		name, err := c.domainOf(m, env)
		if err != nil {
			return false, err
		}
		mxs, _, err := c.opts.Resolver.LookupMX(c.ctx, name)
		if err != nil {
			return false, c.lookupErr(err)
		}
		if len(mxs) > maxMXNames {
			return false, permErr("%s has more than %d MX records", name, maxMXNames)
		}
		for _, mx := range mxs {
			host := strings.TrimSuffix(mx.Host, ".")
			if host == "" {
				continue // null MX (RFC 7505)
			}
			ips, err := c.addrs(host)
			if err != nil {
				if dns.IsTemporary(err) {
					return false, tempErr(err)
				}
				continue
			}
			if c.inAny(ips, m.CIDR4, m.CIDR6) {
				return true, nil
			}
		}
		return false, nil
	case "ptr":
		target, err := c.domainOf(m, env)
		if err != nil {
			return false, err
		}
		names, err := c.validatedNames(true)
		if err != nil {
			return false, err
		}
		for _, n := range names {
			if isSubdomain(n, target) {
				return true, nil
			}
		}
		return false, nil
	case "exists":
		name, err := c.targetName(m.DomainSpec, env)
		if err != nil {
			return false, err
		}
		// RFC 7208 5.7: always an A query, whatever the client's family.
		ips, _, err := c.opts.Resolver.LookupIP(c.ctx, "ip4", name)
		if err != nil {
			return false, c.lookupErr(err)
		}
		return len(ips) > 0, nil
	case "include":
		target, err := c.targetName(m.DomainSpec, env)
		if err != nil {
			return false, err
		}
		if !validDomain(target) {
			return false, permErr("include of malformed domain %q", target)
		}
		// RFC 7208 5.2: the included record's explanation is not used.
		r, _, err := c.checkHost(target, depth+1)
		switch r {
		case Pass:
			return true, nil
		case Fail, SoftFail, Neutral:
			return false, nil
		case TempError:
			return false, &resultError{TempError, err}
		case None:
			return false, permErr("include:%s has no SPF record", target)
		}
		if err == nil {
			err = errors.New("spf: include failed")
		}
		return false, &resultError{PermError, err}
	}
	return false, permErr("unknown mechanism %q", m.Name)
}

// addrs looks up the addresses of name in the client's family.
func (c *checker) addrs(name string) ([]net.IP, error) {
	network := "ip6"
	if c.ip.To4() != nil {
		network = "ip4"
	}
	ips, _, err := c.opts.Resolver.LookupIP(c.ctx, network, name)
	if err == nil && len(ips) == 0 {
		err = dns.NoDataError(name, "")
	}
	return ips, err
}

// inAny reports whether the client is in one of ips widened to the prefix.
func (c *checker) inAny(ips []net.IP, cidr4, cidr6 int) bool {
	for _, ip := range ips {
		var n net.IPNet
		if v4 := ip.To4(); v4 != nil {
			if c.ip.To4() == nil {
				continue
			}
			n = net.IPNet{IP: v4, Mask: net.CIDRMask(cidr4, 32)}
		} else {
			if c.ip.To4() != nil {
				continue
			}
			n = net.IPNet{IP: ip, Mask: net.CIDRMask(cidr6, 128)}
		}
		if n.Contains(c.ip) {
			return true
		}
	}
	return false
}

// validatedNames returns the client's PTR names whose addresses include
// it (RFC 7208 5.5), looking at no more than 10 names. For the ptr
// mechanism (countVoid) an empty PTR answer is a void lookup.
func (c *checker) validatedNames(countVoid bool) ([]string, error) {
	names, _, err := c.opts.Resolver.LookupAddr(c.ctx, c.ip.String())
	if err != nil {
		if countVoid && dns.IsNotFound(err) {
			return nil, c.void()
		}
		return nil, nil // RFC 7208 5.5: a DNS error means no match
	}
	if len(names) > maxPTRNames {
		names = names[:maxPTRNames]
	}
	var ok []string
	for _, n := range names {
		n = strings.TrimSuffix(n, ".")
		ips, err := c.addrs(n)
		if err != nil {
			continue // RFC 7208 5.5: skip names whose lookup fails
		}
		for _, ip := range ips {
			if ip.Equal(c.ip) {
				ok = append(ok, n)
				break
			}
		}
	}
	return ok, nil
}

// validatedName is the %{p} macro (RFC 7208 7.3): a validated name of the
// client, preferring the current domain and then its subdomains.
func (c *checker) validatedName(d string) string {
	names, _ := c.validatedNames(false)
	best := ""
	for _, n := range names {
		switch {
		case strings.EqualFold(n, d):
			return n
		case best == "" && isSubdomain(n, d):
			best = n
		}
	}
	if best == "" && len(names) > 0 {
		best = names[0]
	}
	if best == "" {
		return "unknown"
	}
	return best
}

func isSubdomain(name, domain string) bool {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	return name == domain || strings.HasSuffix(name, "."+domain)
}

// explain computes the explanation of a fail (RFC 7208 6.2): any problem
// with exp= gives the default explanation rather than an error.
func (c *checker) explain(rec *Record, env *macroEnv) string {
	def := c.opts.DefaultExplanation
	if def == "" {
		def = DefaultExplanation
	}
	fallback := def
	if toks, err := parseMacroString(def, true); err == nil {
		fallback = env.expand(toks)
	}
	if rec.Exp == "" {
		return fallback
	}
	name, err := c.targetName(rec.Exp, env)
	if err != nil {
		return fallback
	}
	txts, _, err := c.opts.Resolver.LookupTXT(c.ctx, name)
	if err != nil || len(txts) != 1 {
		return fallback
	}
	toks, err := parseMacroString(txts[0], true)
	if err != nil {
		return fallback
	}
	return env.expand(toks)
}
