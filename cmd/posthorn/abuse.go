package main

import (
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"

	"github.com/posthorn/posthorn/internal/config"
	"github.com/posthorn/posthorn/internal/dns"
	"github.com/posthorn/posthorn/internal/dnsbl"
	"github.com/posthorn/posthorn/internal/greylist"
	"github.com/posthorn/posthorn/internal/outbound"
	"github.com/posthorn/posthorn/internal/screen"
	"github.com/posthorn/posthorn/internal/smtpserver"
)

// abuse is port 25's abuse limits and client screening, from [limits]
// and [screen], for smtpserver.Options.
type abuse struct {
	Admission smtpserver.Admission
	Screen    smtpserver.Screen // nil when [screen] asks for nothing
	greylist  *greylist.Store
}

// newAbuse builds the limits and the screen; the greylist triplets live
// in data_dir/greylist. Close it when the server has stopped.
func newAbuse(cfg *config.Config, resolver dns.Resolver, log *slog.Logger) (*abuse, error) {
	l := cfg.Limits
	a := &abuse{Admission: smtpserver.Admission{
		ConnectionsPerNet:    l.ConnectionsPerIPv6Net,
		ConnectionRate:       l.ConnectionRate,
		MessageRate:          l.MessageRate,
		RecipientsPerSession: l.RecipientsPerSession,
		SoftErrorLimit:       l.SoftErrorLimit,
		ErrorDelay:           l.ErrorDelay,
		MinDataRate:          l.MinDataRate,
		MaxDataMemory:        l.MessageMemory,
	}}
	if l.SoftErrorLimit == 0 {
		a.Admission.ErrorDelay = 0 // 0 means never delay, not delay from the first error
	}
	sc := cfg.Screen
	o := screen.Options{Resolver: resolver, FCrDNS: sc.RequireFCrDNS, StrictHelo: sc.StrictHelo, Logger: log}
	if sc.CheckAt == "connect" {
		o.At = screen.AtConnect
	}
	for _, s := range sc.DNSBL {
		bl, err := dnsbl.ParseList(s)
		if err != nil {
			return nil, fmt.Errorf("screen.dnsbl: %w", err)
		}
		o.Block = append(o.Block, bl)
	}
	for _, s := range sc.DNSWL {
		wl, err := dnsbl.ParseList(s)
		if err != nil {
			return nil, fmt.Errorf("screen.dnswl: %w", err)
		}
		o.Allow = append(o.Allow, wl)
	}
	if sc.Greylisting {
		g, err := greylist.Open(greylist.Options{Path: filepath.Join(cfg.DataDir, "greylist"), Delay: sc.GreylistDelay})
		if err != nil {
			return nil, err
		}
		a.greylist, o.Greylist = g, g
	}
	if s := screen.New(o); s.Enabled() {
		a.Screen = func(ip netip.Addr, log *slog.Logger) smtpserver.Screening {
			ss := s.Begin(ip, log)
			return smtpserver.Screening{Connect: ss.Connect, Helo: ss.Helo, Rcpt: ss.Rcpt}
		}
	}
	log.Info("abuse limits", "connection_rate", l.ConnectionRate, "message_rate", l.MessageRate,
		"recipients_per_session", l.RecipientsPerSession, "min_data_rate", l.MinDataRate, "message_memory", l.MessageMemory,
		"dnsbl", len(o.Block), "dnswl", len(o.Allow), "check_at", sc.CheckAt, "fcrdns", sc.RequireFCrDNS,
		"strict_helo", sc.StrictHelo, "greylisting", sc.Greylisting)
	return a, nil
}

// Close syncs the greylist triplets to disk.
func (a *abuse) Close() error {
	if a.greylist != nil {
		return a.greylist.Close()
	}
	return nil
}

// deliveryTimeouts caps every stage of a delivery session at
// delivery.timeout; unset, outbound's RFC 5321 defaults apply.
func deliveryTimeouts(cfg *config.Config) outbound.Timeouts {
	t := cfg.Delivery.Timeout
	if t <= 0 {
		return outbound.Timeouts{}
	}
	return outbound.Timeouts{Connect: t, Greeting: t, Command: t, Mail: t, Rcpt: t, DataInit: t, DataBlock: t, DataFinal: t}
}
