package dmarc

import (
	"context"
	"errors"
	"net"
	"strings"

	"github.com/posthorn/posthorn/internal/dns"
)

// Status is a DMARC result as reported in Authentication-Results (RFC 8601 2.7.4).
type Status string

// The results.
const (
	StatusNone      Status = "none"      // no applicable record: DMARC does not apply
	StatusPass      Status = "pass"      // an aligned identifier passed
	StatusFail      Status = "fail"      // a record applies and nothing aligned passed
	StatusTempError Status = "temperror" // DNS failed transiently; try again later
	StatusPermError Status = "permerror" // no single usable Author Domain
)

// DKIMResult is one verified DKIM signature as DMARC needs it.
type DKIMResult struct {
	Domain   string // d=
	Selector string // s=, for reports
	Result   string // "pass", "fail", ...; only "pass" counts
}

// Input is what Evaluate needs about a message.
type Input struct {
	// FromDomain is the Author Domain: the domain of the single RFC5322.From
	// address (see AuthorDomain).
	FromDomain string
	// SPFResult and SPFDomain are the SPF outcome for the MAIL FROM identity
	// (RFC 9989 4.4.2: DMARC uses MAIL FROM only; with a null reverse-path
	// that is the HELO domain, RFC 7208 2.4).
	SPFResult string
	SPFDomain string
	DKIM      []DKIMResult
}

// Result is the outcome of Evaluate.
type Result struct {
	Result Status
	// Policy is what the Domain Owner asks for this message: PolicyNone
	// unless Result is fail; t=y already applied (one level lower).
	Policy Policy
	// PublishedPolicy is the p=, sp= or np= selected, before t=y.
	PublishedPolicy Policy
	Testing         bool // the record has t=y
	Record          *Record
	RecordDomain    string // where Record was found
	AuthorDomain    string
	OrgDomain       string // of the Author Domain, when it was needed
	// Alignment details.
	SPFAligned        bool
	DKIMAligned       bool
	AlignedDKIMDomain string // d= of the first aligned passing signature
	Reason            string // human-readable detail, for logs and A-R comments
}

// Evaluate applies DMARC (RFC 9989 5.3) to a message: policy discovery for
// the Author Domain, then SPF and DKIM identifier alignment. On fail it
// selects p=, sp= or np= (4.10.1), the last when the Author Domain does not
// exist (no A, AAAA or MX: 3.2.13), and lowers it one level under t=y. What
// to do with the policy is the caller's decision.
func Evaluate(ctx context.Context, resolver dns.Resolver, in Input) Result {
	c := newCache(resolver)
	res := Result{Policy: PolicyNone}
	author := NormalizeDomain(in.FromDomain)
	res.AuthorDomain = author
	if author == "" {
		res.Result, res.Reason = StatusPermError, "no single valid Author Domain"
		return res
	}
	disc, err := lookup(ctx, c, author)
	switch {
	case errors.Is(err, ErrNoRecord):
		res.Result, res.Reason = StatusNone, "no DMARC record"
		return res
	case err != nil:
		res.Result, res.Reason = StatusTempError, err.Error()
		return res
	}
	rec := disc.Record
	res.Record, res.RecordDomain, res.Testing = rec, disc.Domain, rec.Testing
	if !disc.Usable {
		res.Result, res.Reason = StatusNone, "DMARC record at "+disc.Domain+" has no valid p= and no rua=: not applied"
		return res
	}

	var tempErr error
	spfDomain := in.SPFDomain[strings.LastIndexByte(in.SPFDomain, '@')+1:] // tolerate a whole address
	if strings.EqualFold(in.SPFResult, "pass") && spfDomain != "" {
		ok, err := c.aligned(ctx, author, spfDomain, rec.ASPF)
		if err != nil {
			tempErr = err
		}
		res.SPFAligned = ok
	}
	for _, d := range in.DKIM {
		if !strings.EqualFold(d.Result, "pass") {
			continue
		}
		ok, err := c.aligned(ctx, author, d.Domain, rec.ADKIM)
		if err != nil {
			tempErr = err
		}
		if ok {
			res.DKIMAligned, res.AlignedDKIMDomain = true, NormalizeDomain(d.Domain)
			break
		}
	}
	if org, err := c.orgDomain(ctx, author); err == nil {
		res.OrgDomain = org
	}

	if res.SPFAligned || res.DKIMAligned {
		res.Result = StatusPass
		return res
	}
	if tempErr != nil {
		// RFC 9989 5.3.6: with DNS errors the message neither passes nor fails.
		res.Result, res.Reason = StatusTempError, tempErr.Error()
		return res
	}
	res.Result = StatusFail
	res.Reason = "no aligned SPF or DKIM pass"
	p := rec.Policy
	if disc.Domain != author {
		// Inherited from the Organizational or Public Suffix Domain.
		if rec.SubdomainPolicy != "" {
			p = rec.SubdomainPolicy
		}
		if rec.NonexistentPolicy != "" && !exists(ctx, resolver, author) {
			p = rec.NonexistentPolicy
			res.Reason += "; author domain does not exist (np=)"
		}
	}
	res.PublishedPolicy, res.Policy = p, p
	if rec.Testing {
		switch p {
		case PolicyReject:
			res.Policy = PolicyQuarantine
		case PolicyQuarantine:
			res.Policy = PolicyNone
		}
	}
	return res
}

// exists applies RFC 9989's definition of a non-existent domain: NXDOMAIN
// or NODATA for A, AAAA and MX. Any other answer, including a temporary
// error, counts as existing, so np= is only used when we are sure.
func exists(ctx context.Context, r dns.Resolver, domain string) bool {
	notFound := func(err error) bool {
		var de *net.DNSError
		return errors.As(err, &de) && de.IsNotFound
	}
	for _, network := range []string{"ip4", "ip6"} {
		if _, _, err := r.LookupIP(ctx, network, domain); !notFound(err) {
			return true
		}
	}
	_, _, err := r.LookupMX(ctx, domain)
	return !notFound(err)
}
