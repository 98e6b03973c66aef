package dmarc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"

	"golang.org/x/net/idna"

	"github.com/posthorn/posthorn/internal/dns"
)

// maxLabels is the DNS Tree Walk shortcut of RFC 9989 4.10: after the
// first query, names are cut to at most 7 labels, so a walk makes at most
// eight queries.
const maxLabels = 8

// ErrNoRecord: no DMARC Policy Record applies; DMARC does not apply.
var ErrNoRecord = errors.New("dmarc: no DMARC policy record")

// TempError is a transient DNS failure during discovery; the outcome is
// unknown (temperror).
type TempError struct{ Err error }

func (e *TempError) Error() string { return "dmarc: temporary DNS error: " + e.Err.Error() }
func (e *TempError) Unwrap() error { return e.Err }

// Discovered is the outcome of policy discovery (RFC 9989 4.10.1).
type Discovered struct {
	AuthorDomain string
	// Record is the applicable record, found at Domain: the Author Domain,
	// its Organizational Domain or its Public Suffix Domain.
	Record *Record
	Domain string
	// Usable is false when the record has no valid policy and no rua=
	// (Parse returned ErrNoPolicy): then no DMARC processing applies.
	Usable bool
	// Queried lists the _dmarc names asked, in order.
	Queried []string
}

// NormalizeDomain lower-cases a domain, drops leading and trailing dots and
// converts U-labels to A-labels (RFC 9989 5.3.1). It returns "" for names
// that cannot be a domain.
func NormalizeDomain(d string) string {
	d = strings.Trim(strings.TrimSpace(d), ".")
	if d == "" {
		return ""
	}
	a, err := idna.Lookup.ToASCII(d)
	if err != nil {
		// Keep ASCII names idna dislikes (underscores, odd lengths); refuse
		// anything with spaces or non-ASCII left in it.
		a = d
		for i := 0; i < len(a); i++ {
			if c := a[i]; c <= ' ' || c >= 0x7f {
				return ""
			}
		}
	}
	// Again after the conversion: IDNA maps some characters to nothing
	// (U+00AD soft hyphen), which can leave a label empty ("\u00ad.x").
	a = strings.Trim(strings.ToLower(a), ".")
	if a == "" || strings.Contains(a, "..") || len(a) > 253 {
		return ""
	}
	return a
}

// txtCache answers repeated _dmarc questions within one evaluation from
// memory, so the several tree walks of an evaluation cost each name once.
type txtCache struct {
	r       dns.Resolver
	answers map[string]txtAnswer
	queried []string
}

type txtAnswer struct {
	txt []string
	err error
}

func newCache(r dns.Resolver) *txtCache {
	return &txtCache{r: r, answers: make(map[string]txtAnswer)}
}

// record returns the single DMARC record at _dmarc.domain: nil when there
// is none or more than one (RFC 9989 4.10 step 2), a TempError on SERVFAIL
// or timeouts.
func (c *txtCache) record(ctx context.Context, domain string) (*Record, error) {
	name := "_dmarc." + domain
	a, ok := c.answers[name]
	if !ok {
		txt, _, err := c.r.LookupTXT(ctx, name)
		a = txtAnswer{txt, err}
		c.answers[name] = a
		c.queried = append(c.queried, name)
	}
	if a.err != nil {
		var de *net.DNSError
		if errors.As(a.err, &de) && de.IsNotFound {
			return nil, nil
		}
		return nil, &TempError{a.err}
	}
	var found *Record
	n := 0
	for _, t := range a.txt {
		rec, err := Parse(t)
		if errors.Is(err, ErrNotDMARC) {
			continue
		}
		n++
		found = rec
	}
	if n != 1 {
		return nil, nil
	}
	return found, nil
}

// walkTargets lists the names a tree walk visits after its start (RFC 9989
// 4.10 steps 3-7): drop one label, or cut to 7 labels when 8 or more.
func walkTargets(domain string) []string {
	labels := strings.Split(domain, ".")
	if len(labels) >= maxLabels {
		labels = labels[len(labels)-(maxLabels-1):]
	} else {
		labels = labels[1:]
	}
	var out []string
	for ; len(labels) > 0; labels = labels[1:] {
		out = append(out, strings.Join(labels, "."))
	}
	return out
}

type found struct {
	domain string
	rec    *Record
}

// walk queries start and then its walk targets, collecting records from
// the longest name to the shortest, and stops at a record with psd=y or
// psd=n. When skipStart is set, start itself is not queried.
func (c *txtCache) walk(ctx context.Context, start string, skipStart bool) ([]found, error) {
	var fs []found
	names := walkTargets(start)
	if !skipStart {
		names = append([]string{start}, names...)
	}
	for _, d := range names {
		rec, err := c.record(ctx, d)
		if err != nil {
			return nil, err
		}
		if rec == nil {
			continue
		}
		fs = append(fs, found{d, rec})
		if rec.PSD == 'y' || rec.PSD == 'n' {
			break
		}
	}
	return fs, nil
}

// orgFrom selects the Organizational Domain from the records of a walk
// that started at start (RFC 9989 4.10.2), "" when none decides it.
func orgFrom(start string, fs []found) string {
	for _, f := range fs {
		switch {
		case f.rec.PSD == 'n':
			return f.domain
		case f.rec.PSD == 'y' && f.domain != start:
			return oneBelow(start, f.domain)
		}
	}
	if len(fs) > 0 {
		return fs[len(fs)-1].domain // the fewest labels
	}
	return ""
}

// oneBelow returns the name one label below psd on the way to d.
func oneBelow(d, psd string) string {
	prefix := strings.TrimSuffix(d, "."+psd)
	if i := strings.LastIndexByte(prefix, '.'); i >= 0 {
		prefix = prefix[i+1:]
	}
	return prefix + "." + psd
}

// Lookup performs DMARC policy discovery for an Author Domain (RFC 9989
// 4.10.1): the record at the domain itself, else the one at its
// Organizational Domain, else at its Public Suffix Domain, found by the DNS
// Tree Walk in at most eight queries. It returns ErrNoRecord when no record
// applies and a *TempError when DNS failed transiently.
func Lookup(ctx context.Context, resolver dns.Resolver, fromDomain string) (*Discovered, error) {
	return lookup(ctx, newCache(resolver), fromDomain)
}

func lookup(ctx context.Context, c *txtCache, fromDomain string) (*Discovered, error) {
	author := NormalizeDomain(fromDomain)
	if author == "" {
		return nil, fmt.Errorf("dmarc: invalid author domain %q", fromDomain)
	}
	d := &Discovered{AuthorDomain: author}
	defer func() { d.Queried = append([]string(nil), c.queried...) }()
	rec, err := c.record(ctx, author)
	if err != nil {
		return nil, err
	}
	if rec != nil {
		d.Record, d.Domain = rec, author
	} else {
		fs, err := c.walk(ctx, author, true)
		if err != nil {
			return nil, err
		}
		if len(fs) == 0 {
			return d, ErrNoRecord
		}
		org := orgFrom(author, fs)
		// The Organizational Domain's record if it has one, else the PSD's.
		d.Record, d.Domain = fs[len(fs)-1].rec, fs[len(fs)-1].domain
		for _, f := range fs {
			if f.domain == org {
				d.Record, d.Domain = f.rec, f.domain
			}
		}
	}
	d.Usable = d.Record.Usable()
	return d, nil
}

// OrgDomain finds the Organizational Domain of a domain by the DNS Tree
// Walk (RFC 9989 4.10.2). Without any DMARC record on the way, the domain
// is its own Organizational Domain.
func OrgDomain(ctx context.Context, resolver dns.Resolver, domain string) (string, error) {
	return newCache(resolver).orgDomain(ctx, domain)
}

func (c *txtCache) orgDomain(ctx context.Context, domain string) (string, error) {
	d := NormalizeDomain(domain)
	if d == "" {
		return "", fmt.Errorf("dmarc: invalid domain %q", domain)
	}
	fs, err := c.walk(ctx, d, false)
	if err != nil {
		return "", err
	}
	if org := orgFrom(d, fs); org != "" {
		return org, nil
	}
	return d, nil
}

// Aligned reports whether an authenticated domain (SPF MAIL FROM or DKIM
// d=) is aligned with the Author Domain (RFC 9989 4.4): identical in strict
// mode, the same Organizational Domain in relaxed mode.
func Aligned(ctx context.Context, resolver dns.Resolver, author, authenticated string, mode AlignMode) (bool, error) {
	return newCache(resolver).aligned(ctx, author, authenticated, mode)
}

func (c *txtCache) aligned(ctx context.Context, author, authenticated string, mode AlignMode) (bool, error) {
	a, b := NormalizeDomain(author), NormalizeDomain(authenticated)
	if a == "" || b == "" {
		return false, nil
	}
	if a == b {
		return true, nil
	}
	if mode == Strict {
		return false, nil
	}
	// Different names can only share an Organizational Domain if one is a
	// suffix of the other or both are below a common parent; the walk
	// decides. Names with no common label cannot align.
	if lastLabel(a) != lastLabel(b) {
		return false, nil
	}
	oa, err := c.orgDomain(ctx, a)
	if err != nil {
		return false, err
	}
	ob, err := c.orgDomain(ctx, b)
	if err != nil {
		return false, err
	}
	return oa == ob, nil
}

func lastLabel(d string) string { return d[strings.LastIndexByte(d, '.')+1:] }
