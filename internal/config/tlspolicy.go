package config

import (
	"strings"
	"time"
)

// TLSRPT configures the SMTP TLS reports (RFC 8460) posthorn sends to
// the domains it delivers to: [tls_rpt].
type TLSRPT struct {
	Enabled bool
	// ReportFrom is the sender of the reports; default
	// "tls-reports@" + the first [[domain]] (or hostname).
	ReportFrom string
	// Organization is the report's organization-name; default hostname.
	Organization string
	// Contact is the report's contact-info; default
	// "postmaster@" + the first [[domain]] (or hostname).
	Contact string
	// Period is how long one report covers; default a day (RFC 8460
	// 4.1), aligned to UTC midnight. Shorter periods are for tests.
	Period time.Duration
}

// tlsPolicyLevels are the values of [tls_policy] (tlspolicy.Overrides).
var tlsPolicyLevels = []string{"none", "may", "encrypt", "verify", "dane", "dane-only"}

func (d decoder) tlsPolicy(c *Config, p path, v any) {
	m, ok := v.(map[string]any)
	if !ok {
		d.r.add(p, "expected a table of \"domain\" = \"level\", got %s", describe(v))
		return
	}
	for k, val := range m {
		var s string
		n := len(d.r.errs)
		d.str(&s)(p.with(k), val)
		if len(d.r.errs) == n {
			if c.TLSPolicy == nil {
				c.TLSPolicy = map[string]string{}
			}
			c.TLSPolicy[k] = s
		}
	}
}

func (d decoder) tlsRPT(c *Config, p path, v any) {
	t := &c.TLSRPT
	d.table(p, v, fields{
		"enabled":      d.boolean(&t.Enabled),
		"report_from":  d.str(&t.ReportFrom),
		"organization": d.str(&t.Organization),
		"contact":      d.str(&t.Contact),
		"period":       d.duration(&t.Period),
	})
}

// validateTLSPolicy checks [tls_policy], [tls_rpt] and the outbound TLS
// keys of [delivery], filling in defaults.
func validateTLSPolicy(c *Config, r *reporter) {
	norm := map[string]string{}
	for k, v := range c.TLSPolicy {
		p := path{"tls_policy", k}
		sub := strings.HasPrefix(k, ".")
		name, err := normalizeDomain(strings.TrimPrefix(k, "."))
		if err != nil {
			r.add(p, "%v: expected a domain (\"example.net\") or a domain and its subdomains (\".example.net\")", err)
			continue
		}
		ok := false
		for _, l := range tlsPolicyLevels {
			ok = ok || v == l
		}
		if !ok {
			r.add(p, "%q: expected one of %s", v, strings.Join(tlsPolicyLevels, ", "))
			continue
		}
		if sub {
			name = "." + name
		}
		norm[name] = v
	}
	if len(norm) > 0 {
		c.TLSPolicy = norm
	}
	if c.Delivery.MTASTSPort < 1 || c.Delivery.MTASTSPort > 65535 {
		r.add(path{"delivery", "mta_sts_port"}, "%d: expected a TCP port (443 on the internet)", c.Delivery.MTASTSPort)
	}
	t := &c.TLSRPT
	origin := c.Hostname
	if len(c.Domains) > 0 {
		origin = c.Domains[0].Name
	}
	if t.ReportFrom == "" {
		t.ReportFrom = "tls-reports@" + origin
	} else if err := checkAddress(t.ReportFrom); err != nil {
		r.add(path{"tls_rpt", "report_from"}, "%v: expected an address such as \"tls-reports@example.com\"", err)
	}
	if t.Organization == "" {
		t.Organization = c.Hostname
	}
	if t.Contact == "" {
		t.Contact = "postmaster@" + origin
	}
	if t.Period == 0 {
		t.Period = 24 * time.Hour
	}
	if t.Period < time.Second || (t.Period > time.Hour && (24*time.Hour)%t.Period != 0 && t.Period%(24*time.Hour) != 0) {
		r.add(path{"tls_rpt", "period"}, "%s: expected \"24h\" (RFC 8460), or a period that divides a day", t.Period)
	}
}
