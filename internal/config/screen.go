package config

import "github.com/posthorn/posthorn/internal/dnsbl"

// validateScreen checks [screen] and the abuse limits of [limits].
func validateScreen(c *Config, r *reporter) {
	for key, specs := range map[string][]string{"dnsbl": c.Screen.DNSBL, "dnswl": c.Screen.DNSWL} {
		for i, s := range specs {
			if _, err := dnsbl.ParseList(s); err != nil {
				r.add(path{"screen", key, idx(i)}, "%v: expected \"zone\" or \"zone=filter\", as in \"zen.spamhaus.org=127.0.0.[2..11]\"", err)
			}
		}
	}
	switch c.Screen.CheckAt {
	case "rcpt", "connect":
	default:
		r.add(path{"screen", "check_at"}, "%q: expected \"rcpt\" or \"connect\"", c.Screen.CheckAt)
	}
	l := c.Limits
	if l.ConnectionsPerIPv6Net < 0 || l.ConnectionRate < 0 || l.MessageRate < 0 || l.RecipientsPerSession < 0 ||
		l.SoftErrorLimit < 0 || l.MinDataRate < 0 || l.MessageMemory < 0 {
		r.add(path{"limits"}, "negative limit: expected 0 (no limit) or more")
	}
	if l.LineLength != 0 && l.LineLength < 1000 {
		r.add(path{"limits", "line_length"}, "%d is below the 1000 octets RFC 5321 4.5.3.1.6 requires every server to accept", l.LineLength)
	}
	if l.MessageMemory > 0 && l.MessageMemory < 1<<20 {
		r.add(path{"limits", "message_memory"}, "%d bytes is too little for even a few transfers (each needs up to 256 KiB): expected at least \"1MB\", or 0 for no bound", l.MessageMemory)
	}
}
