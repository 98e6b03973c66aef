package main

import (
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/posthorn/posthorn/internal/config"
	"github.com/posthorn/posthorn/internal/dns"
	"github.com/posthorn/posthorn/internal/obs"
	"github.com/posthorn/posthorn/internal/outbound"
)

// newOutbound builds the remote delivery agent: MX delivery, or all mail
// through the configured smarthost.
func newOutbound(cfg *config.Config, resolver dns.Resolver, log *slog.Logger, mx *obs.Metrics) (*outbound.Deliverer, error) {
	o := outbound.Options{
		Hostname: cfg.Hostname,
		Resolver: resolver,
		Port:     cfg.Delivery.Port,
		Logger:   log,
		Metrics:  mx,
	}
	if cfg.Relay.Smarthost != "" {
		sh, err := outbound.ParseSmarthost(cfg.Relay.Smarthost)
		if err != nil {
			return nil, fmt.Errorf("relay.smarthost: %w", err)
		}
		sh.RequireTLS = cfg.Relay.SmarthostTLS != "optional"
		sh.VerifyTLS = cfg.Relay.SmarthostTLS == "verify"
		if cfg.Relay.SmarthostUser != "" {
			pw, err := os.ReadFile(cfg.Relay.SmarthostPasswordFile)
			if err != nil {
				return nil, fmt.Errorf("relay.smarthost_password_file: %w", err)
			}
			sh.Username = cfg.Relay.SmarthostUser
			sh.Password = strings.TrimRight(strings.SplitN(string(pw), "\n", 2)[0], "\r")
		}
		o.Smarthost = &sh
	}
	return outbound.New(o), nil
}
