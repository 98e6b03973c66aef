// Package screen decides, stage by stage, whether a client on port 25 is welcome: DNS lists, reverse DNS, HELO name and greylisting.
package screen

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"github.com/posthorn/posthorn/internal/dns"
	"github.com/posthorn/posthorn/internal/dnsbl"
	"github.com/posthorn/posthorn/internal/greylist"
	"github.com/posthorn/posthorn/internal/smtp"
)

// Stage is the point of the dialog where the DNS list and reverse DNS
// verdicts are given.
type Stage int

const (
	// AtRcpt (the default) answers at each RCPT, like Postfix's
	// smtpd_delay_reject: the client learns which recipient was refused,
	// and mail to postmaster could be let through by a later rule.
	AtRcpt Stage = iota
	// AtConnect answers 554 instead of the greeting (RFC 5321 3.1).
	AtConnect
)

// Options configures a Screener. Everything is off by default.
type Options struct {
	Resolver dns.Resolver
	Block    []dnsbl.List // DNSBLs: listed clients are refused 554 5.7.1
	Allow    []dnsbl.List // DNSWLs: listed clients skip every check here
	At       Stage
	// FCrDNS refuses clients whose address has no PTR name that resolves
	// back to it (forward-confirmed reverse DNS).
	FCrDNS bool
	// StrictHelo refuses a HELO name that is not a fully qualified domain
	// name, or an address literal other than the client's own.
	StrictHelo bool
	// Greylist, when set, refuses the first attempt of each new
	// (network, sender, recipient) triplet with 451 4.7.1.
	Greylist *greylist.Store
	// Timeout bounds the DNS look-ups of one client; default 10s.
	Timeout time.Duration
	Logger  *slog.Logger
}

// Screener holds the rules; it is safe for concurrent use.
type Screener struct{ o Options }

// New returns a Screener.
func New(o Options) *Screener {
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return &Screener{o: o}
}

// Enabled reports whether any check is configured.
func (s *Screener) Enabled() bool {
	o := s.o
	return len(o.Block) > 0 || len(o.Allow) > 0 || o.FCrDNS || o.StrictHelo || o.Greylist != nil
}

// Session screens one connection; it is used from the session's
// goroutine only. Look-ups are made once and their verdict kept.
type Session struct {
	s      *Screener
	ip     netip.Addr
	log    *slog.Logger
	looked bool
	allow  bool        // on an allow list
	refuse *smtp.Reply // the DNS list or reverse DNS verdict
}

// Begin starts screening a connection from ip.
func (s *Screener) Begin(ip netip.Addr, log *slog.Logger) *Session {
	if log == nil {
		log = s.o.Logger
	}
	return &Session{s: s, ip: ip.Unmap(), log: log}
}

// Connect is asked before the greeting; a non-nil error (an smtp.Reply)
// is given instead of 220.
func (ss *Session) Connect(ctx context.Context) error {
	if ss.s.o.At != AtConnect {
		return nil
	}
	return ss.verdict(ctx)
}

// Helo checks the HELO/EHLO name, when StrictHelo is on. The name has
// passed the syntax check of RFC 5321 already.
func (ss *Session) Helo(ctx context.Context, name string) error {
	if !ss.s.o.StrictHelo || ss.allowed(ctx) {
		return nil
	}
	if strings.HasPrefix(name, "[") {
		lit := strings.TrimSuffix(strings.TrimPrefix(name, "["), "]")
		lit = strings.TrimPrefix(lit, "IPv6:")
		if a, err := netip.ParseAddr(lit); err == nil && a.Unmap() == ss.ip {
			return nil
		}
		return smtp.R(550, "5.7.1", "HELO %s: the address literal is not your address [%s]; give your host name", smtp.Printable(name), ss.ip)
	}
	n := strings.TrimSuffix(name, ".")
	dot := strings.LastIndexByte(n, '.')
	if dot < 0 || allDigits(n[dot+1:]) {
		return smtp.R(504, "5.5.2", "HELO %s: need a fully qualified host name, as in mail.example.com", smtp.Printable(name))
	}
	return nil
}

func allDigits(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return s != ""
}

// Rcpt is asked for each recipient that the directory accepted.
func (ss *Session) Rcpt(ctx context.Context, from, rcpt string) error {
	if err := ss.verdict(ctx); err != nil {
		return err
	}
	g := ss.s.o.Greylist
	if g == nil || ss.allow {
		return nil
	}
	pass, wait, err := g.Check(ss.ip, from, rcpt)
	if err != nil {
		ss.log.Warn("greylist store", "err", err)
	}
	if pass {
		return nil
	}
	ss.log.Info("greylisted", "client", ss.ip.String(), "from", smtp.Printable(from), "rcpt", smtp.Printable(rcpt), "retry_in", wait.Round(time.Second))
	return smtp.R(451, "4.7.1", "Greylisted: this server does not know you yet; please try again in %d seconds", int(wait.Seconds()+0.5))
}

// allowed looks the client up (once) and reports whether it is on an
// allow list.
func (ss *Session) allowed(ctx context.Context) bool {
	ss.lookup(ctx)
	return ss.allow
}

// verdict is the DNS list and reverse DNS refusal, if any.
func (ss *Session) verdict(ctx context.Context) error {
	ss.lookup(ctx)
	if ss.refuse != nil {
		return *ss.refuse
	}
	return nil
}

func (ss *Session) lookup(ctx context.Context) {
	if ss.looked {
		return
	}
	ss.looked = true
	o := ss.s.o
	if o.Resolver == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	if len(o.Block)+len(o.Allow) > 0 {
		c := dnsbl.Checker{Resolver: o.Resolver, Block: o.Block, Allow: o.Allow}
		v, err := c.Check(ctx, ss.ip)
		if err != nil {
			// A list that does not answer lists nobody (fail open).
			ss.log.Warn("DNS list look-up failed; not counted", "client", ss.ip.String(), "err", err)
		}
		switch {
		case v.Allowed != nil:
			ss.allow = true
			ss.log.Info("client on an allow list", "client", ss.ip.String(), "list", v.Allowed.Zone, "code", v.Allowed.Code.String())
			return
		case v.Blocked != nil:
			text := v.Blocked.Text
			if text == "" {
				text = "listed (" + v.Blocked.Code.String() + ")"
			}
			r := smtp.R(554, "5.7.1", "Service unavailable; client [%s] blocked using %s: %s", ss.ip, v.Blocked.Zone, text)
			ss.refuse = &r
			ss.log.Info("client on a block list", "client", ss.ip.String(), "list", v.Blocked.Zone, "code", v.Blocked.Code.String())
			return
		}
	}
	if o.FCrDNS {
		name, err := FCrDNS(ctx, o.Resolver, ss.ip)
		switch {
		case err == nil:
			ss.log.Debug("reverse DNS confirmed", "client", ss.ip.String(), "name", name)
		case errors.Is(err, errTemporary):
			r := smtp.R(450, "4.7.25", "Cannot check the reverse DNS of your address [%s] right now; please try again later", ss.ip)
			ss.refuse = &r
		default:
			r := smtp.R(550, "5.7.25", "Client [%s] refused: %v; a mail server needs a PTR record whose name resolves back to its address (RFC 7372 3.3)", ss.ip, err)
			ss.refuse = &r
			ss.log.Info("no forward-confirmed reverse DNS", "client", ss.ip.String(), "err", err)
		}
	}
}

var errTemporary = errors.New("temporary DNS failure")

// FCrDNS returns a PTR name of ip that resolves back to ip (at most ten
// names are tried, as in RFC 8601's iprev).
func FCrDNS(ctx context.Context, r dns.Resolver, ip netip.Addr) (string, error) {
	names, _, err := r.LookupAddr(ctx, ip.String())
	if dns.IsNotFound(err) || err == nil && len(names) == 0 {
		return "", fmt.Errorf("no reverse DNS name for %s", ip)
	}
	if err != nil {
		return "", fmt.Errorf("%w: %v", errTemporary, err)
	}
	network := "ip4"
	if ip.Is6() {
		network = "ip6"
	}
	var tempErr error
	for i, n := range names {
		if i == 10 {
			break
		}
		ips, _, err := r.LookupIP(ctx, network, n)
		if err != nil {
			if !dns.IsNotFound(err) {
				tempErr = err
			}
			continue
		}
		for _, a := range ips {
			if addr, ok := netip.AddrFromSlice(a); ok && addr.Unmap() == ip {
				return strings.TrimSuffix(n, "."), nil
			}
		}
	}
	if tempErr != nil {
		return "", fmt.Errorf("%w: %v", errTemporary, tempErr)
	}
	return "", fmt.Errorf("the reverse DNS name %s of %s does not resolve back to it", smtp.Printable(strings.TrimSuffix(names[0], ".")), ip)
}
