package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/posthorn/posthorn/internal/config"
	"github.com/posthorn/posthorn/internal/dkim"
	"github.com/posthorn/posthorn/internal/dns"
	"github.com/posthorn/posthorn/internal/inbound"
	"github.com/posthorn/posthorn/internal/policy"
	"github.com/posthorn/posthorn/internal/smtpserver"
	"github.com/posthorn/posthorn/internal/submission"
)

// newSigner loads every configured DKIM key; a key that cannot be read
// stops the start.
func newSigner(cfg *config.Config) (*dkim.Signer, error) {
	var keys []dkim.SigningKey
	for _, d := range cfg.Domains {
		for _, k := range d.DKIM {
			sk, err := dkim.LoadSigningKey(d.Name, k.Selector, k.Key)
			if err != nil {
				return nil, err
			}
			keys = append(keys, sk)
		}
	}
	if len(keys) == 0 {
		return nil, nil
	}
	return dkim.NewSigner(keys, nil)
}

// newChecks returns the server's per-message check: mail from other
// servers is authenticated (SPF, DKIM, DMARC → Authentication-Results, and
// the DMARC policy applied); mail from our users and trusted networks gets
// its Date, Message-ID and DKIM signatures. dropHeader removes forged
// Authentication-Results claiming our name.
func newChecks(cfg *config.Config, resolver dns.Resolver, trusted *policy.Policy, prep *submission.Preparer, log *slog.Logger) (smtpserver.Checker, func(name, value string) bool) {
	in := inbound.New(inbound.Options{
		Resolver:     resolver,
		AuthServID:   cfg.Hostname,
		OnReject:     inbound.Action(cfg.Checks.DMARCReject),
		OnQuarantine: inbound.Action(cfg.Checks.DMARCQuarantine),
		Logger:       log,
	})
	check := func(ctx context.Context, m *smtpserver.Message) error {
		if m.AuthUser != "" || trusted.Trusted(m.ClientIP) {
			add, err := prep.Prepare(m.Data)
			if err != nil {
				return fmt.Errorf("preparing submitted message: %w", err)
			}
			m.Prepend = add
			return nil
		}
		v, err := in.Check(ctx, inbound.Input{ClientIP: m.ClientIP, Helo: m.Helo, MailFrom: m.From, Data: m.Data})
		if err != nil {
			return err
		}
		if v.Refuse != nil {
			return *v.Refuse
		}
		m.Prepend = v.AuthResults
		m.Quarantine = v.Quarantine
		return nil
	}
	return check, in.ClaimsOurID
}
