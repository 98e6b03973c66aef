package main

import (
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"

	"github.com/posthorn/posthorn/internal/arc"
	"github.com/posthorn/posthorn/internal/config"
	"github.com/posthorn/posthorn/internal/dkim"
)

// arcSealer adds an ARC set (RFC 8617) to mail posthorn forwards, so the
// next hop can trust the SPF, DKIM and DMARC results we saw although SRS
// and forwarding break SPF alignment.
type arcSealer struct {
	authServID string
	key        dkim.SigningKey
}

// newARCSealer seals with the first DKIM key of the first domain (the one
// SRS addresses use), else the first key of any domain; nil when no domain
// has a key.
func newARCSealer(cfg *config.Config) (*arcSealer, error) {
	var pick *config.Domain
	var sel config.DKIMKey
	for i := range cfg.Domains {
		if len(cfg.Domains[i].DKIM) > 0 {
			pick, sel = &cfg.Domains[i], cfg.Domains[i].DKIM[0]
			break
		}
	}
	if pick == nil {
		return nil, nil
	}
	k, err := dkim.LoadSigningKey(pick.Name, sel.Selector, sel.Key)
	if err != nil {
		return nil, err
	}
	return &arcSealer{authServID: cfg.Hostname, key: k}, nil
}

// arcResult finds the arc= result in our Authentication-Results.
var arcResult = regexp.MustCompile(`(?i)(?:^|[;\s])arc=(pass|fail|none)\b`)

// seal returns the ARC set for the message as it will be forwarded. The
// chain validation is what we recorded on receipt (arc= in our own
// Authentication-Results); without it (mail from our own users) the chain
// starts here.
func (s *arcSealer) seal(body func() (io.ReadCloser, error)) (string, error) {
	rc, err := body()
	if err != nil {
		return "", err
	}
	ours, err := arc.CollectAuthResults(rc, s.authServID)
	rc.Close()
	if err != nil {
		return "", err
	}
	cv := arc.StatusNone
	if m := arcResult.FindStringSubmatch(ours); m != nil {
		cv = arc.Status(strings.ToLower(m[1]))
	}
	if ours == "" {
		ours = "none"
	}
	rc, err = body()
	if err != nil {
		return "", err
	}
	defer rc.Close()
	set, err := arc.Sign(rc, &arc.SignOptions{
		Domain: s.key.Domain, Selector: s.key.Selector, Key: s.key.Key,
		AuthServID: s.authServID, AuthResults: ours, ChainValidation: cv,
	})
	if errors.Is(err, arc.ErrChainFailed) {
		return "", err
	}
	if err != nil {
		return "", fmt.Errorf("ARC seal: %w", err)
	}
	return set.String(), nil
}
