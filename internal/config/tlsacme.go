package config

import (
	"net/netip"
	"net/url"
	"strings"
	"time"
)

// ACME says how to get the certificate from an ACME CA (RFC 8555) instead
// of files: [tls.acme]. The certificate, its key (kept across renewals)
// and the account key live in data_dir/acme/.
type ACME struct {
	Email string // the account's contact, for the CA's expiry warnings; "" = none
	// Directory is the CA's ACME directory URL (Let's Encrypt by default).
	Directory string
	// DirectoryCA is a PEM file of roots to trust for the directory's
	// HTTPS certificate (a private CA, or Pebble in tests); "" = the
	// system's roots.
	DirectoryCA string
	// Challenge is "tls-alpn-01" (port 443) or "http-01" (port 80).
	Challenge string
	// Listen are the addresses the challenge is answered on. For
	// tls-alpn-01, addresses that are also in mta_sts.listen are served by
	// the MTA-STS listener. Default: port 443 or 80, after Challenge.
	Listen []string
	// Names are further names for the certificate, besides hostname and
	// the mta-sts names (see Config.ACMENames).
	Names []string
}

// MTASTS configures the HTTPS listener that serves our own MTA-STS
// policy (RFC 8461 3.3) at https://mta-sts.DOMAIN/.well-known/mta-sts.txt
// for every [[domain]]: [mta_sts].
type MTASTS struct {
	Listen []string      // empty: off
	Mode   string        // "testing" (default), "enforce" or "none"
	MaxAge time.Duration // whole seconds; default a week
}

// Defaults of [tls.acme] and [mta_sts].
const (
	DefaultACMEDirectory = "https://acme-v02.api.letsencrypt.org/directory"
	DefaultMTASTSMaxAge  = 7 * 24 * time.Hour
	maxMTASTSMaxAge      = 31557600 * time.Second // RFC 8461 3.2
)

// ACMENames returns the names the ACME certificate is for: hostname
// first, then mta-sts.DOMAIN for every domain when the policy listener is
// on, then tls.acme.names; without repeats. Nil without [tls.acme].
func (c *Config) ACMENames() []string {
	if c.TLS.ACME == nil {
		return nil
	}
	names := []string{c.Hostname}
	if len(c.MTASTS.Listen) > 0 {
		for _, d := range c.Domains {
			names = append(names, "mta-sts."+d.Name)
		}
	}
	names = append(names, c.TLS.ACME.Names...)
	seen := map[string]bool{}
	out := names[:0]
	for _, n := range names {
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	return out
}

func (d decoder) acme(c *Config, p path, v any) {
	a := &ACME{}
	d.table(p, v, fields{
		"email":        d.str(&a.Email),
		"directory":    d.str(&a.Directory),
		"directory_ca": d.str(&a.DirectoryCA),
		"challenge":    d.str(&a.Challenge),
		"listen":       d.strs(&a.Listen),
		"names":        d.strs(&a.Names),
	})
	c.TLS.ACME = a
}

func (d decoder) mtaSTS(c *Config, p path, v any) {
	m := &c.MTASTS
	d.table(p, v, fields{
		"listen":  d.strs(&m.Listen),
		"mode":    d.str(&m.Mode),
		"max_age": d.duration(&m.MaxAge),
	})
}

// validateACMEAndMTASTS checks [tls.acme] and [mta_sts], filling in
// their defaults.
func validateACMEAndMTASTS(c *Config, r *reporter) {
	taken := map[string]string{} // listen address -> key, of the [listen] roles
	for key, addrs := range map[string][]string{
		"smtp": c.Listen.SMTP, "submission": c.Listen.Submission, "submissions": c.Listen.Submissions, "metrics": {c.Listen.Metrics},
	} {
		for _, a := range addrs {
			if a != "" && !strings.HasSuffix(a, ":0") {
				taken[normAddr(a)] = "listen." + key
			}
		}
	}
	checkListen := func(p path, addrs []string) {
		for i, a := range addrs {
			q := p.with(idx(i))
			if err := checkHostPort(a, false); err != nil {
				r.add(q, "%v: expected an address to listen on, as in \"0.0.0.0:443\" or \"[::]:443\"", err)
				continue
			}
			if prev, dup := taken[normAddr(a)]; dup {
				r.add(q, "%q is already used by %s: each address can serve one role", a, prev)
			}
		}
	}

	m := &c.MTASTS
	if m.Mode == "" {
		m.Mode = "testing"
	}
	if m.MaxAge == 0 {
		m.MaxAge = DefaultMTASTSMaxAge
	}
	switch m.Mode {
	case "testing", "enforce", "none":
	default:
		r.add(path{"mta_sts", "mode"}, "%q: expected \"testing\", \"enforce\" or \"none\" (RFC 8461 5)", m.Mode)
	}
	if m.MaxAge%time.Second != 0 || m.MaxAge > maxMTASTSMaxAge {
		r.add(path{"mta_sts", "max_age"}, "%s: expected whole seconds, at most 31557600s (about a year; RFC 8461 3.2), as in \"7d\"", m.MaxAge)
	}
	checkListen(path{"mta_sts", "listen"}, m.Listen)
	if len(m.Listen) > 0 && len(c.Domains) == 0 {
		r.add(path{"mta_sts", "listen"}, "there is no [[domain]] to serve a policy for")
	}

	a := c.TLS.ACME
	if a == nil {
		return
	}
	p := path{"tls", "acme"}
	if c.TLS.Cert != "" || c.TLS.Key != "" {
		r.add(p, "set either cert and key, or [tls.acme], not both")
	}
	if a.Directory == "" {
		a.Directory = DefaultACMEDirectory
	}
	if u, err := url.Parse(a.Directory); err != nil || u.Scheme != "https" || u.Host == "" {
		r.add(p.with("directory"), "%q: expected the https:// URL of the CA's ACME directory, as in %q", a.Directory, DefaultACMEDirectory)
	}
	if a.Email != "" {
		if err := checkAddress(a.Email); err != nil {
			r.add(p.with("email"), "%v: expected an address such as \"postmaster@example.com\"", err)
		}
	}
	if a.Challenge == "" {
		a.Challenge = "tls-alpn-01"
	}
	switch a.Challenge {
	case "tls-alpn-01":
		if a.Listen == nil {
			a.Listen = []string{"0.0.0.0:443", "[::]:443"}
		}
		if len(a.Listen) == 0 && len(m.Listen) == 0 {
			r.add(p.with("listen"), "nothing would answer the tls-alpn-01 challenge: listen on port 443 here or in mta_sts.listen")
		}
	case "http-01":
		if a.Listen == nil {
			a.Listen = []string{"0.0.0.0:80", "[::]:80"}
		}
		if len(a.Listen) == 0 {
			r.add(p.with("listen"), "nothing would answer the http-01 challenge: listen on port 80")
		}
		for _, x := range a.Listen {
			for _, y := range m.Listen {
				if normAddr(x) == normAddr(y) && !strings.HasSuffix(x, ":0") {
					r.add(p.with("listen"), "%q is also in mta_sts.listen, which speaks HTTPS: http-01 needs plain HTTP (port 80)", x)
				}
			}
		}
	default:
		r.add(p.with("challenge"), "%q: expected \"tls-alpn-01\" (port 443) or \"http-01\" (port 80)", a.Challenge)
	}
	checkListen(p.with("listen"), a.Listen)
	for i, n := range a.Names {
		norm, err := normalizeDomain(n)
		if err != nil {
			r.add(p.with("names", idx(i)), "%v: expected a host name such as \"smtp.example.com\"", err)
			continue
		}
		a.Names[i] = norm
	}
}

func normAddr(a string) string {
	if ap, err := netip.ParseAddrPort(a); err == nil {
		return ap.String()
	}
	return a
}
