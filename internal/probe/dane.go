package probe

import (
	"context"
	"encoding/hex"
	"fmt"

	"github.com/posthorn/posthorn/internal/dane"
	"github.com/posthorn/posthorn/internal/dns"
)

// checkDANE looks up the TLSA records of an MX host as a DANE sender does
// (RFC 7672 2.2.2: at the CNAME-expanded name first when the alias is
// secure, then at the host's own name) and checks the chain the MX served
// against them with the sender's own verification (internal/dane: DANE-EE
// on the key alone, DANE-TA with the chain and the reference names).
func checkDANE(ctx context.Context, r dns.Resolver, h *HostReport, d *DomainReport) {
	// Not secure-only: the report says what is published and whether it
	// is signed.
	f := dane.Lookup(ctx, r, h.Host, false)
	recs, res, err, base := f.Records, f.Result, f.Err, f.Base
	name := "_25._tcp." + base
	names := dane.ReferenceNames(base, h.Host)
	d.DNSSEC["TLSA "+name] = res.Authentic
	if err != nil {
		if !dns.IsNotFound(err) {
			h.DANE = &DANEReport{Name: name, Records: []TLSARecord{}, Error: err.Error(), Verdict: "look-up failed"}
			h.Findings = append(h.Findings, Finding{ID: "dane-lookup-failed", Severity: Medium, Target: h.Target,
				Title: "TLSA look-up for " + name + " failed",
				Why:   "DANE senders treat a failed TLSA look-up as a reason to defer mail (RFC 7672 2.2)",
				Fix:   "fix the DNS servers of the MX host's zone", Evidence: err.Error()})
		}
		return
	}
	dr := &DANEReport{Name: name, Records: []TLSARecord{}, Authentic: res.Authentic}
	h.DANE = dr
	for _, t := range recs {
		tr := TLSARecord{Usage: t.Usage, Selector: t.Selector, MatchingType: t.MatchingType, Data: hex.EncodeToString(t.CertData)}
		if len(dane.Usable([]dns.TLSA{t})) == 1 {
			dr.Usable++
			_, verr := dane.Verify(h.peerCerts, []dns.TLSA{t}, dane.Options{Names: names})
			tr.Matched = verr == nil
		}
		dr.Records = append(dr.Records, tr)
	}
	if dr.Usable > 0 {
		_, verr := dane.Verify(h.peerCerts, recs, dane.Options{Names: names})
		dr.Match = verr == nil
	}
	add := func(id string, sev Severity, title, why, fix, ev string) {
		h.Findings = append(h.Findings, Finding{ID: id, Severity: sev, Target: h.Target, Title: title, Why: why, Fix: fix, Evidence: ev})
	}
	switch {
	case !dr.Authentic:
		dr.Verdict = "not DNSSEC-signed: ignored by senders"
		add("dane-unsigned", Medium, "TLSA records for "+h.Host+" are not DNSSEC-authenticated",
			"DANE senders use TLSA only from signed zones (RFC 7672 2.2): the records protect nothing",
			"sign the MX host's zone (DNSSEC), or remove the TLSA records", "")
	case dr.Usable == 0:
		dr.Verdict = "no usable record (only PKIX-TA/PKIX-EE, which SMTP does not use)"
		add("dane-unusable", Medium, "TLSA records for "+h.Host+" are all unusable for SMTP",
			"usages 0 and 1 are not for SMTP (RFC 7672 3.1.3): senders treat the MX as having no usable TLSA and, under DANE, may refuse to deliver",
			"publish 3 1 1 (DANE-EE, SPKI, SHA-256) records", "")
	case len(h.peerCerts) == 0:
		dr.Verdict = "no certificate to compare"
		add("dane-no-tls", High, "TLSA published for "+h.Host+" but no TLS certificate was served",
			"DANE senders require TLS to this MX and will not deliver",
			"offer STARTTLS with the certificate the TLSA records name", "")
	case !dr.Match:
		dr.Verdict = "no record matches the served certificate"
		add("dane-mismatch", High, "TLSA records for "+h.Host+" do not match its certificate",
			"DANE senders refuse to deliver to this MX (RFC 7672 2.2): mail queues, then bounces",
			"publish a TLSA record for the served key (e.g. 3 1 1 of the current SPKI) before rolling keys", fmt.Sprintf("leaf sha256 %s", h.TLS.Chain[0].SHA256))
	default:
		dr.Verdict = "matches"
	}
}
