// Package policy decides, command by command, whether a sender or a recipient is accepted.
package policy

import (
	"context"
	"net/netip"
	"strings"

	"github.com/posthorn/posthorn/internal/smtp"
)

// Client is what a decision knows about the connection.
type Client struct {
	IP         netip.Addr
	Submission bool   // 587 or 465: authentication is required to send
	AuthUser   string // "" when not authenticated
	TLS        bool
}

// Options configures a Policy. The functions come from the directory and
// the account store; policy itself keeps no state.
type Options struct {
	// LocalDomain reports whether mail for domain is delivered here.
	LocalDomain func(domain string) bool
	// LocalRecipient reports whether a local address exists; a non-nil
	// error is a temporary failure to look it up.
	LocalRecipient func(addr string) (bool, error)
	// PostmasterDomain completes a bare "postmaster" recipient.
	PostmasterDomain string
	// ReverseSRS recognises SRS addresses of ours (bounces to forwarded
	// mail) and says whether they verify; nil: no SRS.
	ReverseSRS func(addr string) (orig string, isSRS bool, err error)
	// TrustedNetworks may relay without authentication (Postfix's
	// mynetworks). Empty by default: loopback is not implied.
	TrustedNetworks []netip.Prefix
	// SenderMustOwn refuses an authenticated MAIL FROM the user does not own.
	SenderMustOwn bool
	// Owns reports whether user may send as addr.
	Owns func(user, addr string) bool
}

// Policy holds the relay and sender rules.
type Policy struct{ o Options }

// New returns a Policy.
func New(o Options) *Policy { return &Policy{o: o} }

// Trusted reports whether the client is in a trusted network.
func (p *Policy) Trusted(ip netip.Addr) bool {
	ip = ip.Unmap()
	for _, n := range p.o.TrustedNetworks {
		if n.Contains(ip) {
			return true
		}
	}
	return false
}

// Sender decides MAIL FROM. On submission ports an authenticated user is
// required, and (if configured) the sender must be one of the user's
// addresses; the null sender is allowed (bounces from a user's tools).
func (p *Policy) Sender(ctx context.Context, c Client, from smtp.Address) error {
	if c.Submission && c.AuthUser == "" {
		return smtp.R(530, "5.7.0", "Authentication required: log in with AUTH before sending on this port")
	}
	if c.AuthUser != "" && p.o.SenderMustOwn && !from.IsNull() && (p.o.Owns == nil || !p.o.Owns(c.AuthUser, from.String())) {
		return smtp.R(553, "5.7.1", "Sender address <%s> is not owned by user %s; send from your own address", smtp.Printable(from.String()), smtp.Printable(c.AuthUser))
	}
	return nil
}

// Recipient decides RCPT TO and returns the recipient as it is to be
// stored. Mail for local domains is accepted for existing users only
// (550 5.1.1 at RCPT time: no accept-then-bounce); mail for any other
// domain only from authenticated users and trusted networks, so posthorn
// is never an open relay.
func (p *Policy) Recipient(ctx context.Context, c Client, rcpt smtp.Address) (string, error) {
	if rcpt.Domain == "" { // bare "postmaster" (RFC 5321 4.1.1.3)
		rcpt.Local, rcpt.Domain = "postmaster", p.o.PostmasterDomain
	}
	addr := rcpt.String()
	if !strings.HasPrefix(rcpt.Domain, "[") && p.o.LocalDomain != nil && p.o.LocalDomain(rcpt.Domain) {
		if p.o.ReverseSRS != nil {
			if _, isSRS, err := p.o.ReverseSRS(addr); isSRS {
				if err != nil {
					return "", smtp.R(550, "5.7.1", "Recipient <%s>: not a valid return address of mail forwarded by this server (%v)", smtp.Printable(addr), err)
				}
				return addr, nil
			}
		}
		// Routing syntax in a local part (percent hack, bang path, a
		// quoted "@") would make a relay of a local address; refuse it.
		if strings.ContainsAny(rcpt.Local, "%!@/") {
			return "", smtp.R(550, "5.1.1", "Recipient <%s>: no such user here (routing characters are not accepted in local parts)", smtp.Printable(addr))
		}
		ok, err := p.o.LocalRecipient(addr)
		if err != nil {
			return "", smtp.R(451, "4.3.0", "Recipient <%s>: temporary lookup failure; try again later", smtp.Printable(addr))
		}
		if !ok {
			return "", smtp.R(550, "5.1.1", "Recipient <%s>: no such user here", smtp.Printable(addr))
		}
		return addr, nil
	}
	if c.AuthUser != "" || p.Trusted(c.IP) {
		return addr, nil
	}
	return "", smtp.R(550, "5.7.1", "Relaying denied: this server does not accept mail for %s; log in on the submission port to send to other domains", smtp.Printable(rcpt.Domain))
}
