package probe

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/hex"
	"fmt"

	"github.com/posthorn/posthorn/internal/dns"
)

// checkDANE looks up _25._tcp.<mx> TLSA and compares the records with the
// chain the MX served (RFC 6698 2.1, RFC 7672 3.1).
func checkDANE(ctx context.Context, r dns.Resolver, h *HostReport, d *DomainReport) {
	recs, res, err := r.LookupTLSA(ctx, 25, "tcp", h.Host)
	name := "_25._tcp." + h.Host
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
		if t.Usage == 2 || t.Usage == 3 {
			dr.Usable++
			tr.Matched = tlsaMatches(t, h.peerCerts)
			if tr.Matched {
				dr.Match = true
			}
		}
		dr.Records = append(dr.Records, tr)
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

// tlsaMatches compares one DANE-TA or DANE-EE record with the chain.
func tlsaMatches(t dns.TLSA, chain []*x509.Certificate) bool {
	var cands []*x509.Certificate
	switch t.Usage {
	case 3: // DANE-EE: the leaf only.
		if len(chain) > 0 {
			cands = chain[:1]
		}
	case 2: // DANE-TA: a certificate of the chain (RFC 7671 5.2.2 lets a served TA match).
		cands = chain
	}
	for _, c := range cands {
		var data []byte
		switch t.Selector {
		case 0:
			data = c.Raw
		case 1:
			data = c.RawSubjectPublicKeyInfo
		default:
			continue
		}
		switch t.MatchingType {
		case 0:
		case 1:
			s := sha256.Sum256(data)
			data = s[:]
		case 2:
			s := sha512.Sum512(data)
			data = s[:]
		default:
			continue
		}
		if bytes.Equal(data, t.CertData) {
			return true
		}
	}
	return false
}
