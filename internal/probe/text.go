package probe

import (
	"fmt"
	"io"
	"strings"
)

// WriteText prints the report for a person at a terminal.
func WriteText(w io.Writer, r *Report, verbose bool) error {
	b := &strings.Builder{}
	if d := r.Domain; d != nil {
		writeDomain(b, d)
	}
	for _, h := range r.Hosts {
		writeHost(b, h, verbose)
	}
	fmt.Fprintf(b, "\n== Findings (%d, worst: %s)\n", len(r.Findings), r.Worst)
	if len(r.Findings) == 0 {
		b.WriteString("  none\n")
	}
	for _, f := range r.Findings {
		fmt.Fprintf(b, "  [%-6s] %-22s %s: %s\n", strings.ToUpper(f.Severity.String()), f.ID, f.Target, f.Title)
		fmt.Fprintf(b, "           why: %s\n", f.Why)
		fmt.Fprintf(b, "           fix: %s\n", f.Fix)
		if f.Evidence != "" {
			fmt.Fprintf(b, "           seen: %s\n", oneLine(f.Evidence, 200))
		}
	}
	fmt.Fprintf(b, "\n(%d ms)\n", r.DurationMS)
	_, err := io.WriteString(w, b.String())
	return err
}

func writeDomain(b *strings.Builder, d *DomainReport) {
	fmt.Fprintf(b, "== Domain %s\n", d.Domain)
	switch {
	case d.NullMX:
		b.WriteString("  MX:       null MX (takes no mail)\n")
	case d.ImplicitMX:
		b.WriteString("  MX:       none; implicit MX on the domain's own address\n")
	case d.MXError != "":
		fmt.Fprintf(b, "  MX:       look-up failed: %s\n", d.MXError)
	}
	for _, mx := range d.MX {
		if d.NullMX {
			break
		}
		fmt.Fprintf(b, "  MX %-5d  %s %s", mx.Pref, mx.Host, strings.Join(mx.Addresses, " "))
		if mx.Error != "" {
			fmt.Fprintf(b, " (%s)", mx.Error)
		}
		b.WriteString("\n")
	}
	if s := d.SPF; s != nil {
		switch {
		case s.Error != "":
			fmt.Fprintf(b, "  SPF:      error: %s\n", s.Error)
		case s.Record == "":
			b.WriteString("  SPF:      none\n")
		default:
			fmt.Fprintf(b, "  SPF:      %s\n            valid=%v lookups=%d void=%d all=%s\n", s.Record, s.Valid, s.Lookups, s.VoidLookups, orNone(s.All))
		}
	}
	if m := d.DMARC; m != nil {
		if !m.Valid {
			fmt.Fprintf(b, "  DMARC:    none or invalid %s\n", m.Error)
		} else {
			fmt.Fprintf(b, "  DMARC:    p=%s sp=%s rua=%s (at %s)\n", m.Policy, orNone(m.SubdomainPolicy), orNone(strings.Join(m.RUA, ",")), m.Found)
		}
	}
	if m := d.MTASTS; m != nil {
		switch {
		case m.Record == "" && m.RecordError == "":
			b.WriteString("  MTA-STS:  none\n")
		case m.RecordError != "":
			fmt.Fprintf(b, "  MTA-STS:  record error: %s\n", m.RecordError)
		case m.PolicyError != "":
			fmt.Fprintf(b, "  MTA-STS:  id=%s, policy error: %s\n", m.ID, m.PolicyError)
		default:
			fmt.Fprintf(b, "  MTA-STS:  id=%s mode=%s mx=%s max_age=%d\n", m.ID, m.Mode, strings.Join(m.MX, ","), m.MaxAge)
			if len(m.Uncovered) > 0 {
				fmt.Fprintf(b, "            not covered: %s\n", strings.Join(m.Uncovered, ", "))
			}
		}
	}
	if t := d.TLSRPT; t != nil {
		if t.Valid {
			fmt.Fprintf(b, "  TLS-RPT:  %s\n", strings.Join(t.RUA, ","))
		} else {
			fmt.Fprintf(b, "  TLS-RPT:  none %s\n", t.Error)
		}
	}
	signed, total := 0, 0
	for _, ok := range d.DNSSEC {
		total++
		if ok {
			signed++
		}
	}
	fmt.Fprintf(b, "  DNSSEC:   %d of %d answers authenticated (AD bit)\n", signed, total)
}

func writeHost(b *strings.Builder, h *HostReport, verbose bool) {
	fmt.Fprintf(b, "\n== Server %s (%s", h.Target, h.Mode)
	if h.Address != "" && h.Address != h.Host {
		fmt.Fprintf(b, ", %s", h.Address)
	}
	b.WriteString(")\n")
	if !h.Reachable {
		fmt.Fprintf(b, "  unreachable: %s\n", h.Error)
		return
	}
	fmt.Fprintf(b, "  connect:  %d ms, greeting after %d ms\n", h.ConnectMS, h.BannerMS)
	fmt.Fprintf(b, "  banner:   %s\n", oneLine(h.Banner, 200))
	id := h.Identification
	if id.Software != "" {
		v := ""
		if id.Version != "" {
			v = " " + id.Version
		}
		fmt.Fprintf(b, "  software: %s%s (confidence %s, %.2f: %s)\n", id.Software, v, id.Confidence, id.Score, strings.Join(id.Clues, "; "))
	} else {
		b.WriteString("  software: not identified\n")
	}
	if h.Error != "" {
		fmt.Fprintf(b, "  stopped:  %s\n", h.Error)
	}
	if h.Greeting != "" {
		var kws []string
		for _, e := range h.Extensions {
			kws = append(kws, strings.TrimSpace(e.Keyword+" "+e.Params))
		}
		fmt.Fprintf(b, "  %s:     %s\n", h.Greeting, orNone(strings.Join(kws, ", ")))
		size := "not announced"
		if h.SizeLimit != nil {
			size = fmt.Sprintf("%d", *h.SizeLimit)
			if *h.SizeLimit == 0 {
				size = "announced without a limit"
			}
		}
		fmt.Fprintf(b, "  SIZE:     %s; PIPELINING: %v; STARTTLS: %v\n", size, h.Pipelining, h.StartTLS)
		fmt.Fprintf(b, "  AUTH:     before TLS: %s; after TLS: %s\n", orNone(strings.Join(h.AuthBeforeTLS, " ")), orNone(strings.Join(h.AuthAfterTLS, " ")))
	}
	if t := h.TLS; t != nil {
		if !t.Handshake {
			fmt.Fprintf(b, "  TLS:      failed: %s\n", t.Error)
		} else {
			fmt.Fprintf(b, "  TLS:      %s, %s", t.Version, t.Cipher)
			if t.Implicit {
				b.WriteString(" (implicit)")
			}
			b.WriteString("\n")
			if len(t.Versions) > 0 {
				var vs []string
				for _, v := range t.Versions {
					mark := "no"
					if v.Accepted {
						mark = "yes"
					}
					vs = append(vs, v.Version+" "+mark)
				}
				fmt.Fprintf(b, "  versions: %s\n", strings.Join(vs, ", "))
			}
			for i, c := range t.Chain {
				fmt.Fprintf(b, "  cert[%d]:  %s\n            issuer %s; SANs %s; %s; not after %s (%d days)", i, c.Subject, c.Issuer,
					orNone(strings.Join(c.SANs, ",")), c.KeyType, c.NotAfter.Format("2006-01-02"), c.DaysLeft)
				if c.SelfSigned {
					b.WriteString("; self-signed")
				}
				b.WriteString("\n")
			}
			trust := "trusted"
			if !t.Trusted {
				trust = "not trusted: " + t.VerifyError
			}
			match := "-"
			if t.NameChecked != "" {
				match = fmt.Sprintf("%v for %s", t.NameMatch, t.NameChecked)
			}
			fmt.Fprintf(b, "  chain:    %s; name match: %s\n", trust, match)
		}
	}
	if v := h.VRFY; v != nil {
		fmt.Fprintf(b, "  VRFY:     %s\n", v.Verdict)
	}
	if e := h.EXPN; e != nil {
		fmt.Fprintf(b, "  EXPN:     %s\n", oneLine(e.Reply, 120))
	}
	if r := h.Relay; r != nil {
		fmt.Fprintf(b, "  relay:    %s (%d of %d tries accepted; domain %s, ip %s)\n", r.Verdict, r.Accepted, r.Tried, r.Domain, r.IP)
		if verbose {
			for _, t := range r.Tries {
				fmt.Fprintf(b, "            #%-2d %-17s MAIL <%s> RCPT <%s>: %s\n", t.N, t.Kind, t.MailFrom, t.RcptTo, oneLine(orNone(t.Rcpt), 80))
			}
		}
	}
	if d := h.DANE; d != nil {
		fmt.Fprintf(b, "  DANE:     %d TLSA at %s, authentic=%v: %s\n", len(d.Records), d.Name, d.Authentic, d.Verdict)
	}
	for _, p := range h.PTR {
		fmt.Fprintf(b, "  PTR:      %s -> %s (FCrDNS %v)\n", p.Address, orNone(strings.Join(p.Names, ",")), p.FCrDNS)
	}
	if verbose {
		b.WriteString("  transcript:\n")
		for _, l := range h.Transcript {
			fmt.Fprintf(b, "    %s\n", l)
		}
	}
}

func oneLine(s string, max int) string {
	s = strings.ReplaceAll(s, "\n", " | ")
	if len(s) > max {
		s = s[:max] + "..."
	}
	return s
}
