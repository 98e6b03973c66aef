// Package tlspolicy decides how TLS is used toward each destination domain: configured overrides, then DANE, then MTA-STS, else opportunistic TLS.
package tlspolicy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"github.com/posthorn/posthorn/internal/dane"
	"github.com/posthorn/posthorn/internal/dns"
	"github.com/posthorn/posthorn/internal/mtasts"
	"github.com/posthorn/posthorn/internal/outbound"
	"github.com/posthorn/posthorn/internal/tlsrpt"
)

// Override levels for a destination (Postfix smtp_tls_policy_maps).
const (
	OverrideNone     = "none"      // never STARTTLS
	OverrideMay      = "may"       // opportunistic, MTA-STS and DANE not consulted
	OverrideEncrypt  = "encrypt"   // STARTTLS required, certificate not checked
	OverrideVerify   = "verify"    // STARTTLS required, certificate checked (WebPKI) against the MX host name
	OverrideDANE     = "dane"      // DANE where usable TLSA records exist, else opportunistic; MTA-STS not consulted
	OverrideDANEOnly = "dane-only" // DANE required: hosts without usable TLSA records are not used
)

// Overrides are all override levels.
var Overrides = []string{OverrideNone, OverrideMay, OverrideEncrypt, OverrideVerify, OverrideDANE, OverrideDANEOnly}

// Options configure Policies.
type Options struct {
	// Resolver must be a validating resolver for DANE: only its AD bit
	// (dns.Result.Authentic) says an answer is DNSSEC-secure.
	Resolver dns.Resolver
	// MTASTS is the policy cache; nil turns MTA-STS off.
	MTASTS *mtasts.Cache
	// NoDANE turns DANE off (except where an override asks for it).
	NoDANE bool
	// Overrides map a domain ("example.net") or a domain and its
	// subdomains (".example.net") to one of the Override levels.
	Overrides map[string]string
	// Roots verify MX certificates under MTA-STS and "verify" (nil: the
	// system's); the same pool goes into outbound.Options.TLSConfig.
	Roots *x509.CertPool
	// Reports, when set, counts every session for TLS-RPT.
	Reports *tlsrpt.Store
	Logger  *slog.Logger
}

// Policies is an outbound.TLSPolicyFunc (Policy) and an
// outbound.TLSOutcomeFunc (Outcome) over the same state.
type Policies struct {
	o  Options
	mu sync.Mutex
	// last is what Policy found for each domain, for Outcome to report.
	last map[string]*found
}

// found is the policy state of a domain at the last look.
type found struct {
	sts      *mtasts.Entry // in force (enforce or testing), nil if none
	fetchErr error         // the last MTA-STS fetch failure with no policy in force
	tlsa     map[string][]dns.TLSA
}

// New returns Policies.
func New(o Options) *Policies {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Policies{o: o, last: map[string]*found{}}
}

func (p *Policies) override(domain string) string {
	if v, ok := p.o.Overrides[domain]; ok {
		return v
	}
	for d := domain; ; {
		_, parent, ok := strings.Cut(d, ".")
		if !ok {
			return ""
		}
		if v, ok := p.o.Overrides["."+parent]; ok {
			return v
		}
		d = parent
	}
}

// Policy implements outbound.TLSPolicyFunc.
func (p *Policies) Policy(ctx context.Context, domain string, mxHosts []string) (outbound.TLSPolicy, error) {
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	f := &found{}
	defer func() {
		p.mu.Lock()
		p.last[domain] = f
		p.mu.Unlock()
	}()
	ov := p.override(domain)
	switch ov {
	case OverrideNone:
		return outbound.TLSPolicy{Level: outbound.TLSNone, Source: "config"}, nil
	case OverrideMay:
		return outbound.TLSPolicy{Level: outbound.TLSMay, Source: "config"}, nil
	case OverrideEncrypt:
		return outbound.TLSPolicy{Level: outbound.TLSEncrypt, Source: "config"}, nil
	case OverrideVerify:
		return outbound.TLSPolicy{Level: outbound.TLSVerify, Source: "config"}, nil
	}

	// The fallback for hosts without DANE: MTA-STS, or opportunistic.
	fallback := outbound.TLSPolicy{Level: outbound.TLSMay, Source: "default"}
	if p.o.MTASTS != nil && ov == "" {
		fallback = p.mtaSTS(ctx, domain, f)
	}
	if p.o.NoDANE && ov == "" {
		return fallback, nil
	}
	hosts, secure := p.daneHosts(ctx, domain, mxHosts)
	if !secure {
		if ov == OverrideDANEOnly {
			return outbound.TLSPolicy{}, fmt.Errorf("DANE is required by configuration, but the MX records of %s are not DNSSEC-signed", domain)
		}
		return fallback, nil
	}
	// RFC 7672 2.2: DANE is decided host by host; RFC 8461 2: where DANE
	// applies it takes precedence over MTA-STS.
	f.tlsa = map[string][]dns.TLSA{}
	per := map[string]hostDANE{}
	anyDANE := false
	for _, h := range hosts {
		d := p.hostDANE(ctx, h)
		per[strings.ToLower(h)] = d
		if d.recs != nil || d.err != nil {
			anyDANE = true
		}
		if d.recs != nil {
			f.tlsa[strings.ToLower(h)] = d.recs
		}
	}
	if !anyDANE && ov != OverrideDANEOnly {
		return fallback, nil
	}
	pol := fallback
	if ov == OverrideDANEOnly {
		pol = outbound.TLSPolicy{Level: outbound.TLSVerify, Source: "dane"}
	}
	if allow := fallback.AllowHost; allow != nil {
		// MTA-STS's mx patterns do not bind hosts that DANE covers.
		pol.AllowHost = func(host string) bool {
			d := per[strings.ToLower(host)]
			return d.recs != nil || d.err != nil || allow(host)
		}
	}
	pol.ForHost = func(_ context.Context, host string) (outbound.TLSPolicy, error) {
		d := per[strings.ToLower(host)]
		switch {
		case d.err != nil:
			return outbound.TLSPolicy{}, d.err
		case d.recs == nil && ov == OverrideDANEOnly:
			return outbound.TLSPolicy{}, fmt.Errorf("DANE is required by configuration, but %s has no DNSSEC-signed TLSA records", host)
		case d.recs == nil:
			fb := fallback
			fb.ForHost = nil
			return fb, nil
		}
		usable := dane.Usable(d.recs)
		if len(usable) == 0 {
			// RFC 7672 2.2: TLS is mandatory, authentication is not.
			return outbound.TLSPolicy{Level: outbound.TLSEncrypt, Source: "dane"}, nil
		}
		names := d.names
		return outbound.TLSPolicy{
			Level:  outbound.TLSVerify,
			Source: "dane",
			VerifyPeer: func(host string, cs tls.ConnectionState) error {
				_, err := dane.Verify(cs.PeerCertificates, usable, dane.Options{Names: names})
				return err
			},
		}, nil
	}
	return pol, nil
}

// mtaSTS returns the MTA-STS policy of domain, or the opportunistic
// default.
func (p *Policies) mtaSTS(ctx context.Context, domain string, f *found) outbound.TLSPolicy {
	may := outbound.TLSPolicy{Level: outbound.TLSMay, Source: "default"}
	l, err := p.o.MTASTS.Get(ctx, domain)
	if err != nil {
		p.o.Logger.Info("MTA-STS record lookup failed; no policy used", "domain", domain, "err", err)
		return may
	}
	if l.FetchErr != nil {
		p.o.Logger.Warn("MTA-STS policy fetch failed", "domain", domain, "err", l.FetchErr, "cached_policy_used", l.Entry != nil)
		if l.Entry == nil {
			f.fetchErr = l.FetchErr
		}
	}
	if l.Entry == nil || l.Entry.Policy.Mode == mtasts.ModeNone {
		return may
	}
	f.sts = l.Entry
	pol := l.Entry.Policy
	if pol.Mode == mtasts.ModeTesting {
		return outbound.TLSPolicy{Level: outbound.TLSMay, Source: "mta-sts-testing"}
	}
	return outbound.TLSPolicy{
		Level:  outbound.TLSVerify,
		Source: "mta-sts",
		AllowHost: func(host string) bool {
			if pol.Matches(host) {
				return true
			}
			p.record(tlsrpt.Result{PolicyDomain: domain, PolicyType: tlsrpt.PolicySTS, PolicyString: policyLines(l.Entry), MXHost: pol.MX,
				ResultType: tlsrpt.ResultValidationFailure, ReceivingMX: host, Additional: "MX host not covered by the policy's mx patterns"})
			return false
		},
	}
}

// daneHosts says whether the MX RRset of domain is DNSSEC-secure (RFC
// 7672 2.2.1), and returns the hosts (the domain itself for an implicit
// MX).
func (p *Policies) daneHosts(ctx context.Context, domain string, mxHosts []string) ([]string, bool) {
	mxs, res, err := p.o.Resolver.LookupMX(ctx, domain)
	switch {
	case err == nil && len(mxs) > 0:
		return mxHosts, res.Authentic
	case err != nil && dns.IsNotFound(err):
		_, res, err := p.o.Resolver.LookupIP(ctx, "ip", domain)
		return mxHosts, err == nil && res.Authentic
	}
	return nil, false
}

type hostDANE struct {
	recs  []dns.TLSA // secure TLSA records (maybe none usable); nil: no DANE for the host
	names []string   // reference identifiers for DANE-TA: the TLSA base domain, then the MX host
	err   error      // the host must not be used
}

// hostDANE looks up the TLSA records of one MX host as RFC 7672 2.2.2
// says: only when its address records are secure; when the host is an
// alias reached through a secure CNAME chain, first at the fully expanded
// name and then at the host's own name; a failed TLSA look-up then makes
// the host unusable, a secure denial means no DANE, an insecure answer is
// ignored.
func (p *Policies) hostDANE(ctx context.Context, host string) hostDANE {
	_, res, err := p.o.Resolver.LookupIP(ctx, "ip", host)
	if err != nil || !res.Authentic {
		return hostDANE{}
	}
	f := dane.Lookup(ctx, p.o.Resolver, host, true)
	switch {
	case f.Err != nil && !dns.IsNotFound(f.Err):
		return hostDANE{err: fmt.Errorf("TLSA look-up for %s failed (its addresses are DNSSEC-signed, so it may not be used without): %w", f.Base, f.Err)}
	case f.Err != nil || len(f.Records) == 0:
		return hostDANE{}
	}
	return hostDANE{recs: f.Records, names: dane.ReferenceNames(f.Base, host)}
}

// Outcome implements outbound.TLSOutcomeFunc: it counts the session for
// TLS-RPT.
func (p *Policies) Outcome(_ context.Context, o outbound.TLSOutcome) {
	if o.Domain == "" || p.o.Reports == nil {
		return
	}
	domain := strings.ToLower(o.Domain)
	p.mu.Lock()
	f := p.last[domain]
	p.mu.Unlock()
	if f == nil {
		f = &found{}
	}
	r := tlsrpt.Result{PolicyDomain: domain, PolicyType: tlsrpt.PolicyNotFound, ReceivingMX: o.Host, ReceivingIP: o.IP}
	switch o.Policy.Source {
	case "dane":
		r.PolicyType = tlsrpt.PolicyTLSA
		r.MXHost = []string{o.Host}
		for _, t := range f.tlsa[strings.ToLower(o.Host)] {
			r.PolicyString = append(r.PolicyString, fmt.Sprintf("%d %d %d %X", t.Usage, t.Selector, t.MatchingType, t.CertData))
		}
	case "mta-sts", "mta-sts-testing":
		if f.sts != nil {
			r.PolicyType = tlsrpt.PolicySTS
			r.PolicyString = policyLines(f.sts)
			r.MXHost = f.sts.Policy.MX
		}
	}
	switch {
	case o.Policy.Level == outbound.TLSNone:
		return // TLS turned off by configuration: nothing to report
	case o.Err == nil && o.State == nil && o.Offered:
		return // the clear-text retry after a failed handshake, already counted
	case errors.Is(o.Err, outbound.ErrNoStartTLS) || (o.Err == nil && o.State == nil):
		r.ResultType = tlsrpt.ResultSTARTTLSNotSupported
	case o.Err != nil:
		r.ResultType, r.Additional = classify(o.Err)
	case o.Policy.Source == "mta-sts-testing" && f.sts != nil:
		// RFC 8461 5: testing mode delivers, and reports what enforce
		// would have refused.
		if !f.sts.Policy.Matches(o.Host) {
			r.ResultType, r.Additional = tlsrpt.ResultValidationFailure, "MX host not covered by the policy's mx patterns"
		} else if err := verifyPKIX(o.State, p.o.Roots, o.Host); err != nil {
			r.ResultType, r.Additional = classify(err)
		}
	}
	if r.ResultType == "" && f.fetchErr != nil && r.PolicyType == tlsrpt.PolicyNotFound {
		r.PolicyType = tlsrpt.PolicySTS
		r.ResultType, r.Additional = classifyFetch(f.fetchErr)
	}
	p.record(r)
}

func (p *Policies) record(r tlsrpt.Result) {
	if p.o.Reports == nil {
		return
	}
	if err := p.o.Reports.Add(r); err != nil {
		p.o.Logger.Warn("cannot record a TLS-RPT result", "err", err)
	}
}

func policyLines(e *mtasts.Entry) []string {
	return strings.Split(strings.TrimRight(strings.ReplaceAll(e.Text, "\r\n", "\n"), "\n"), "\n")
}

// classify maps a handshake or verification error to an RFC 8460
// result type.
func classify(err error) (string, string) {
	var host x509.HostnameError
	var inval x509.CertificateInvalidError
	var unknown x509.UnknownAuthorityError
	info := err.Error()
	if len(info) > 200 {
		info = info[:200]
	}
	switch {
	case errors.As(err, &host), errors.Is(err, dane.ErrName):
		return tlsrpt.ResultHostMismatch, info
	case errors.As(err, &inval) && inval.Reason == x509.Expired:
		return tlsrpt.ResultCertExpired, info
	case errors.As(err, &unknown):
		return tlsrpt.ResultCertNotTrusted, info
	}
	return tlsrpt.ResultValidationFailure, info
}

func classifyFetch(err error) (string, string) {
	var cv *tls.CertificateVerificationError
	switch {
	case errors.As(err, &cv):
		return tlsrpt.ResultSTSWebPKIInvalid, err.Error()
	case errors.Is(err, mtasts.ErrBadPolicy):
		return tlsrpt.ResultSTSPolicyInvalid, err.Error()
	}
	return tlsrpt.ResultSTSPolicyFetchError, err.Error()
}

func verifyPKIX(cs *tls.ConnectionState, roots *x509.CertPool, name string) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("no certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{DNSName: name, Roots: roots, Intermediates: inter})
	return err
}
