package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/posthorn/posthorn/internal/config"
	"github.com/posthorn/posthorn/internal/dns"
	"github.com/posthorn/posthorn/internal/mtasts"
	"github.com/posthorn/posthorn/internal/obs"
	"github.com/posthorn/posthorn/internal/outbound"
	"github.com/posthorn/posthorn/internal/queue"
	"github.com/posthorn/posthorn/internal/spool"
	"github.com/posthorn/posthorn/internal/tlspolicy"
	"github.com/posthorn/posthorn/internal/tlsrpt"
)

// newOutbound builds the remote delivery agent: MX delivery under the
// recipient domains' TLS policies (overrides, DANE, MTA-STS), or all
// mail through the configured smarthost. The outboundTLS it returns runs
// what goes with the policies in the background once the queue exists
// (start): MTA-STS cache refreshes and TLS-RPT reports.
func newOutbound(cfg *config.Config, resolver dns.Resolver, log *slog.Logger, mx *obs.Metrics) (*outbound.Deliverer, *outboundTLS, error) {
	o := outbound.Options{
		Hostname: cfg.Hostname,
		Resolver: resolver,
		Port:     cfg.Delivery.Port,
		Timeouts: deliveryTimeouts(cfg),
		Logger:   log,
		Metrics:  mx,
	}
	roots, err := outboundRoots(cfg.Delivery.TLSCA)
	if err != nil {
		return nil, nil, err
	}
	if roots != nil {
		o.TLSConfig = &tls.Config{RootCAs: roots}
	}
	svc := &outboundTLS{cfg: cfg, resolver: resolver, log: log}
	if cfg.Relay.Smarthost != "" {
		sh, err := outbound.ParseSmarthost(cfg.Relay.Smarthost)
		if err != nil {
			return nil, nil, fmt.Errorf("relay.smarthost: %w", err)
		}
		sh.RequireTLS = cfg.Relay.SmarthostTLS != "optional"
		sh.VerifyTLS = cfg.Relay.SmarthostTLS == "verify"
		if cfg.Relay.SmarthostUser != "" {
			pw, err := os.ReadFile(cfg.Relay.SmarthostPasswordFile)
			if err != nil {
				return nil, nil, fmt.Errorf("relay.smarthost_password_file: %w", err)
			}
			sh.Username = cfg.Relay.SmarthostUser
			sh.Password = strings.TrimRight(strings.SplitN(string(pw), "\n", 2)[0], "\r")
		}
		o.Smarthost = &sh
		return outbound.New(o), svc, nil
	}

	po := tlspolicy.Options{Resolver: resolver, NoDANE: !cfg.Delivery.DANE, Overrides: cfg.TLSPolicy, Roots: roots, Logger: log}
	if cfg.Delivery.MTASTS {
		svc.sts, err = mtasts.NewCache(mtasts.CacheOptions{
			Dir:      filepath.Join(cfg.DataDir, "mta-sts"),
			Resolver: resolver,
			Fetch:    mtasts.FetchOptions{Resolver: resolver, RootCAs: roots, Port: cfg.Delivery.MTASTSPort},
		})
		if err != nil {
			return nil, nil, err
		}
		po.MTASTS = svc.sts
	}
	if cfg.TLSRPT.Enabled {
		svc.store, err = tlsrpt.NewStore(tlsrpt.StoreOptions{Dir: filepath.Join(cfg.DataDir, "tls-rpt"), Period: cfg.TLSRPT.Period})
		if err != nil {
			return nil, nil, err
		}
		po.Reports = svc.store
	}
	pols := tlspolicy.New(po)
	o.TLSPolicy = pols.Policy
	o.OnTLS = pols.Outcome
	return outbound.New(o), svc, nil
}

// outboundRoots is the system's roots plus those in file; nil (the
// system's, as crypto/tls takes them) when file is "".
func outboundRoots(file string) (*x509.CertPool, error) {
	if file == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("delivery.tls_ca: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("delivery.tls_ca: %s holds no PEM certificate", file)
	}
	return pool, nil
}

// outboundTLS refreshes MTA-STS policies before they expire and sends
// the TLS-RPT reports of each finished period through the queue.
type outboundTLS struct {
	cfg      *config.Config
	resolver dns.Resolver
	log      *slog.Logger
	sts      *mtasts.Cache // nil: MTA-STS off
	store    *tlsrpt.Store // nil: TLS-RPT off
	// web posts reports to https: report URIs: certificates verified
	// against the system's roots, public addresses only
	// (tlsrpt.PublicOnly). Tests replace it.
	web *http.Client
}

// reportClient is outboundTLS.web.
func reportClient() *http.Client {
	d := &net.Dialer{Timeout: 30 * time.Second, Control: tlsrpt.PublicOnly}
	return &http.Client{
		Timeout:   time.Minute,
		Transport: &http.Transport{DialContext: d.DialContext, TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12}, TLSHandshakeTimeout: 30 * time.Second},
	}
}

// start runs the background work until ctx ends. prepare adds Date,
// Message-ID and DKIM signatures to a report, as to submitted mail (RFC
// 8460 5.3 asks for DKIM); nil adds none.
func (s *outboundTLS) start(ctx context.Context, sp *spool.Spool, q *queue.Manager, prepare func(data func() (io.Reader, error)) (string, error)) {
	if s == nil {
		return
	}
	if s.sts != nil {
		go every(ctx, time.Hour, func() {
			if n := s.sts.Refresh(ctx); n > 0 {
				s.log.Info("MTA-STS policies refreshed before expiry", "count", n)
			}
		})
	}
	if s.store != nil {
		tick := min(s.cfg.TLSRPT.Period/2, 10*time.Minute)
		go every(ctx, tick, func() { s.sendReports(ctx, sp, q, prepare) })
	}
}

// post submits a report to an https: report URI, trying three times
// over a minute; a report that cannot be delivered is logged and
// dropped, as RFC 8460 5.4 allows.
func (s *outboundTLS) post(ctx context.Context, uri, dom string, r *tlsrpt.Report) {
	web := s.web
	if web == nil {
		web = reportClient()
	}
	var err error
	for try, wait := 1, 5*time.Second; try <= 3; try, wait = try+1, 4*wait {
		if err = tlsrpt.Post(ctx, web, uri, r); err == nil {
			s.log.Info("TLS-RPT report posted", "domain", dom, "uri", uri, "start", r.DateRange.Start, "end", r.DateRange.End)
			return
		}
		if try < 3 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
	}
	s.log.Warn("TLS-RPT: report not posted", "domain", dom, "uri", uri, "err", err)
}

// every runs f now and then every d until ctx ends.
func every(ctx context.Context, d time.Duration, f func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		f()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// sendReports sends every finished period's report for each policy
// domain to the domain's report URIs (one message queued for its mailto:
// addresses, a POST to each https: URI), then forgets the period.
func (s *outboundTLS) sendReports(ctx context.Context, sp *spool.Spool, q *queue.Manager, prepare func(data func() (io.Reader, error)) (string, error)) {
	c := s.cfg.TLSRPT
	for _, p := range s.store.Due() {
		reps, doms, err := s.store.Reports(p, tlsrpt.ReportOptions{OrganizationName: c.Organization, ContactInfo: c.Contact})
		if err != nil {
			s.log.Error("TLS-RPT: cannot read the period's results", "start", p.Start, "err", err)
			continue
		}
		for _, dom := range doms {
			lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			rec, err := tlsrpt.LookupRecord(lctx, s.resolver, dom)
			cancel()
			if errors.Is(err, tlsrpt.ErrNoRecord) {
				continue
			}
			if err != nil {
				s.log.Info("TLS-RPT: no report for the domain", "domain", dom, "err", err)
				continue
			}
			for _, uri := range rec.HTTPSURIs() {
				s.post(ctx, uri, dom, reps[dom])
			}
			to := rec.MailtoAddrs()
			if len(to) == 0 {
				continue
			}
			msg, err := tlsrpt.Mail(reps[dom], dom, tlsrpt.MailOptions{From: c.ReportFrom, To: to, Submitter: s.cfg.Hostname})
			if err != nil {
				s.log.Error("TLS-RPT: cannot build the report", "domain", dom, "err", err)
				continue
			}
			if prepare != nil {
				hdr, err := prepare(func() (io.Reader, error) { return bytes.NewReader(msg), nil })
				if err != nil {
					s.log.Error("TLS-RPT: cannot sign the report", "domain", dom, "err", err)
					continue
				}
				msg = append([]byte(hdr), msg...)
			}
			env := spool.Envelope{From: c.ReportFrom, Listener: "tlsrpt"}
			for _, a := range to {
				env.Recipients = append(env.Recipients, spool.Recipient{Addr: a})
			}
			id, err := enqueue(ctx, sp, q, env, bytes.NewReader(msg))
			if err != nil {
				s.log.Error("TLS-RPT: cannot queue the report", "domain", dom, "err", err)
				continue
			}
			s.log.Info("TLS-RPT report queued", "id", id, "domain", dom, "to", strings.Join(to, ","), "start", p.Start, "end", p.End)
		}
		if err := s.store.Done(p); err != nil {
			s.log.Warn("TLS-RPT: cannot remove the sent period", "err", err)
		}
	}
}
