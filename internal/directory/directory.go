// Package directory maps a recipient address to local mailboxes and forwarding addresses.
package directory

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

// Errors from Resolve. They are wrapped with context; test with errors.Is.
var (
	// ErrUnknownUser: the domain is local but nothing receives mail for
	// this address (550 5.1.1 at RCPT time).
	ErrUnknownUser = errors.New("no such user")
	// ErrNotLocal: the domain is not one of ours.
	ErrNotLocal = errors.New("not a local domain")
	// ErrBadAddress: the address cannot be a mailbox here: malformed, or a
	// local part that cannot be a directory name (550 5.1.3).
	ErrBadAddress = errors.New("bad address")
	// ErrAliasDepth: aliases nest deeper than MaxAliasDepth, a configuration
	// error (answer with 4xx and tell the administrator).
	ErrAliasDepth = errors.New("aliases nested too deep")
)

// MaxAliasDepth bounds alias-to-alias expansion.
const MaxAliasDepth = 16

// Domain is one local domain.
type Domain struct {
	Name      string   // U-labels or A-labels, any case
	AcceptAny bool     // every local part has its own mailbox
	CatchAll  string   // local part (or whole address) for unknown users; "" = none
	Mailboxes []string // local parts that exist besides accounts and aliases
	Delivery  string   // copied into each Mailbox, e.g. "maildir"
}

// Options configure a Directory.
type Options struct {
	Domains []Domain
	// Aliases maps an address to the addresses that receive its mail,
	// local or remote.
	Aliases map[string][]string
	// SubaddressDelimiter: each character splits user+tag; "" = off.
	SubaddressDelimiter string
	// UserExists reports whether an account exists for a normalised
	// address (lowercased local part, A-label domain). May be nil.
	UserExists func(addr string) bool
}

// Mailbox is a local destination.
type Mailbox struct {
	Domain    string // lowercased A-label form
	LocalPart string // base local part, lowercased: safe as a directory name
	Delivery  string
}

// Address returns LocalPart@Domain.
func (m Mailbox) Address() string { return m.LocalPart + "@" + m.Domain }

// Result is where mail for one address goes.
type Result struct {
	Local   []Mailbox // deduplicated, in expansion order
	Forward []string  // remote addresses from aliases, domain lowercased
	// Unknown lists alias targets in local domains that did not resolve;
	// the rest of the alias still gets the mail. Worth a log line.
	Unknown []string
}

// Directory answers address lookups. It is safe for concurrent use; it
// does not change after New (accounts are asked for through UserExists).
type Directory struct {
	domains    map[string]*domain
	primary    string
	aliases    map[string][]string
	delimiters string
	userExists func(string) bool
}

type domain struct {
	Domain
	name      string
	mailboxes map[string]bool
}

// New builds a Directory, normalising names. It fails on a malformed
// domain, alias or mailbox name.
func New(o Options) (*Directory, error) {
	d := &Directory{
		domains:    map[string]*domain{},
		aliases:    map[string][]string{},
		delimiters: o.SubaddressDelimiter,
		userExists: o.UserExists,
	}
	for _, od := range o.Domains {
		name, err := NormalizeDomain(od.Name)
		if err != nil {
			return nil, fmt.Errorf("directory: domain %q: %w", od.Name, err)
		}
		if _, dup := d.domains[name]; dup {
			return nil, fmt.Errorf("directory: domain %q listed twice", od.Name)
		}
		dom := &domain{Domain: od, name: name, mailboxes: map[string]bool{}}
		for _, m := range od.Mailboxes {
			lm := strings.ToLower(m)
			if err := checkMailboxName(lm); err != nil {
				return nil, fmt.Errorf("directory: domain %q: mailbox %q: %w", od.Name, m, err)
			}
			dom.mailboxes[lm] = true
		}
		if od.CatchAll != "" && !strings.Contains(od.CatchAll, "@") {
			if err := checkMailboxName(strings.ToLower(od.CatchAll)); err != nil {
				return nil, fmt.Errorf("directory: domain %q: catch-all %q: %w", od.Name, od.CatchAll, err)
			}
		}
		d.domains[name] = dom
		if d.primary == "" {
			d.primary = name
		}
	}
	for k, targets := range o.Aliases {
		nk, err := normalizeAddress(k)
		if err != nil {
			return nil, fmt.Errorf("directory: alias %q: %w", k, err)
		}
		for _, t := range targets {
			if _, err := normalizeAddress(t); err != nil {
				return nil, fmt.Errorf("directory: alias %q: target %q: %w", k, t, err)
			}
		}
		d.aliases[nk] = append(d.aliases[nk], targets...)
	}
	return d, nil
}

// IsLocalDomain reports whether mail for domain is delivered here.
func (d *Directory) IsLocalDomain(domain string) bool {
	n, err := NormalizeDomain(domain)
	if err != nil {
		return false
	}
	_, ok := d.domains[n]
	return ok
}

// Domains returns the local domain names in A-label form, sorted.
func (d *Directory) Domains() []string {
	out := make([]string, 0, len(d.domains))
	for n := range d.domains {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Resolve finds where mail for addr goes. Order for an address in a local
// domain: an alias on the full address, an account or mailbox of that
// name, an alias on the base address (without the subaddress), an account
// or mailbox of the base name, accept_any, the catch-all, and for
// postmaster its own mailbox (RFC 5321 4.5.1: postmaster always works).
// A bare "postmaster" (RFC 5321 4.1.1.3) is postmaster at the first domain.
func (d *Directory) Resolve(addr string) (Result, error) {
	if strings.EqualFold(addr, "postmaster") && d.primary != "" {
		addr = "postmaster@" + d.primary
	}
	local, dom, err := split(addr)
	if err != nil {
		return Result{}, fmt.Errorf("%w: %v", ErrBadAddress, err)
	}
	if _, ok := d.domains[dom]; !ok {
		return Result{}, fmt.Errorf("%s: %w", dom, ErrNotLocal)
	}
	x := &expansion{d: d, done: map[string]bool{}, onPath: map[string]bool{}}
	found, err := x.expand(local, dom, 0)
	if err != nil {
		return Result{}, err
	}
	if !found {
		return Result{}, fmt.Errorf("%s@%s: %w", local, dom, ErrUnknownUser)
	}
	return x.res, nil
}

type expansion struct {
	d      *Directory
	res    Result
	done   map[string]bool // address -> found, for addresses already expanded
	onPath map[string]bool // addresses being expanded: a loop if met again
	seen   map[string]bool // result entries, for deduplication
}

func (x *expansion) add(key string) bool {
	if x.seen == nil {
		x.seen = map[string]bool{}
	}
	if x.seen[key] {
		return false
	}
	x.seen[key] = true
	return true
}

func (x *expansion) unknown(a string) {
	if x.add("u:" + strings.ToLower(a)) {
		x.res.Unknown = append(x.res.Unknown, a)
	}
}

// expand resolves local@dom (dom normalised, local as given) into x.res.
// It reports whether anything receives the mail.
func (x *expansion) expand(local, dom string, depth int) (bool, error) {
	if depth > MaxAliasDepth {
		return false, fmt.Errorf("%s@%s: %w (more than %d levels)", local, dom, ErrAliasDepth, MaxAliasDepth)
	}
	dm, ok := x.d.domains[dom]
	if !ok {
		a := local + "@" + dom // a remote local part keeps its case (RFC 5321 2.4)
		if x.add("f:" + strings.ToLower(a)) {
			x.res.Forward = append(x.res.Forward, a)
		}
		return true, nil
	}
	lower := strings.ToLower(local)
	key := lower + "@" + dom
	if x.onPath[key] {
		// An alias that includes itself, directly or through others,
		// means "and my own mailbox too" (as in Postfix), not a loop.
		return x.own(dm, lower)
	}
	if found, ok := x.done[key]; ok {
		return found, nil
	}
	x.onPath[key] = true
	found, err := x.lookup(dm, lower, depth)
	delete(x.onPath, key)
	x.done[key] = found
	return found, err
}

func (x *expansion) lookup(dm *domain, lower string, depth int) (bool, error) {
	if t, ok := x.d.aliases[lower+"@"+dm.name]; ok {
		return x.targets(t, depth)
	}
	if x.d.exists(dm, lower) {
		return x.mailbox(dm, lower)
	}
	base := x.d.base(lower)
	if base != lower {
		if t, ok := x.d.aliases[base+"@"+dm.name]; ok {
			return x.targets(t, depth)
		}
		if x.d.exists(dm, base) {
			return x.mailbox(dm, base)
		}
	}
	if dm.AcceptAny {
		return x.mailbox(dm, base)
	}
	if dm.CatchAll != "" {
		return x.catchAll(dm, depth)
	}
	if base == "postmaster" {
		return x.mailbox(dm, base)
	}
	return false, nil
}

// own resolves an address without aliases and without the catch-all: its
// own mailbox, if it has one.
func (x *expansion) own(dm *domain, lower string) (bool, error) {
	base := x.d.base(lower)
	switch {
	case x.d.exists(dm, lower):
		return x.mailbox(dm, lower)
	case x.d.exists(dm, base), dm.AcceptAny, base == "postmaster":
		return x.mailbox(dm, base)
	}
	return false, nil
}

// catchAll delivers to the domain's catch-all: an address (which may be an
// alias, or remote) or a local part that is a mailbox by declaration.
func (x *expansion) catchAll(dm *domain, depth int) (bool, error) {
	if strings.Contains(dm.CatchAll, "@") {
		l, dom, err := split(dm.CatchAll)
		if err != nil {
			return false, fmt.Errorf("catch-all of %s: %w: %v", dm.name, ErrBadAddress, err)
		}
		return x.expand(l, dom, depth+1)
	}
	ca := strings.ToLower(dm.CatchAll)
	if t, ok := x.d.aliases[ca+"@"+dm.name]; ok && !x.onPath[ca+"@"+dm.name] {
		return x.targets(t, depth)
	}
	return x.mailbox(dm, ca)
}

func (x *expansion) targets(targets []string, depth int) (bool, error) {
	found := false
	for _, t := range targets {
		l, dom, err := split(t)
		if err != nil {
			x.unknown(t)
			continue
		}
		ok, err := x.expand(l, dom, depth+1)
		if err != nil {
			return false, err
		}
		if ok {
			found = true
		} else {
			x.unknown(l + "@" + dom)
		}
	}
	return found, nil
}

func (x *expansion) mailbox(dm *domain, name string) (bool, error) {
	if err := checkMailboxName(name); err != nil {
		return false, fmt.Errorf("%q: %w: %v", name, ErrBadAddress, err)
	}
	if x.add("l:" + name + "@" + dm.name) {
		x.res.Local = append(x.res.Local, Mailbox{Domain: dm.name, LocalPart: name, Delivery: dm.Delivery})
	}
	return true, nil
}

// exists reports whether lower (a lowercased local part) is a declared
// mailbox or an account.
func (d *Directory) exists(dm *domain, lower string) bool {
	if dm.mailboxes[lower] {
		return true
	}
	return d.userExists != nil && d.userExists(lower+"@"+dm.name)
}

// base strips a subaddress: everything from the first delimiter on. A
// local part that starts with a delimiter is left alone.
func (d *Directory) base(local string) string {
	if d.delimiters == "" {
		return local
	}
	if i := strings.IndexAny(local, d.delimiters); i > 0 {
		return local[:i]
	}
	return local
}

// Base returns the local part of addr without its subaddress, with the
// domain: "Bob+tag@Example.COM" -> "bob@example.com".
func (d *Directory) Base(addr string) (string, error) {
	l, dom, err := split(addr)
	if err != nil {
		return "", err
	}
	return d.base(strings.ToLower(l)) + "@" + dom, nil
}

// split parses local@domain, normalising the domain.
func split(addr string) (local, dom string, err error) {
	at := strings.LastIndexByte(addr, '@')
	if at <= 0 {
		return "", "", fmt.Errorf("%q is not user@domain", addr)
	}
	local = addr[:at]
	if !utf8.ValidString(local) || len(local) > 64*4 {
		return "", "", fmt.Errorf("malformed local part")
	}
	for _, c := range local {
		if c < 0x20 || c == 0x7f || unicode.IsControl(c) {
			return "", "", fmt.Errorf("control character in local part")
		}
	}
	dom, err = NormalizeDomain(addr[at+1:])
	if err != nil {
		return "", "", err
	}
	return local, dom, nil
}

func normalizeAddress(addr string) (string, error) {
	l, dom, err := split(addr)
	if err != nil {
		return "", err
	}
	return strings.ToLower(l) + "@" + dom, nil
}

// NormalizeAddress returns addr with its local part lowercased and its
// domain in lowercased A-label form: the form accounts are kept in.
func NormalizeAddress(addr string) (string, error) { return normalizeAddress(addr) }

// NormalizeDomain returns the lowercased A-label form of a domain given in
// U-labels or A-labels.
func NormalizeDomain(s string) (string, error) {
	if s == "" {
		return "", errors.New("empty domain")
	}
	a, err := idna.Lookup.ToASCII(s)
	if err != nil {
		return "", fmt.Errorf("%q is not a valid domain name", s)
	}
	a = strings.ToLower(a)
	if len(a) > 253 {
		return "", fmt.Errorf("%q is too long for a domain name", s)
	}
	for _, l := range strings.Split(a, ".") {
		if l == "" || len(l) > 63 {
			return "", fmt.Errorf("%q is not a valid domain name", s)
		}
	}
	return a, nil
}

// checkMailboxName refuses names that are unsafe as a directory name.
func checkMailboxName(s string) error {
	switch {
	case s == "":
		return errors.New("empty mailbox name")
	case s[0] == '.':
		return errors.New("mailbox name starts with '.'")
	case strings.ContainsAny(s, "/\x00\r\n"):
		return errors.New("mailbox name contains '/', NUL, CR or LF")
	case !utf8.ValidString(s):
		return errors.New("mailbox name is not UTF-8")
	}
	for _, c := range s {
		if unicode.IsControl(c) {
			return errors.New("mailbox name contains a control character")
		}
	}
	return nil
}
