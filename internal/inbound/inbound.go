// Package inbound authenticates mail received from other servers: SPF, DKIM, DMARC and ARC, summed up in one Authentication-Results header.
package inbound

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"

	"github.com/posthorn/posthorn/internal/arc"
	"github.com/posthorn/posthorn/internal/authres"
	"github.com/posthorn/posthorn/internal/dkim"
	"github.com/posthorn/posthorn/internal/dmarc"
	"github.com/posthorn/posthorn/internal/dns"
	"github.com/posthorn/posthorn/internal/message"
	"github.com/posthorn/posthorn/internal/smtp"
	"github.com/posthorn/posthorn/internal/spf"
)

// Action is what to do with a message whose DMARC check failed under a
// policy of reject or quarantine.
type Action string

// Actions.
const (
	Reject     Action = "reject"     // 550 5.7.1 at the end of DATA
	Quarantine Action = "quarantine" // deliver into the Junk folder
	Accept     Action = "accept"     // deliver normally (A-R still says fail)
)

// Options configures a Checker.
type Options struct {
	Resolver   dns.Resolver
	AuthServID string // our host name, first in Authentication-Results
	// OnReject and OnQuarantine say what to do when DMARC fails under
	// p=reject and p=quarantine. Defaults: Reject and Quarantine.
	OnReject, OnQuarantine Action
	Logger                 *slog.Logger
}

// Checker runs the checks.
type Checker struct{ o Options }

// New returns a Checker.
func New(o Options) *Checker {
	if o.OnReject == "" {
		o.OnReject = Reject
	}
	if o.OnQuarantine == "" {
		o.OnQuarantine = Quarantine
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Checker{o: o}
}

// Input is the message and what the SMTP session knew of it.
type Input struct {
	ClientIP netip.Addr
	Helo     string
	MailFrom string // "" for the null sender
	Data     func() (io.Reader, error)
}

// Verdict is the outcome.
type Verdict struct {
	// AuthResults is the Authentication-Results header field, CRLF-ended.
	AuthResults string
	// Refuse is set when the message must be refused (DMARC reject).
	Refuse *smtp.Reply
	// Quarantine asks for delivery into the Junk folder.
	Quarantine bool
	SPF        spf.Result
	DKIM       []dkim.Result
	DMARC      dmarc.Result
	ARC        arc.Result
}

// maxHeader bounds the header section read for From.
const maxHeader = 1 << 20

// Check authenticates one message. Errors reading the message are returned;
// DNS trouble is part of the results (temperror), never an error.
func (c *Checker) Check(ctx context.Context, in Input) (Verdict, error) {
	var v Verdict
	var results []authres.Result

	// SPF: MAIL FROM, or postmaster@HELO for the null sender (RFC 7208 2.4).
	spfDomain := domainOf(in.MailFrom)
	if in.MailFrom == "" {
		spfDomain = in.Helo
	}
	res, _, err := spf.Check(ctx, spf.Options{Resolver: c.o.Resolver, Receiver: c.o.AuthServID}, net.IP(in.ClientIP.AsSlice()), in.MailFrom, in.Helo)
	if err != nil && res != spf.TempError && res != spf.PermError {
		return v, err
	}
	v.SPF = res
	results = append(results, authres.SPF(string(res), in.MailFrom, in.Helo))

	// DKIM: every signature.
	r, err := in.Data()
	if err != nil {
		return v, err
	}
	v.DKIM, err = dkim.Verify(ctx, c.o.Resolver, r, nil)
	if err != nil {
		return v, err
	}
	var dkimForDMARC []dmarc.DKIMResult
	if len(v.DKIM) == 0 {
		results = append(results, authres.Result{Method: "dkim", Value: "none"})
	}
	for _, d := range v.DKIM {
		results = append(results, authres.DKIM(string(d.Status), d.Domain, d.Selector, d.Algorithm, d.SignatureB, d.Reason))
		dkimForDMARC = append(dkimForDMARC, dmarc.DKIMResult{Domain: d.Domain, Selector: d.Selector, Result: string(d.Status)})
	}

	// ARC (RFC 8617): the chain of earlier forwarders' results. Recorded,
	// and carried on when we forward; it does not override DMARC here.
	r, err = in.Data()
	if err != nil {
		return v, err
	}
	v.ARC, err = arc.Verify(ctx, c.o.Resolver, r, nil)
	if err != nil {
		return v, err
	}

	// DMARC, for the From domain(s).
	r, err = in.Data()
	if err != nil {
		return v, err
	}
	hdr, err := message.ReadHeader(r, maxHeader)
	if err != nil && !errors.Is(err, message.ErrHeaderTooLarge) {
		return v, err
	}
	v.DMARC = dmarc.EvaluateFrom(ctx, c.o.Resolver, hdr.Get("From"), dmarc.Input{
		SPFResult: string(res), SPFDomain: spfDomain, DKIM: dkimForDMARC,
	})
	policy := ""
	if v.DMARC.Record != nil {
		policy = string(v.DMARC.PublishedPolicy)
	}
	results = append(results, authres.DMARC(string(v.DMARC.Result), v.DMARC.AuthorDomain, policy))
	results = append(results, v.ARC.AuthResult(in.ClientIP.String()))
	v.AuthResults = authres.Format(c.o.AuthServID, results)

	if v.DMARC.Result == dmarc.StatusFail {
		action := Accept
		switch v.DMARC.Policy {
		case dmarc.PolicyReject:
			action = c.o.OnReject
		case dmarc.PolicyQuarantine:
			action = c.o.OnQuarantine
		}
		switch action {
		case Reject:
			rep := smtp.R(550, "5.7.1", "Message refused by the DMARC policy of %s: it is not authenticated by SPF or DKIM for that domain", smtp.Printable(v.DMARC.AuthorDomain))
			v.Refuse = &rep
		case Quarantine:
			v.Quarantine = true
		}
	}
	c.o.Logger.Info("authentication", "client", in.ClientIP.String(), "from", in.MailFrom, "spf", string(res),
		"dkim", dkimSummary(v.DKIM), "arc", string(v.ARC.Status), "dmarc", string(v.DMARC.Result), "dmarc_policy", string(v.DMARC.Policy), "author", v.DMARC.AuthorDomain)
	return v, nil
}

func domainOf(addr string) string {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return addr[i+1:]
	}
	return ""
}

func dkimSummary(rs []dkim.Result) string {
	if len(rs) == 0 {
		return "none"
	}
	var parts []string
	for _, r := range rs {
		parts = append(parts, r.Domain+"="+string(r.Status))
	}
	return strings.Join(parts, ",")
}

// ClaimsOurID reports whether an Authentication-Results field claims our
// authserv-id: such fields arriving with a message are forgeries and are
// removed (RFC 8601 5).
func (c *Checker) ClaimsOurID(name, value string) bool {
	return strings.EqualFold(name, "Authentication-Results") && authres.ClaimsAuthServID(value, c.o.AuthServID)
}
