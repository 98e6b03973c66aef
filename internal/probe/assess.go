package probe

import (
	"fmt"
	"regexp"
	"strings"
)

// assessHost turns what a host showed into findings.
func assessHost(h *HostReport, o Options) {
	add := func(id string, sev Severity, title, why, fix, evidence string) {
		h.Findings = append(h.Findings, Finding{ID: id, Severity: sev, Target: h.Target, Title: title, Why: why, Fix: fix, Evidence: evidence})
	}
	submission := h.Mode == ModeSubmission || h.Mode == ModeSubmissions
	pw := portWords(h.Port)

	if !h.Reachable {
		add("unreachable", Medium, "no SMTP server answered",
			"a server that does not answer cannot receive mail; if it is an MX, senders queue and retry, then bounce",
			"check that the service runs and that the firewall lets the port through", h.Error)
		return
	}
	if h.Banner == "" && h.Error != "" {
		add("no-greeting", Medium, "no SMTP greeting",
			"the server accepted the connection but never greeted (or TLS failed first); senders give up",
			"check the service behind the port", h.Error)
	} else if h.Error != "" && h.Greeting == "" {
		add("greeting-refused", Medium, "the server refused the session",
			"a server that refuses at greeting or EHLO receives no mail from this client",
			"check the greeting and HELO policy", h.Error)
	}

	if v := versionInBanner(h.Banner); v != "" {
		add("banner-version", Info, "the greeting tells the software version",
			"a version number lets an attacker pick known vulnerabilities without probing",
			"set a greeting without the version (Postfix smtpd_banner, Exim smtp_banner, Sendmail SmtpGreetingMessage)", v)
	}
	if h.Greeting == "HELO" {
		add("no-esmtp", Low, "EHLO refused, only HELO",
			"without ESMTP there is no STARTTLS, SIZE or 8BITMIME: mail goes in clear and large messages fail late",
			"enable ESMTP", "")
	}

	// AUTH (RFC 4954; RFC 8314 for where submission belongs).
	if len(h.AuthBeforeTLS) > 0 && h.Mode != ModeSubmissions {
		add("auth-cleartext", High, "AUTH offered before TLS ("+strings.Join(h.AuthBeforeTLS, " ")+")",
			"passwords (or crackable challenge responses) can be sent in clear and read by anyone on the path",
			"offer AUTH only after STARTTLS (Postfix smtpd_tls_auth_only = yes) or only on port 465", "")
	}
	if h.Mode == ModeSMTP && h.Port == 25 && len(h.AuthAfterTLS) > 0 {
		add("auth-on-port-25", Low, "AUTH offered on "+pw,
			"port 25 is for server-to-server relay; AUTH there invites password guessing from the whole internet",
			"take submission to 587 or 465 (RFC 6409, RFC 8314) and turn AUTH off on 25", "")
	}
	if h.Mode == ModeSubmission && h.StartTLS && h.TLS != nil && h.TLS.Handshake && len(h.AuthAfterTLS) == 0 {
		add("submission-no-auth", Info, "submission port without AUTH after STARTTLS",
			"clients cannot log in here; unless submission is by client certificate or network, this port is of no use",
			"offer AUTH after STARTTLS on 587", "")
	}

	// STARTTLS and TLS (RFC 3207, RFC 8314, RFC 8996).
	if !h.StartTLS && h.Mode != ModeSubmissions && h.Greeting != "" {
		sev, why := Medium, "mail to this server travels in clear, and MTA-STS or DANE cannot be used"
		if submission {
			sev, why = High, "clients must send their passwords and mail in clear"
		}
		add("starttls-missing", sev, "STARTTLS not offered", why,
			"configure a certificate and offer STARTTLS (Postfix smtpd_tls_security_level = may)", "")
	}
	if t := h.TLS; t != nil {
		if !t.Handshake {
			sev := Medium
			if submission {
				sev = High
			}
			add("tls-failed", sev, "TLS handshake failed",
				"senders that require TLS cannot deliver, the others fall back to clear text",
				"check the certificate and key and the TLS settings", t.Error)
		} else {
			assessTLS(h, t, submission, add)
		}
	}

	// VRFY and EXPN (RFC 5321 3.5, 7.3).
	if v := h.VRFY; v != nil && v.Enumerates {
		add("vrfy-enumerates", Medium, "VRFY tells which users exist",
			"anyone can list valid addresses for spam and password guessing",
			"disable VRFY (Postfix disable_vrfy_command = yes) or answer 252 for every name", v.Known.Reply+" / "+v.Unknown.Reply)
	}
	if e := h.EXPN; e != nil && e.Code == 250 {
		add("expn-enabled", Medium, "EXPN expands lists and aliases",
			"anyone can read who is behind an alias or mailing list",
			"disable EXPN", e.Reply)
	}

	// Open relay.
	if r := h.Relay; r != nil {
		switch r.Verdict {
		case "open":
			if r.plainAccepted() {
				add("open-relay", High, fmt.Sprintf("open relay: RCPT accepted for %s (%d/%d forms)", r.Domain, r.Accepted, r.Tried),
					"anyone can send mail through this server to any domain: it will be used for spam and blocklisted",
					"relay only for your own networks and authenticated users (Postfix smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination, with a tight mynetworks)",
					r.acceptedList())
			} else {
				add("relay-forms-accepted", Medium, fmt.Sprintf("RCPT accepted for relay-style addresses (%d/%d forms)", r.Accepted, r.Tried),
					"addresses with %, ! , @ or a source route in them may be routed to another domain: if the server honours them it is an open relay (nmap reports it as one)",
					"refuse local parts that route elsewhere (Postfix: allow_percent_hack = no, swap_bangpath = no, and reject_unauth_destination)",
					r.acceptedList())
			}
		case "inconclusive":
			add("relay-inconclusive", Info, "open-relay test incomplete",
				"the server ended the session or timed out before all 16 forms were tried",
				"run again, or look at the transcript", fmt.Sprintf("%d/16 tried", r.Tried))
		}
	}
}

func assessTLS(h *HostReport, t *TLSReport, submission bool, add func(id string, sev Severity, title, why, fix, evidence string)) {
	var legacy []string
	modern := false
	for _, v := range t.Versions {
		switch {
		case !v.Accepted:
		case v.Version == "TLS 1.0" || v.Version == "TLS 1.1":
			legacy = append(legacy, v.Version)
		default:
			modern = true
		}
	}
	if len(t.Versions) > 0 && !modern {
		add("tls-no-modern", High, "neither TLS 1.2 nor TLS 1.3 accepted",
			"only deprecated TLS versions (RFC 8996) work: current clients and senders refuse them",
			"enable TLS 1.2 and 1.3", t.Version)
	} else if len(legacy) > 0 {
		add("tls-legacy-versions", Medium, strings.Join(legacy, " and ")+" accepted",
			"TLS 1.0 and 1.1 are deprecated (RFC 8996): weak hashes and ciphers, downgrade risk",
			"accept TLS 1.2 and newer only (Postfix smtpd_tls_protocols = >=TLSv1.2)", "")
	}
	if len(t.Chain) == 0 {
		return
	}
	leaf := t.Chain[0]
	sev := func(mx, sub Severity) Severity {
		if submission {
			return sub
		}
		return mx
	}
	if leaf.DaysLeft < 0 {
		add("cert-expired", sev(Medium, High), fmt.Sprintf("certificate expired %d days ago", -leaf.DaysLeft),
			"clients that check certificates (submission clients, MTA-STS and DANE senders) refuse the connection",
			"renew the certificate and reload the server", leaf.NotAfter.Format("2006-01-02"))
	} else if leaf.DaysLeft < 14 {
		add("cert-expiring", Low, fmt.Sprintf("certificate expires in %d days", leaf.DaysLeft),
			"once expired, checking clients refuse the connection",
			"renew now and check that renewal is automatic", leaf.NotAfter.Format("2006-01-02"))
	}
	switch {
	case leaf.SelfSigned:
		add("cert-self-signed", sev(Low, Medium), "self-signed certificate",
			"nobody can tell this certificate from an attacker's: MTA-STS senders and mail clients refuse it (on port 25 most senders accept it for opportunistic TLS, RFC 7435)",
			"use a certificate from a CA (ACME/Let's Encrypt) or publish DANE TLSA records", leaf.Subject)
	case !t.Trusted:
		add("cert-untrusted", sev(Low, Medium), "certificate chain not trusted",
			"the chain does not lead to a trusted root (missing intermediate, private CA): checking clients refuse it",
			"serve the full chain (leaf then intermediates) from a public CA", t.VerifyError)
	}
	if t.NameChecked != "" && !t.NameMatch {
		add("cert-name-mismatch", sev(Low, Medium), "certificate does not name "+t.NameChecked,
			"clients that check the name (MTA-STS senders, mail clients) refuse the connection",
			"get a certificate whose SANs include "+t.NameChecked, strings.Join(leaf.SANs, ", "))
	}
}

var versionRe = regexp.MustCompile(`\b(?:Postfix|Exim|Sendmail|Haraka|mox|OpenSMTPD|Microsoft ESMTP MAIL Service, Version:|qmail)[ /]?v?(\d+\.\d+[\w.\-+/]*)`)

// versionInBanner returns the software version the greeting shows.
func versionInBanner(banner string) string {
	m := versionRe.FindStringSubmatch(banner)
	if m == nil {
		return ""
	}
	return m[0]
}
