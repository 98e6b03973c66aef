package config

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// reporter collects problems with their place in the file.
type reporter struct {
	file string
	loc  *locator
	errs []*Error
	seen map[string]bool // one problem per key is enough
}

func (r *reporter) add(p path, format string, args ...any) {
	if r.seen[p.key()] {
		return
	}
	if r.seen == nil {
		r.seen = map[string]bool{}
	}
	r.seen[p.key()] = true
	r.errs = append(r.errs, &Error{File: r.file, Line: r.loc.line(p), Key: p.String(), Msg: fmt.Sprintf(format, args...)})
}

// err returns nil, the one problem, or all of them in file order.
func (r *reporter) err() error {
	switch len(r.errs) {
	case 0:
		return nil
	case 1:
		return r.errs[0]
	}
	sort.SliceStable(r.errs, func(i, j int) bool { return r.errs[i].Line < r.errs[j].Line })
	errs := make([]error, len(r.errs))
	for i, e := range r.errs {
		errs[i] = e
	}
	return errors.Join(errs...)
}

// base is what a configuration file starts from: the values of keys it
// leaves out.
func base(hostname string) *Config {
	return &Config{
		Hostname:  hostname,
		DataDir:   "/var/lib/posthorn",
		LogLevel:  "info",
		LogFormat: "text",
		Listen: Listen{
			SMTP:        []string{"0.0.0.0:25", "[::]:25"},
			Submission:  []string{"0.0.0.0:587", "[::]:587"},
			Submissions: []string{"0.0.0.0:465", "[::]:465"},
		},
		Aliases:    map[string][]string{},
		Addressing: Addressing{SubaddressDelimiter: "+"},
		Submission: Submission{SenderMustOwn: true},
		Limits: Limits{
			MessageSize:       50_000_000,
			Recipients:        100, // RFC 5321 4.5.3.1.8: at least 100 must be accepted
			Connections:       1000,
			ConnectionsPerIP:  20,
			CommandTimeout:    5 * time.Minute,
			DataTimeout:       3 * time.Minute,
			ErrorsPerSession:  20, // Postfix smtpd_hard_error_limit; nmap's 16 relay tries must fit
			AuthFailuresPerIP: 5,

			ConnectionsPerIPv6Net: 20,
			ConnectionRate:        0, // off, as Postfix's anvil: big senders use few addresses
			MessageRate:           0,
			RecipientsPerSession:  1000,
			SoftErrorLimit:        10, // Postfix smtpd_soft_error_limit
			ErrorDelay:            250 * time.Millisecond,
			MinDataRate:           500, // Postfix smtpd_min_data_rate
			MessageMemory:         128_000_000,
			LineLength:            1000,
		},
		Checks:   Checks{DMARCReject: "reject", DMARCQuarantine: "quarantine"},
		Screen:   Screen{CheckAt: "rcpt", GreylistDelay: 5 * time.Minute},
		Relay:    Relay{SmarthostTLS: "required"},
		Delivery: DeliveryOptions{Port: 25, DANE: true, MTASTS: true, MTASTSPort: 443},
		Queue: Queue{
			FirstRetry:   5 * time.Minute,
			MaxRetry:     time.Hour,
			Lifetime:     5 * 24 * time.Hour,
			DelayWarning: 4 * time.Hour,
		},
	}
}

func parse(name string, data []byte, hostname string) (*Config, error) {
	var raw map[string]any
	if _, err := toml.Decode(string(data), &raw); err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			msg := pe.Message
			if pe.Usage != "" {
				msg += " (" + strings.TrimSpace(pe.Usage) + ")"
			}
			line := pe.Position.Line
			if st := pe.Position.Start; st >= 0 && st < len(data) {
				// The decoder counts an offending newline as the next line.
				line = 1 + strings.Count(string(data[:st]), "\n")
			}
			return nil, &Error{File: name, Line: line, Key: pe.LastKey, Msg: "TOML syntax: " + msg}
		}
		return nil, &Error{File: name, Msg: err.Error()}
	}
	r := &reporter{file: name, loc: locate(string(data))}
	c := base(hostname)
	c.File = name
	d := decoder{r: r}
	d.config(c, raw)
	validate(c, r)
	if err := r.err(); err != nil {
		return nil, err
	}
	return c, nil
}

// decoder moves values from the decoded TOML tree into a Config, checking
// types and reporting unknown keys. A value in error leaves the default in
// place, so that validation does not report it twice.
type decoder struct {
	r *reporter
}

type fields map[string]func(p path, v any)

func (d decoder) table(p path, v any, f fields) {
	m, ok := v.(map[string]any)
	if !ok {
		d.r.add(p, "expected a table, got %s", describe(v))
		return
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if h, ok := f[k]; ok {
			h(p.with(k), m[k])
			continue
		}
		known := make([]string, 0, len(f))
		for k := range f {
			known = append(known, k)
		}
		sort.Strings(known)
		where := "here"
		if len(p) > 0 {
			where = "in [" + p.String() + "]"
		}
		d.r.add(p.with(k), "unknown key; the keys allowed %s are %s", where, strings.Join(known, ", "))
	}
}

func describe(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case int64:
		return "a number"
	case float64:
		return "a decimal number"
	case bool:
		return "true/false"
	case []any, []map[string]any:
		return "a list"
	case map[string]any:
		return "a table"
	default:
		return "a date or time"
	}
}

func (d decoder) str(dst *string) func(path, any) {
	return func(p path, v any) {
		s, ok := v.(string)
		if !ok {
			d.r.add(p, "expected a string in quotes, got %s", describe(v))
			return
		}
		*dst = s
	}
}

// strs accepts a list of strings, or one string as a list of one.
func (d decoder) strs(dst *[]string) func(path, any) {
	return func(p path, v any) {
		if s, ok := v.(string); ok {
			*dst = []string{s}
			return
		}
		l, ok := v.([]any)
		if !ok {
			d.r.add(p, "expected a list of strings, got %s", describe(v))
			return
		}
		out := make([]string, 0, len(l))
		bad := false
		for i, e := range l {
			s, ok := e.(string)
			if !ok {
				d.r.add(p.with(idx(i)), "expected a list of strings, got %s in it", describe(e))
				bad = true
				continue
			}
			out = append(out, s)
		}
		if !bad {
			*dst = out
		}
	}
}

func (d decoder) boolean(dst *bool) func(path, any) {
	return func(p path, v any) {
		b, ok := v.(bool)
		if !ok {
			d.r.add(p, "expected true or false, got %s", describe(v))
			return
		}
		*dst = b
	}
}

// count accepts a whole number, 0 or more.
func (d decoder) count(dst *int) func(path, any) {
	return func(p path, v any) {
		n, ok := v.(int64)
		if !ok {
			d.r.add(p, "expected a whole number (0 for no limit), got %s", describe(v))
			return
		}
		if n < 0 || n > math.MaxInt32 {
			d.r.add(p, "%d is out of range: expected a whole number from 0 (no limit) to %d", n, math.MaxInt32)
			return
		}
		*dst = int(n)
	}
}

func (d decoder) size(dst *int64) func(path, any) {
	return func(p path, v any) {
		switch x := v.(type) {
		case int64:
			if x < 0 {
				d.r.add(p, "%d is negative: expected a size such as \"50MB\", or 0 for no limit", x)
				return
			}
			*dst = x
		case string:
			n, err := parseSize(x)
			if err != nil {
				d.r.add(p, "%q: %v", x, err)
				return
			}
			*dst = n
		default:
			d.r.add(p, "expected a size such as \"50MB\", got %s", describe(v))
		}
	}
}

func (d decoder) duration(dst *time.Duration) func(path, any) {
	return func(p path, v any) {
		s, ok := v.(string)
		if !ok {
			d.r.add(p, `expected a duration in quotes such as "5m" or "5d", got %s`, describe(v))
			return
		}
		t, err := parseDuration(s)
		if err != nil {
			d.r.add(p, "%q: %v", s, err)
			return
		}
		if t <= 0 {
			d.r.add(p, "%q: expected a duration longer than zero", s)
			return
		}
		*dst = t
	}
}

// tables accepts an array of tables ([[name]] or a list of inline tables).
func (d decoder) tables(p path, v any, each func(p path, m any)) {
	switch l := v.(type) {
	case []map[string]any:
		for i, m := range l {
			each(p.with(idx(i)), m)
		}
	case []any:
		for i, m := range l {
			each(p.with(idx(i)), m)
		}
	default:
		d.r.add(p, "expected [[%s]] tables, got %s", p.String(), describe(v))
	}
}

func (d decoder) config(c *Config, raw map[string]any) {
	d.table(nil, raw, fields{
		"hostname":   d.str(&c.Hostname),
		"data_dir":   d.str(&c.DataDir),
		"log_level":  d.str(&c.LogLevel),
		"log_format": d.str(&c.LogFormat),
		"listen": func(p path, v any) {
			d.table(p, v, fields{
				"smtp":        d.strs(&c.Listen.SMTP),
				"submission":  d.strs(&c.Listen.Submission),
				"submissions": d.strs(&c.Listen.Submissions),
				"metrics":     d.str(&c.Listen.Metrics),
			})
		},
		"tls": func(p path, v any) {
			d.table(p, v, fields{
				"cert": d.str(&c.TLS.Cert),
				"key":  d.str(&c.TLS.Key),
				"acme": func(p path, v any) { d.acme(c, p, v) },
			})
		},
		"domain": func(p path, v any) {
			d.tables(p, v, func(p path, m any) {
				dom := Domain{Delivery: "maildir"}
				d.table(p, m, fields{
					"name":       d.str(&dom.Name),
					"delivery":   d.str(&dom.Delivery),
					"catch_all":  d.str(&dom.CatchAll),
					"accept_any": d.boolean(&dom.AcceptAny),
					"mailboxes":  d.strs(&dom.Mailboxes),
					"dkim": func(p path, v any) {
						d.tables(p, v, func(p path, m any) {
							var k DKIMKey
							d.table(p, m, fields{
								"selector": d.str(&k.Selector),
								"key":      d.str(&k.Key),
							})
							dom.DKIM = append(dom.DKIM, k)
						})
					},
				})
				c.Domains = append(c.Domains, dom)
			})
		},
		"aliases": func(p path, v any) {
			m, ok := v.(map[string]any)
			if !ok {
				d.r.add(p, "expected a table of \"address\" = [\"address\", ...], got %s", describe(v))
				return
			}
			for k, t := range m {
				var targets []string
				n := len(d.r.errs)
				d.strs(&targets)(p.with(k), t)
				if len(d.r.errs) == n {
					c.Aliases[k] = targets
				}
			}
		},
		"mta_sts":    func(p path, v any) { d.mtaSTS(c, p, v) },
		"tls_policy": func(p path, v any) { d.tlsPolicy(c, p, v) },
		"tls_rpt":    func(p path, v any) { d.tlsRPT(c, p, v) },
		"addressing": func(p path, v any) {
			d.table(p, v, fields{
				"subaddress_delimiter": d.str(&c.Addressing.SubaddressDelimiter),
			})
		},
		"relay": func(p path, v any) {
			d.table(p, v, fields{
				"trusted_networks": func(p path, v any) {
					var nets []string
					d.strs(&nets)(p, v)
					c.Relay.TrustedNetworks = nil
					for i, s := range nets {
						n, err := parseNetwork(s)
						if err != nil {
							d.r.add(p.with(idx(i)), "%v", err)
							continue
						}
						c.Relay.TrustedNetworks = append(c.Relay.TrustedNetworks, n)
					}
				},
				"smarthost":               d.str(&c.Relay.Smarthost),
				"smarthost_tls":           d.str(&c.Relay.SmarthostTLS),
				"smarthost_user":          d.str(&c.Relay.SmarthostUser),
				"smarthost_password_file": d.str(&c.Relay.SmarthostPasswordFile),
			})
		},
		"submission": func(p path, v any) {
			d.table(p, v, fields{
				"sender_must_own": d.boolean(&c.Submission.SenderMustOwn),
			})
		},
		"limits": func(p path, v any) {
			l := &c.Limits
			d.table(p, v, fields{
				"message_size":         d.size(&l.MessageSize),
				"recipients":           d.count(&l.Recipients),
				"connections":          d.count(&l.Connections),
				"connections_per_ip":   d.count(&l.ConnectionsPerIP),
				"command_timeout":      d.duration(&l.CommandTimeout),
				"data_timeout":         d.duration(&l.DataTimeout),
				"errors_per_session":   d.count(&l.ErrorsPerSession),
				"auth_failures_per_ip": d.count(&l.AuthFailuresPerIP),

				"connections_per_ipv6_net": d.count(&l.ConnectionsPerIPv6Net),
				"connection_rate":          d.count(&l.ConnectionRate),
				"message_rate":             d.count(&l.MessageRate),
				"recipients_per_session":   d.count(&l.RecipientsPerSession),
				"soft_error_limit":         d.count(&l.SoftErrorLimit),
				"error_delay":              d.duration(&l.ErrorDelay),
				"min_data_rate":            d.count(&l.MinDataRate),
				"message_memory":           d.size(&l.MessageMemory),
				"line_length":              d.count(&l.LineLength),
				"min_free_space":           d.size(&l.MinFreeSpace),
			})
		},
		"dns": func(p path, v any) {
			d.table(p, v, fields{
				"servers": d.strs(&c.DNS.Servers),
			})
		},
		"checks": func(p path, v any) {
			d.table(p, v, fields{
				"dmarc_reject":     d.str(&c.Checks.DMARCReject),
				"dmarc_quarantine": d.str(&c.Checks.DMARCQuarantine),
			})
		},
		"delivery": func(p path, v any) {
			d.table(p, v, fields{
				"port":         d.count(&c.Delivery.Port),
				"timeout":      d.duration(&c.Delivery.Timeout),
				"dane":         d.boolean(&c.Delivery.DANE),
				"mta_sts":      d.boolean(&c.Delivery.MTASTS),
				"tls_ca":       d.str(&c.Delivery.TLSCA),
				"mta_sts_port": d.count(&c.Delivery.MTASTSPort),
			})
		},
		"screen": func(p path, v any) {
			sc := &c.Screen
			d.table(p, v, fields{
				"dnsbl":          d.strs(&sc.DNSBL),
				"dnswl":          d.strs(&sc.DNSWL),
				"check_at":       d.str(&sc.CheckAt),
				"require_fcrdns": d.boolean(&sc.RequireFCrDNS),
				"strict_helo":    d.boolean(&sc.StrictHelo),
				"greylisting":    d.boolean(&sc.Greylisting),
				"greylist_delay": d.duration(&sc.GreylistDelay),
			})
		},
		"queue": func(p path, v any) {
			q := &c.Queue
			d.table(p, v, fields{
				"first_retry":   d.duration(&q.FirstRetry),
				"max_retry":     d.duration(&q.MaxRetry),
				"lifetime":      d.duration(&q.Lifetime),
				"delay_warning": d.duration(&q.DelayWarning),
			})
		},
	})
}

// validate checks values against each other and normalises domain names.
// Paths carry array indices so that the locator finds the right element.
func validate(c *Config, r *reporter) {
	if h, err := normalizeDomain(c.Hostname); err != nil {
		r.add(path{"hostname"}, "%v: expected the fully qualified name of this server, as in \"mx.example.com\"", err)
	} else {
		c.Hostname = h
	}
	if c.DataDir == "" || strings.ContainsAny(c.DataDir, "\x00\r\n") {
		r.add(path{"data_dir"}, "expected a directory path, as in \"/var/lib/posthorn\"")
	}
	for i, srv := range c.DNS.Servers {
		if ap, err := netip.ParseAddrPort(srv); err == nil {
			c.DNS.Servers[i] = ap.String()
		} else if a, err := netip.ParseAddr(srv); err == nil {
			c.DNS.Servers[i] = netip.AddrPortFrom(a, 53).String()
		} else {
			r.add(path{"dns", "servers", idx(i)}, "%q: expected a resolver's IP address, with an optional port, as in \"127.0.0.1\" or \"[::1]:53\"", srv)
		}
	}
	for key, v := range map[string]string{"dmarc_reject": c.Checks.DMARCReject, "dmarc_quarantine": c.Checks.DMARCQuarantine} {
		switch v {
		case "reject", "quarantine", "accept":
		default:
			r.add(path{"checks", key}, "%q: expected \"reject\", \"quarantine\" or \"accept\"", v)
		}
	}
	switch c.Relay.SmarthostTLS {
	case "required", "verify", "optional":
	default:
		r.add(path{"relay", "smarthost_tls"}, "%q: expected \"required\", \"verify\" or \"optional\"", c.Relay.SmarthostTLS)
	}
	if (c.Relay.SmarthostUser == "") != (c.Relay.SmarthostPasswordFile == "") {
		r.add(path{"relay", "smarthost_user"}, "smarthost_user and smarthost_password_file go together")
	}
	if c.Delivery.Port < 1 || c.Delivery.Port > 65535 {
		r.add(path{"delivery", "port"}, "%d: expected a TCP port (25 for delivery on the internet)", c.Delivery.Port)
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		r.add(path{"log_level"}, "%q: expected \"debug\", \"info\", \"warn\" or \"error\"", c.LogLevel)
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		r.add(path{"log_format"}, "%q: expected \"text\" or \"json\"", c.LogFormat)
	}

	seen := map[string]string{} // listen address -> key
	listen := func(key string, addrs []string) {
		for i, a := range addrs {
			p := path{"listen", key, idx(i)}
			if err := checkHostPort(a, false); err != nil {
				r.add(p, "%v: expected an address to listen on, as in \"0.0.0.0:25\", \"[::]:25\" or \"127.0.0.1:2525\"", err)
				continue
			}
			norm := a
			if ap, err := netip.ParseAddrPort(a); err == nil {
				norm = ap.String()
			}
			// Port 0 lets the kernel choose a free port each time (tests).
			if prev, dup := seen[norm]; dup && !strings.HasSuffix(norm, ":0") {
				r.add(p, "%q is already used by listen.%s: each address can serve one role", a, prev)
				continue
			}
			seen[norm] = key
		}
	}
	listen("smtp", c.Listen.SMTP)
	listen("submission", c.Listen.Submission)
	listen("submissions", c.Listen.Submissions)
	if c.Listen.Metrics != "" {
		listen("metrics", []string{c.Listen.Metrics})
	}

	if (c.TLS.Cert == "") != (c.TLS.Key == "") {
		k := "key"
		if c.TLS.Cert == "" {
			k = "cert"
		}
		r.add(path{"tls", k}, "missing: set both cert and key, or neither for a self-signed certificate in data_dir")
	}
	validateACMEAndMTASTS(c, r)
	validateTLSPolicy(c, r)

	domains := map[string]int{}
	for i := range c.Domains {
		dom := &c.Domains[i]
		p := path{"domain", idx(i)}
		name, err := normalizeDomain(dom.Name)
		if err != nil {
			if dom.Name == "" {
				r.add(p.with("name"), "missing: every [[domain]] needs a name, as in name = \"example.com\"")
			} else {
				r.add(p.with("name"), "%v: expected a domain name such as \"example.com\"", err)
			}
		} else {
			if j, dup := domains[name]; dup {
				r.add(p.with("name"), "%q is listed twice (also in [[domain]] number %d)", dom.Name, j+1)
			}
			domains[name] = i
			dom.Name = name
		}
		if _, err := ParseDelivery(dom.Delivery); err != nil {
			r.add(p.with("delivery"), "%q: %v", dom.Delivery, err)
		}
		if dom.CatchAll != "" {
			if strings.Contains(dom.CatchAll, "@") {
				if err := checkAddress(dom.CatchAll); err != nil {
					r.add(p.with("catch_all"), "%v: expected a local part such as \"postmaster\", or an address", err)
				}
			} else if err := checkMailboxName(dom.CatchAll); err != nil {
				r.add(p.with("catch_all"), "%v: expected a local part such as \"postmaster\", or an address", err)
			}
		}
		for j, m := range dom.Mailboxes {
			if err := checkMailboxName(m); err != nil {
				r.add(p.with("mailboxes", idx(j)), "%v: expected local parts such as \"bob\"", err)
			}
		}
		for j, k := range dom.DKIM {
			q := p.with("dkim", idx(j))
			if err := checkDomain(k.Selector); err != nil {
				r.add(q.with("selector"), "%q: expected a DNS label such as \"ed1\" or \"2026a\"", k.Selector)
			}
			if k.Key == "" {
				r.add(q.with("key"), "missing: expected the path of the private key file")
			}
		}
	}

	aliasKeys := make([]string, 0, len(c.Aliases))
	for k := range c.Aliases {
		aliasKeys = append(aliasKeys, k)
	}
	sort.Slice(aliasKeys, func(i, j int) bool { // file order, for duplicates
		li, lj := r.loc.line(path{"aliases", aliasKeys[i]}), r.loc.line(path{"aliases", aliasKeys[j]})
		if li != lj {
			return li < lj
		}
		return aliasKeys[i] < aliasKeys[j]
	})
	lowered := map[string]string{}
	for _, k := range aliasKeys {
		p := path{"aliases", k}
		if err := checkAddress(k); err != nil {
			r.add(p, "%v: expected an address such as \"postmaster@example.com\"", err)
		} else {
			dom := addressKey(k)[strings.LastIndexByte(addressKey(k), '@')+1:]
			if _, ok := domains[dom]; !ok {
				r.add(p, "%s is not a local domain: add a [[domain]] with name = %q, or remove the alias", dom, dom)
			}
			if prev, dup := lowered[addressKey(k)]; dup {
				r.add(p, "same address as %q (addresses are compared without regard to case)", prev)
			}
			lowered[addressKey(k)] = k
		}
		targets := c.Aliases[k]
		if len(targets) == 0 {
			r.add(p, "expected at least one address to deliver to")
		}
		for i, t := range targets {
			if err := checkAddress(t); err != nil {
				r.add(p.with(idx(i)), "%v: expected full addresses such as \"alice@example.com\"", err)
			}
		}
	}

	for _, ch := range c.Addressing.SubaddressDelimiter {
		if !strings.ContainsRune(atextSpecials, ch) {
			r.add(path{"addressing", "subaddress_delimiter"}, "%q: expected \"\" (off) or characters from %s, such as \"+\"", c.Addressing.SubaddressDelimiter, atextSpecials)
			break
		}
	}

	if c.Relay.Smarthost != "" {
		if err := checkSmarthost(c.Relay.Smarthost); err != nil {
			r.add(path{"relay", "smarthost"}, "%v: expected \"host\", \"host:port\" or \"[host]:port\", as in \"[relay.example.net]:587\"", err)
		}
	}

	validateScreen(c, r)
	q := c.Queue
	if q.FirstRetry > q.MaxRetry {
		r.add(path{"queue", "first_retry"}, "%s is longer than max_retry (%s): expected first_retry <= max_retry", q.FirstRetry, q.MaxRetry)
	}
	if q.Lifetime < q.FirstRetry {
		r.add(path{"queue", "lifetime"}, "%s is shorter than first_retry (%s): expected lifetime >= first_retry", q.Lifetime, q.FirstRetry)
	}
	l := c.Limits
	if l.CommandTimeout <= 0 {
		r.add(path{"limits", "command_timeout"}, "expected a duration longer than zero")
	}
	if l.DataTimeout <= 0 {
		r.add(path{"limits", "data_timeout"}, "expected a duration longer than zero")
	}
	if l.MessageSize < 0 || l.Recipients < 0 || l.Connections < 0 || l.ConnectionsPerIP < 0 || l.ErrorsPerSession < 0 || l.AuthFailuresPerIP < 0 {
		r.add(path{"limits"}, "negative limit: expected 0 (no limit) or more")
	}
	if l.Connections > 0 && l.ConnectionsPerIP > l.Connections {
		r.add(path{"limits", "connections_per_ip"}, "%d is more than connections (%d): expected connections_per_ip <= connections", l.ConnectionsPerIP, l.Connections)
	}
}
