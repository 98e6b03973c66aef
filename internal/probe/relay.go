package probe

import (
	"context"
	"fmt"
	"strings"
)

// RelayPair is one MAIL FROM / RCPT TO try, with placeholders as in
// ../shared/conformance/nmap-smtp/smtp-open-relay-tests.yml: {from},
// {to}, {domain}, {ip}, {srvname}.
type RelayPair struct {
	N        int
	MailFrom string
	RcptTo   string
	Kind     string
}

// RelayPairs are the 16 forms nmap's smtp-open-relay tries, in its order,
// so that verdicts can be compared with it. Forms 5 to 16 end at the
// server itself ({ip} or {srvname}) but carry another domain in the
// local part: accepting them means the server may route on %, !, @ or a
// source route.
var RelayPairs = []RelayPair{
	{1, "", "{to}@{domain}", "plain"},
	{2, "{from}@{domain}", "{to}@{domain}", "plain"},
	{3, "{from}@{srvname}", "{to}@{domain}", "plain"},
	{4, "{from}@[{ip}]", "{to}@{domain}", "plain"},
	{5, "{from}@[{ip}]", "{to}%{domain}@[{ip}]", "percent-hack"},
	{6, "{from}@[{ip}]", "{to}%{domain}@{srvname}", "percent-hack"},
	{7, "{from}@[{ip}]", `"{to}@{domain}"`, "quoted-local-part"},
	{8, "{from}@[{ip}]", `"{to}%{domain}"`, "quoted-local-part"},
	{9, "{from}@[{ip}]", "{to}@{domain}@[{ip}]", "double-at"},
	{10, "{from}@[{ip}]", `"{to}@{domain}"@[{ip}]`, "quoted-at"},
	{11, "{from}@[{ip}]", "{to}@{domain}@{srvname}", "double-at"},
	{12, "{from}@[{ip}]", "@[{ip}]:{to}@{domain}", "source-route"},
	{13, "{from}@[{ip}]", "@{srvname}:{to}@{domain}", "source-route"},
	{14, "{from}@[{ip}]", "{domain}!{to}", "bang-path"},
	{15, "{from}@[{ip}]", "{domain}!{to}@[{ip}]", "bang-path"},
	{16, "{from}@[{ip}]", "{domain}!{to}@{srvname}", "bang-path"},
}

// RelayTry is the outcome of one pair.
type RelayTry struct {
	N        int    `json:"n"`
	Kind     string `json:"kind"`
	MailFrom string `json:"mail_from"`
	RcptTo   string `json:"rcpt_to"`
	Mail     string `json:"mail_reply"`
	Rcpt     string `json:"rcpt_reply,omitempty"`
	// Accepted: MAIL got 250 and RCPT 250 or 251 (nmap's rule).
	Accepted bool `json:"accepted"`
}

// RelayReport is the open-relay test's result.
type RelayReport struct {
	// Verdict is "open" (some RCPT accepted), "closed" (all refused),
	// "auth-required" (a 530 stopped the test, as nmap stops) or
	// "inconclusive" (the server went away before all tries).
	Verdict  string     `json:"verdict"`
	Accepted int        `json:"accepted"`
	Tried    int        `json:"tried"`
	Domain   string     `json:"domain"`
	IP       string     `json:"ip"`
	Srvname  string     `json:"srvname"`
	Tries    []RelayTry `json:"tries"`
}

func expand(s string, vars map[string]string) string {
	for k, v := range vars {
		s = strings.ReplaceAll(s, "{"+k+"}", v)
	}
	return s
}

// relay is the third connection: after one EHLO, each pair preceded by
// RSET, judged on the RCPT reply alone. It never sends DATA.
func (p *prober) relay(ctx context.Context) {
	ip := p.o.RelayIP
	if ip == "" {
		ip = p.h.Address
	}
	srv := p.srvname
	if srv == "" {
		srv = p.h.Host
	}
	rep := &RelayReport{Domain: p.o.RelayDomain, IP: ip, Srvname: srv, Tries: []RelayTry{}}
	p.h.Relay = rep
	vars := map[string]string{"from": p.o.RelayFrom, "to": p.o.RelayTo, "domain": p.o.RelayDomain, "ip": ip, "srvname": srv}

	var c *conn
	reconnects := 0
	connect := func() bool {
		var err error
		c, _, _, err = p.dial(ctx, p.addr, "relay", p.implicit())
		if err != nil {
			return false
		}
		if _, ok := p.greet(c, false); !ok {
			c.close()
			c = nil
			return false
		}
		return true
	}
	if !connect() {
		rep.Verdict = "inconclusive"
		return
	}
	defer func() {
		if c != nil {
			c.quit()
		}
	}()
	auth := false
	for i := 0; i < len(RelayPairs) && ctx.Err() == nil; i++ {
		pair := RelayPairs[i]
		t := RelayTry{N: pair.N, Kind: pair.Kind, MailFrom: expand(pair.MailFrom, vars), RcptTo: expand(pair.RcptTo, vars)}
		r, err := c.cmd("RSET")
		if err == nil {
			if i == 0 {
				p.h.evidence.Replies["rset"] = wire(r)
			}
			r, err = c.cmd("MAIL FROM:<" + t.MailFrom + ">")
		}
		if err != nil {
			// The server hung up (some do after a few refusals): one more
			// connection, then give up.
			c.close()
			c = nil
			if reconnects >= 2 || !connect() {
				break
			}
			reconnects++
			i--
			continue
		}
		t.Mail = wire(r)
		if _, ok := p.h.evidence.Replies["mail"]; !ok {
			p.h.evidence.Replies["mail"] = wire(r)
		}
		if r.Code == 530 {
			auth = true
			rep.Tries = append(rep.Tries, t)
			break
		}
		if r.Code == 250 {
			r, err = c.cmd("RCPT TO:<" + t.RcptTo + ">")
			if err != nil {
				c.close()
				c = nil
				rep.Tries = append(rep.Tries, t)
				if reconnects >= 2 || !connect() {
					break
				}
				reconnects++
				continue
			}
			t.Rcpt = wire(r)
			if _, ok := p.h.evidence.Replies["rcpt"]; !ok || pair.N == 2 {
				p.h.evidence.Replies["rcpt"] = wire(r)
			}
			t.Accepted = r.Code == 250 || r.Code == 251
			if r.Code == 530 {
				auth = true
				rep.Tries = append(rep.Tries, t)
				break
			}
		}
		if t.Accepted {
			rep.Accepted++
		}
		rep.Tries = append(rep.Tries, t)
	}
	rep.Tried = len(rep.Tries)
	switch {
	case rep.Accepted > 0:
		rep.Verdict = "open"
	case auth:
		rep.Verdict = "auth-required"
	case rep.Tried < len(RelayPairs):
		rep.Verdict = "inconclusive"
	default:
		rep.Verdict = "closed"
	}
}

// acceptedKinds says which forms were accepted, for a finding.
func (r *RelayReport) acceptedList() string {
	var parts []string
	for _, t := range r.Tries {
		if t.Accepted {
			parts = append(parts, fmt.Sprintf("#%d %s <%s>", t.N, t.Kind, t.RcptTo))
		}
	}
	return strings.Join(parts, "; ")
}

// plainAccepted reports whether a plain remote recipient (forms 1-4) was
// accepted: relaying without any trick.
func (r *RelayReport) plainAccepted() bool {
	for _, t := range r.Tries {
		if t.Accepted && t.Kind == "plain" {
			return true
		}
	}
	return false
}
