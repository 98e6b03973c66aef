package probe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"
	"time"

	"github.com/posthorn/posthorn/internal/dmarc"
	"github.com/posthorn/posthorn/internal/dns"
	"github.com/posthorn/posthorn/internal/mtasts"
	"github.com/posthorn/posthorn/internal/spf"
)

// DomainReport is a mail domain's posture.
type DomainReport struct {
	Domain string   `json:"domain"`
	MX     []MXHost `json:"mx"`
	// NullMX: the domain publishes "MX 0 ." (RFC 7505): it takes no mail.
	NullMX bool `json:"null_mx"`
	// ImplicitMX: no MX records; mail goes to the domain's own address
	// (RFC 5321 5.1).
	ImplicitMX bool   `json:"implicit_mx"`
	MXError    string `json:"mx_error,omitempty"`

	SPF    *SPFPosture    `json:"spf"`
	DMARC  *DMARCPosture  `json:"dmarc"`
	MTASTS *MTASTSPosture `json:"mta_sts"`
	TLSRPT *TLSRPTPosture `json:"tls_rpt"`
	// DNSSEC says, per question, whether the resolver set the AD bit.
	DNSSEC map[string]bool `json:"dnssec"`

	Findings []Finding `json:"findings"`
}

// MXHost is one MX record and its addresses.
type MXHost struct {
	Pref      uint16   `json:"pref"`
	Host      string   `json:"host"`
	Addresses []string `json:"addresses"`
	Error     string   `json:"error,omitempty"`
}

// SPFPosture is the domain's SPF record as spf.Analyze sees it.
type SPFPosture struct {
	Record      string   `json:"record"`
	Valid       bool     `json:"valid"`
	Lookups     int      `json:"lookups"`
	VoidLookups int      `json:"void_lookups"`
	All         string   `json:"all"` // "-all", "~all", "?all", "+all" or "" (none)
	Problems    []string `json:"problems"`
	Error       string   `json:"error,omitempty"`
}

// DMARCPosture is the DMARC record that applies to the domain.
type DMARCPosture struct {
	Record string `json:"record"`
	// Found is where the record is: the domain or its organizational domain.
	Found           string   `json:"found_at,omitempty"`
	Valid           bool     `json:"valid"`
	Policy          string   `json:"policy,omitempty"`
	SubdomainPolicy string   `json:"subdomain_policy,omitempty"`
	Pct             int      `json:"pct"`
	RUA             []string `json:"rua"`
	Error           string   `json:"error,omitempty"`
}

// MTASTSPosture is the MTA-STS record and policy.
type MTASTSPosture struct {
	Record      string   `json:"record"`
	ID          string   `json:"id,omitempty"`
	RecordError string   `json:"record_error,omitempty"`
	PolicyURL   string   `json:"policy_url,omitempty"`
	Mode        string   `json:"mode,omitempty"`
	MX          []string `json:"mx_patterns"`
	MaxAge      int64    `json:"max_age,omitempty"`
	PolicyError string   `json:"policy_error,omitempty"`
	// Uncovered are MX hosts no mx pattern matches.
	Uncovered []string `json:"uncovered_mx"`
}

// TLSRPTPosture is the SMTP TLS reporting record (RFC 8460).
type TLSRPTPosture struct {
	Record string   `json:"record"`
	Valid  bool     `json:"valid"`
	RUA    []string `json:"rua"`
	Error  string   `json:"error,omitempty"`
}

// ProbeDomain examines a mail domain: MX, each MX server, SPF, DMARC,
// MTA-STS, TLS-RPT, DANE, reverse DNS and DNSSEC.
func ProbeDomain(ctx context.Context, domain string, o Options) (*DomainReport, []*HostReport, error) {
	o.fill()
	if o.Resolver == nil {
		return nil, nil, errors.New("probe: --domain needs a resolver")
	}
	ctx, cancel := context.WithTimeout(ctx, o.Total)
	defer cancel()
	domain = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(domain), "."))
	if domain == "" || !smtpDomain(domain) {
		return nil, nil, fmt.Errorf("probe: %q is not a domain name", domain)
	}
	d := &DomainReport{Domain: domain, MX: []MXHost{}, DNSSEC: map[string]bool{}, Findings: []Finding{}}
	r := o.Resolver
	add := func(id string, sev Severity, title, why, fix, evidence string) {
		d.Findings = append(d.Findings, Finding{ID: id, Severity: sev, Target: domain, Title: title, Why: why, Fix: fix, Evidence: evidence})
	}

	// MX (RFC 5321 5.1, RFC 7505).
	mxs, res, err := r.LookupMX(ctx, domain)
	switch {
	case err == nil:
		d.DNSSEC["MX "+domain] = res.Authentic
		sort.SliceStable(mxs, func(i, j int) bool { return mxs[i].Pref < mxs[j].Pref })
		if len(mxs) == 1 && (mxs[0].Host == "." || mxs[0].Host == "") {
			d.NullMX = true
		}
		for _, mx := range mxs {
			d.MX = append(d.MX, MXHost{Pref: mx.Pref, Host: strings.ToLower(strings.TrimSuffix(mx.Host, ".")), Addresses: []string{}})
		}
	case dns.IsNotFound(err):
		ips, _, aerr := r.LookupIP(ctx, "ip", domain)
		if aerr == nil && len(ips) > 0 {
			d.ImplicitMX = true
			d.MX = append(d.MX, MXHost{Host: domain, Addresses: []string{}})
			add("mx-implicit", Low, "no MX record; mail goes to the domain's own address",
				"implicit MX works (RFC 5321 5.1) but is often an accident: a web server may end up receiving mail",
				"publish MX records for the hosts that receive mail, or a null MX (MX 0 .) if the domain takes none", "")
		} else {
			add("mx-missing", High, "no MX record and no address",
				"the domain cannot receive mail: senders bounce at once",
				"publish MX records, or a null MX (MX 0 .) to say the domain takes no mail", "")
		}
	default:
		d.MXError = err.Error()
		add("mx-lookup-failed", High, "MX look-up failed",
			"senders cannot find where to deliver and will queue, then bounce", "fix the domain's DNS servers", err.Error())
	}
	if d.NullMX {
		add("null-mx", Info, "null MX: the domain says it receives no mail (RFC 7505)",
			"senders bounce mail to it at once; that is right for a domain that sends only or not at all",
			"nothing, if intended", "")
	}

	// The servers, within most of the time left: the posture look-ups
	// after them must not starve when an MX is slow.
	var hosts []*HostReport
	if !d.NullMX {
		hctx := ctx
		if dl, ok := ctx.Deadline(); ok {
			var hcancel context.CancelFunc
			hctx, hcancel = context.WithDeadline(ctx, time.Now().Add(time.Until(dl)*4/5))
			defer hcancel()
		}
		hosts = probeMXs(hctx, d, o, add)
	}

	d.SPF = checkSPF(ctx, r, domain, add)
	d.DMARC = checkDMARC(ctx, r, domain, d, add)
	d.MTASTS = checkMTASTS(ctx, r, domain, d, hosts, o, add)
	d.TLSRPT = checkTLSRPT(ctx, r, domain, d, add)

	if len(d.DNSSEC) > 0 && !d.DNSSEC["MX "+domain] && err == nil {
		add("dnssec-unsigned", Info, "DNS answers are not DNSSEC-authenticated",
			"without DNSSEC, DANE cannot protect mail to this domain and answers can be forged on the path",
			"sign the zone and publish DS at the parent; check with a validating resolver", "")
	}
	return d, hosts, nil
}

// probeMXs probes each MX host's first address (and notes PTR of each).
func probeMXs(ctx context.Context, d *DomainReport, o Options, add func(string, Severity, string, string, string, string)) []*HostReport {
	r := o.Resolver
	var hosts []*HostReport
	for i := range d.MX {
		if i >= o.MaxMX || ctx.Err() != nil {
			break
		}
		mx := &d.MX[i]
		if ip := net.ParseIP(strings.Trim(mx.Host, "[]")); ip != nil {
			mx.Error = "MX target is an IP address, which RFC 5321 5.1 does not allow"
			add("mx-is-ip", High, "MX "+mx.Host+" is an IP address", "MX must name a host: many senders refuse an address", "publish a host name with A/AAAA records", mx.Host)
			continue
		}
		ips, res, err := r.LookupIP(ctx, "ip", mx.Host)
		d.DNSSEC["A/AAAA "+mx.Host] = res.Authentic
		if err != nil || len(ips) == 0 {
			mx.Error = "no address: " + errString(err)
			add("mx-no-address", High, "MX "+mx.Host+" has no address",
				"senders cannot connect to this MX", "publish A/AAAA records for "+mx.Host, errString(err))
			continue
		}
		for j, ip := range ips {
			if j >= 4 {
				break
			}
			mx.Addresses = append(mx.Addresses, ip.String())
		}
		h := probeHost(ctx, mx.Host, mx.Addresses[0], 25, ModeSMTP, o)
		for _, a := range mx.Addresses {
			h.PTR = append(h.PTR, checkPTR(ctx, r, a))
		}
		assessPTR(h)
		checkDANE(ctx, r, h, d)
		hosts = append(hosts, h)
	}
	return hosts
}

func checkPTR(ctx context.Context, r dns.Resolver, addr string) PTRCheck {
	pc := PTRCheck{Address: addr, Names: []string{}}
	names, res, err := r.LookupAddr(ctx, addr)
	pc.Authentic = res.Authentic
	if err != nil {
		pc.Error = err.Error()
		return pc
	}
	for _, n := range names {
		n = strings.TrimSuffix(n, ".")
		pc.Names = append(pc.Names, n)
		ips, _, err := r.LookupIP(ctx, "ip", n)
		if err != nil {
			continue
		}
		for _, ip := range ips {
			if ip.Equal(net.ParseIP(addr)) {
				pc.FCrDNS = true
			}
		}
	}
	return pc
}

func assessPTR(h *HostReport) {
	for _, pc := range h.PTR {
		switch {
		case len(pc.Names) == 0:
			h.Findings = append(h.Findings, Finding{ID: "ptr-missing", Severity: Medium, Target: h.Target,
				Title: "no reverse DNS (PTR) for " + pc.Address,
				Why:   "many receivers refuse or score down mail from an address without PTR; an MX usually sends too (bounces, forwards)",
				Fix:   "ask the address's owner (hosting provider) to set a PTR to the host name", Evidence: pc.Error})
		case !pc.FCrDNS:
			h.Findings = append(h.Findings, Finding{ID: "fcrdns-mismatch", Severity: Low, Target: h.Target,
				Title: "reverse DNS of " + pc.Address + " does not resolve back to it",
				Why:   "receivers check forward-confirmed reverse DNS; a mismatch looks like a dynamic or hijacked address",
				Fix:   "make the PTR name's A/AAAA record point to " + pc.Address, Evidence: strings.Join(pc.Names, ", ")})
		}
	}
}

func checkSPF(ctx context.Context, r dns.Resolver, domain string, add func(string, Severity, string, string, string, string)) *SPFPosture {
	p := &SPFPosture{Problems: []string{}}
	a, err := spf.Analyze(ctx, r, domain)
	if err != nil {
		p.Error = err.Error()
		add("spf-lookup-failed", Medium, "SPF look-up failed", "receivers get temperror and may defer mail", "fix the domain's DNS servers", err.Error())
		return p
	}
	p.Record, p.Valid, p.Lookups, p.VoidLookups = a.Record, a.Parses, a.Lookups, a.VoidLookups
	p.Problems = append(p.Problems, a.Problems...)
	if a.Record == "" {
		add("spf-missing", Medium, "no SPF record",
			"receivers cannot tell your servers from forgers; DMARC has only DKIM to go on",
			"publish a TXT record such as \"v=spf1 mx -all\" listing the hosts that send for the domain", strings.Join(a.Problems, "; "))
		return p
	}
	if !a.Parses {
		add("spf-invalid", High, "SPF record does not parse",
			"every SPF check gives permerror: receivers treat mail as unauthenticated and DMARC fails on SPF",
			"fix the record's syntax", strings.Join(a.Problems, "; "))
		return p
	}
	if rec, err := spf.Parse(a.Record); err == nil {
		for _, m := range rec.Mechanisms {
			if m.Name == "all" {
				p.All = string(rune(m.Qualifier)) + "all"
			}
		}
	}
	if a.Lookups > 10 {
		add("spf-too-many-lookups", High, fmt.Sprintf("SPF needs %d DNS look-ups, over the limit of 10", a.Lookups),
			"receivers stop at the 10th look-up with permerror (RFC 7208 4.6.4): mail from senders further down the record fails SPF",
			"flatten includes or drop unused ones until the count is at most 10", a.Record)
	}
	if a.VoidLookups > 2 {
		add("spf-void-lookups", Medium, fmt.Sprintf("SPF has %d void look-ups, over the limit of 2", a.VoidLookups),
			"receivers give permerror after the second look-up that finds nothing (RFC 7208 4.6.4)",
			"remove mechanisms that point at names without records", a.Record)
	}
	switch p.All {
	case "+all":
		add("spf-pass-all", High, "SPF ends in +all",
			"every host on the internet passes SPF for the domain: the record authorises forgers",
			"end the record with -all (or ~all while testing)", a.Record)
	case "?all", "":
		if a.VoidLookups <= 2 && a.Lookups <= 10 && !strings.Contains(a.Record, "redirect=") {
			add("spf-neutral", Low, "SPF does not say what to do with other senders ("+orNone(p.All)+")",
				"receivers get neutral for forged mail, which protects nothing",
				"end the record with -all or ~all", a.Record)
		}
	}
	return p
}

func checkDMARC(ctx context.Context, r dns.Resolver, domain string, d *DomainReport, add func(string, Severity, string, string, string, string)) *DMARCPosture {
	p := &DMARCPosture{RUA: []string{}, Pct: -1}
	// The records at the domain itself, to report a malformed one.
	txts, res, err := r.LookupTXT(ctx, "_dmarc."+domain)
	d.DNSSEC["TXT _dmarc."+domain] = res.Authentic
	if err != nil && !dns.IsNotFound(err) {
		p.Error = err.Error()
		add("dmarc-lookup-failed", Medium, "DMARC look-up failed", "receivers cannot apply the policy", "fix the domain's DNS servers", err.Error())
		return p
	}
	var own []string
	for _, t := range txts {
		if strings.HasPrefix(strings.ToLower(strings.TrimSpace(t)), "v=dmarc1") {
			own = append(own, t)
		}
	}
	if len(own) > 1 {
		p.Error = fmt.Sprintf("%d DMARC records", len(own))
		add("dmarc-invalid", Medium, "more than one DMARC record",
			"receivers ignore the domain's DMARC records when there is more than one", "keep exactly one _dmarc TXT record", strings.Join(own, " | "))
		return p
	}
	if len(own) == 1 {
		p.Record, p.Found = own[0], domain
		rec, err := dmarc.Parse(own[0])
		if err != nil {
			p.Error = err.Error()
			add("dmarc-invalid", Medium, "DMARC record is malformed",
				"receivers ignore a malformed DMARC record: forged mail in the domain's name is not refused",
				"fix the record, e.g. \"v=DMARC1; p=reject; rua=mailto:dmarc@"+domain+"\"", own[0]+": "+err.Error())
			return p
		}
		fillDMARC(p, rec)
	} else {
		disc, err := dmarc.Lookup(ctx, r, domain)
		switch {
		case errors.Is(err, dmarc.ErrNoRecord):
		case err != nil:
			p.Error = err.Error()
		case disc != nil && disc.Record != nil:
			p.Found = disc.Domain
			fillDMARC(p, disc.Record)
			p.Record = "(record of " + disc.Domain + ")"
		}
	}
	if !p.Valid {
		add("dmarc-missing", Medium, "no DMARC record",
			"anyone can send mail with the domain in From: and receivers have no policy to refuse it",
			"publish _dmarc."+domain+" TXT \"v=DMARC1; p=none; rua=mailto:dmarc@"+domain+"\", then move to quarantine and reject", p.Error)
		return p
	}
	switch p.Policy {
	case string(dmarc.PolicyNone):
		add("dmarc-policy-none", Low, "DMARC policy is none (monitoring only)",
			"forged mail in the domain's name is still delivered",
			"after checking the reports, move to p=quarantine and then p=reject", p.Record)
	}
	if len(p.RUA) == 0 {
		add("dmarc-no-rua", Info, "DMARC record asks for no aggregate reports",
			"without rua= you never learn who sends in your name or what fails",
			"add rua=mailto:an address you read", p.Record)
	}
	return p
}

func fillDMARC(p *DMARCPosture, rec *dmarc.Record) {
	p.Valid = !rec.PolicyImplied
	p.Policy = string(rec.Policy)
	p.SubdomainPolicy = string(rec.SubdomainPolicy)
	p.Pct = rec.Pct
	p.RUA = append([]string{}, rec.RUA...)
	if rec.PolicyImplied {
		p.Error = "no valid p= tag"
	}
}

func checkMTASTS(ctx context.Context, r dns.Resolver, domain string, d *DomainReport, hosts []*HostReport, o Options, add func(string, Severity, string, string, string, string)) *MTASTSPosture {
	p := &MTASTSPosture{MX: []string{}, Uncovered: []string{}}
	txts, res, err := r.LookupTXT(ctx, "_mta-sts."+domain)
	d.DNSSEC["TXT _mta-sts."+domain] = res.Authentic
	if err != nil && !dns.IsNotFound(err) {
		p.RecordError = err.Error()
		add("mtasts-lookup-failed", Low, "MTA-STS record look-up failed", "senders cannot learn the policy", "fix the domain's DNS servers", err.Error())
		return p
	}
	for _, t := range txts {
		if strings.HasPrefix(t, "v=STSv1") {
			p.Record = t
		}
	}
	rec, err := mtasts.SelectRecord(txts)
	switch {
	case errors.Is(err, mtasts.ErrNoRecord):
		if !d.NullMX {
			add("mtasts-missing", Low, "no MTA-STS policy",
				"senders fall back to clear text whenever an attacker strips STARTTLS",
				"publish an MTA-STS policy (RFC 8461), in testing mode first, and a TLS-RPT record", "")
		}
		return p
	case err != nil:
		p.RecordError = err.Error()
		add("mtasts-record-invalid", Medium, "MTA-STS TXT record is invalid",
			"senders act as if there were no policy (RFC 8461 3.1)",
			"publish exactly one record like \"v=STSv1; id=20240101T000000\"", err.Error())
		return p
	}
	p.ID = rec.ID
	p.PolicyURL = mtasts.PolicyURL(domain)
	fctx, cancel := context.WithTimeout(ctx, o.StepTimeout)
	defer cancel()
	pol, err := mtasts.Fetch(fctx, domain, mtasts.FetchOptions{Resolver: r, RootCAs: o.RootCAs, Port: o.HTTPSPort, Timeout: o.StepTimeout})
	if err != nil {
		p.PolicyError = err.Error()
		sev, title := Medium, "MTA-STS policy cannot be fetched"
		if errors.Is(err, mtasts.ErrBadPolicy) {
			title = "MTA-STS policy is invalid"
		}
		add("mtasts-policy-invalid", sev, title,
			"senders act as if there were no policy (RFC 8461 3.3): the TXT record promises protection that is not there",
			"serve a valid policy at "+p.PolicyURL+" over HTTPS with a CA certificate for mta-sts."+domain+", status 200, text/plain, no redirect", err.Error())
		return p
	}
	p.Mode = string(pol.Mode)
	p.MX = append(p.MX, pol.MX...)
	p.MaxAge = int64(pol.MaxAge / time.Second)
	if pol.Mode == mtasts.ModeNone {
		add("mtasts-mode-none", Info, "MTA-STS policy mode is none", "the policy protects nothing", "use testing, then enforce", "")
		return p
	}
	if pol.Mode == mtasts.ModeTesting {
		add("mtasts-testing", Info, "MTA-STS policy is in testing mode",
			"senders report failures (TLS-RPT) but still deliver over insecure connections",
			"switch to mode: enforce once the reports are clean", "")
	}
	sev := Medium
	if pol.Mode == mtasts.ModeEnforce {
		sev = High
	}
	for _, mx := range d.MX {
		if !pol.Matches(mx.Host) {
			p.Uncovered = append(p.Uncovered, mx.Host)
			add("mtasts-mx-not-covered", sev, "MTA-STS policy does not cover MX "+mx.Host,
				"senders enforcing the policy refuse to deliver to this MX (in testing mode they report it)",
				"add \"mx: "+mx.Host+"\" (or a matching *. pattern) to the policy, change its id in the TXT record", strings.Join(pol.MX, ", "))
		}
	}
	// Senders check the MX certificate against the WebPKI (RFC 8461 4.2).
	for _, h := range hosts {
		t := h.TLS
		switch {
		case !pol.Matches(h.Host):
		case !h.StartTLS || t == nil || !t.Handshake:
			add("mtasts-mx-no-tls", sev, "MX "+h.Host+" has no working STARTTLS but the MTA-STS policy requires it",
				"senders applying the policy cannot deliver to this MX", "offer STARTTLS with a valid certificate", "")
		case !t.Trusted || !t.NameMatch:
			add("mtasts-mx-cert-invalid", sev, "MX "+h.Host+" certificate fails the MTA-STS check",
				"MTA-STS senders require a CA-valid certificate for the MX name (RFC 8461 4.2) and will not deliver",
				"serve a certificate from a public CA naming "+h.Host+", with its chain", orNone(t.VerifyError))
		}
	}
	return p
}

func checkTLSRPT(ctx context.Context, r dns.Resolver, domain string, d *DomainReport, add func(string, Severity, string, string, string, string)) *TLSRPTPosture {
	p := &TLSRPTPosture{RUA: []string{}}
	txts, res, err := r.LookupTXT(ctx, "_smtp._tls."+domain)
	d.DNSSEC["TXT _smtp._tls."+domain] = res.Authentic
	if err != nil && !dns.IsNotFound(err) {
		p.Error = err.Error()
		return p
	}
	var recs []string
	for _, t := range txts {
		if strings.HasPrefix(t, "v=TLSRPTv1") {
			recs = append(recs, t)
		}
	}
	hasPolicy := d.MTASTS != nil && d.MTASTS.Mode != ""
	switch len(recs) {
	case 0:
		sev := Info
		if hasPolicy {
			sev = Low
		}
		add("tlsrpt-missing", sev, "no TLS-RPT record",
			"you do not hear from senders when TLS to your MX fails (RFC 8460)",
			"publish _smtp._tls."+domain+" TXT \"v=TLSRPTv1; rua=mailto:tlsrpt@"+domain+"\"", "")
		return p
	case 1:
	default:
		p.Error = "more than one TLS-RPT record"
		add("tlsrpt-invalid", Low, "more than one TLS-RPT record", "senders ignore them all (RFC 8460 3)", "keep one record", strings.Join(recs, " | "))
		return p
	}
	p.Record = recs[0]
	rua, err := parseTLSRPT(recs[0])
	if err != nil {
		p.Error = err.Error()
		add("tlsrpt-invalid", Low, "TLS-RPT record is invalid", "senders send no reports", "fix the record: \"v=TLSRPTv1; rua=mailto:...\"", recs[0]+": "+err.Error())
		return p
	}
	p.Valid, p.RUA = true, rua
	return p
}

// parseTLSRPT reads "v=TLSRPTv1; rua=mailto:a,https://b" (RFC 8460 3).
func parseTLSRPT(rec string) ([]string, error) {
	var rua []string
	for i, f := range strings.Split(rec, ";") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			return nil, fmt.Errorf("field %q has no '='", f)
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if i == 0 {
			if k != "v" || v != "TLSRPTv1" {
				return nil, errors.New("must start with v=TLSRPTv1")
			}
			continue
		}
		if k == "rua" {
			for _, u := range strings.Split(v, ",") {
				u = strings.TrimSpace(u)
				if !strings.HasPrefix(u, "mailto:") && !strings.HasPrefix(u, "https:") {
					return nil, fmt.Errorf("rua %q is neither mailto: nor https:", u)
				}
				rua = append(rua, u)
			}
		}
	}
	if len(rua) == 0 {
		return nil, errors.New("no rua=")
	}
	return rua, nil
}

func errString(err error) string {
	if err == nil {
		return "none"
	}
	return err.Error()
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// smtpDomain accepts LDH labels with dots.
func smtpDomain(s string) bool {
	if len(s) > 253 {
		return false
	}
	for _, l := range strings.Split(s, ".") {
		if l == "" || len(l) > 63 {
			return false
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}
