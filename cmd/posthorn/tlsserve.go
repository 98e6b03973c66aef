package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/posthorn/posthorn/internal/acme"
	"github.com/posthorn/posthorn/internal/certs"
	"github.com/posthorn/posthorn/internal/config"
	"github.com/posthorn/posthorn/internal/mtastshost"
)

// tlsService is everything about the server's own certificate: where it
// comes from (files reloaded when they change, ACME, or self-signed), and
// the HTTPS listeners that go with it (the MTA-STS policy host, the ACME
// challenge listener).
//
// serve uses it as:
//
//	tlsSvc, err := newTLSService(cfg, log)   // binds its listeners
//	defer tlsSvc.Close()
//	... smtpserver.Options{TLS: tlsSvc.ServerConfig()} ...
//	tlsSvc.Start()                            // once the SMTP listeners are bound too
type tlsService struct {
	log  *slog.Logger
	src  certs.Source
	acme *acme.Manager // nil without [tls.acme]

	lns     []httpsListener
	servers []interface{ Shutdown(context.Context) error }
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// httpsListener is a bound socket and what it serves.
type httpsListener struct {
	ln    net.Listener
	role  string // "mta-sts", "acme-tls-alpn" or "acme-http"
	serve func(net.Listener) error
}

// acmeDir is where the ACME account, certificate and key are kept.
func acmeDir(cfg *config.Config) string { return filepath.Join(cfg.DataDir, "acme") }

// ownMTASTSPolicy is the policy posthorn publishes for its domains
// (RFC 8461 3.2): this host as the only MX. posthorn dns records prints
// it and the MTA-STS listener serves it.
func ownMTASTSPolicy(cfg *config.Config) mtastshost.Policy {
	return mtastshost.Policy{Mode: cfg.MTASTS.Mode, MX: []string{cfg.Hostname}, MaxAge: cfg.MTASTS.MaxAge}
}

// newTLSService loads the certificate (making a self-signed one when
// none is configured, or as the stand-in until ACME delivers) and binds
// the HTTPS listeners; nothing is served until Start.
func newTLSService(cfg *config.Config, log *slog.Logger) (*tlsService, error) {
	s := &tlsService{log: log}
	certFile, keyFile, selfSigned := cfg.TLSFiles()
	if selfSigned {
		_, created, err := certs.LoadOrCreate(certFile, keyFile, cfg.Hostname)
		if err != nil {
			return nil, err
		}
		if created {
			log.Info("made a self-signed TLS certificate", "cert", certFile, "key", keyFile)
		}
	}
	files, err := certs.NewFileSource(certFile, keyFile, certs.FileOptions{Logger: log})
	if err != nil {
		return nil, err
	}
	s.src = files
	source := "files"
	if selfSigned {
		source = "self-signed"
	}

	if a := cfg.TLS.ACME; a != nil {
		hc, err := acmeHTTPClient(a.DirectoryCA)
		if err != nil {
			return nil, err
		}
		s.acme, err = acme.New(acme.Options{
			DirectoryURL: a.Directory,
			Email:        a.Email,
			Names:        cfg.ACMENames(),
			Dir:          acmeDir(cfg),
			Challenge:    a.Challenge,
			HTTPClient:   hc,
			Fallback:     files, // self-signed until the CA has answered
			Logger:       log,
		})
		if err != nil {
			return nil, err
		}
		s.src = s.acme
		source = "acme"
	}
	args := []any{"source", source}
	if c, err := s.src.GetCertificate(&tls.ClientHelloInfo{ServerName: cfg.Hostname}); err == nil {
		if leaf, err := certs.LeafOf(c); err == nil {
			args = append(args, "subject", leaf.Subject.CommonName, "not_after", leaf.NotAfter.UTC().Format(time.RFC3339))
			if s.acme == nil {
				args = append(args, "tlsa_3_1_1", certs.TLSA311(leaf))
			}
		}
	}
	if s.acme != nil {
		if h, err := certs.TLSA311Key(s.acme.PublicKey()); err == nil {
			args = append(args, "acme_names", cfg.ACMENames(), "tlsa_3_1_1", h)
		}
	}
	log.Info("TLS certificate source", args...)

	if err := s.listen(cfg); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// acmeHTTPClient talks to the ACME directory, trusting the roots in
// caFile when it is set (a private CA; Pebble in tests).
func acmeHTTPClient(caFile string) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("tls.acme.directory_ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls.acme.directory_ca: no PEM certificate in %s", caFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{Transport: tr, Timeout: time.Minute}, nil
}

// listen binds mta_sts.listen and tls.acme.listen. For tls-alpn-01 the
// MTA-STS listener answers the challenges too, so an address in both
// lists is bound once.
func (s *tlsService) listen(cfg *config.Config) error {
	httpsTLS := certs.ServerConfigFrom(s.src)
	alpn := s.acme != nil && cfg.TLS.ACME.Challenge == acme.ChallengeTLSALPN
	if alpn {
		httpsTLS = s.acme.ChallengeTLSConfig(httpsTLS)
	}
	log := s.log.With("listener", "https")
	policyHost := mtastshost.New(mtastshost.Options{
		Domains: domainNames(cfg),
		Policy:  ownMTASTSPolicy(cfg),
		TLS:     httpsTLS,
		Logger:  log,
	})
	s.servers = append(s.servers, policyHost)
	for _, a := range cfg.MTASTS.Listen {
		if err := s.bind(a, "mta-sts", policyHost.Serve); err != nil {
			return err
		}
	}
	if s.acme == nil {
		return nil
	}
	var serve func(net.Listener) error
	role := "acme-http"
	if alpn {
		// A host for no domain: every request gets 404, only the
		// challenge handshakes matter.
		challengeOnly := mtastshost.New(mtastshost.Options{TLS: httpsTLS, Logger: log})
		s.servers = append(s.servers, challengeOnly)
		serve, role = challengeOnly.Serve, "acme-tls-alpn"
	} else {
		hs := &http.Server{
			Handler:           s.acme.HTTPHandler(nil),
			ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout:       30 * time.Second,
			WriteTimeout:      30 * time.Second,
			IdleTimeout:       60 * time.Second,
			MaxHeaderBytes:    8 << 10,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		}
		s.servers = append(s.servers, hs)
		serve = hs.Serve
	}
	for _, a := range cfg.TLS.ACME.Listen {
		if alpn && slices.Contains(cfg.MTASTS.Listen, a) && !isPortZero(a) {
			continue // the MTA-STS listener answers
		}
		if err := s.bind(a, role, serve); err != nil {
			return err
		}
	}
	return nil
}

func isPortZero(addr string) bool {
	_, port, _ := net.SplitHostPort(addr)
	return port == "0"
}

func (s *tlsService) bind(addr, role string, serve func(net.Listener) error) error {
	ln, err := net.Listen(listenNetwork(addr), addr)
	if err != nil {
		return fmt.Errorf("cannot listen for %s on %s: %w", role, addr, err)
	}
	s.lns = append(s.lns, httpsListener{ln: ln, role: role, serve: serve})
	return nil
}

func domainNames(cfg *config.Config) []string {
	var names []string
	for _, d := range cfg.Domains {
		names = append(names, d.Name)
	}
	return names
}

// ServerConfig is the TLS configuration of the SMTP listeners: the
// certificate in service at each handshake, so renewals and replaced
// files are served without a restart.
func (s *tlsService) ServerConfig() *tls.Config { return certs.ServerConfigFrom(s.src) }

// Listeners describes the bound HTTPS listeners, as "role address", for
// the start banner.
func (s *tlsService) Listeners() []string {
	var out []string
	for _, l := range s.lns {
		out = append(out, l.role+" "+l.ln.Addr().String())
	}
	return out
}

// Start serves the HTTPS listeners and runs ACME issuance and renewal
// until Close. A listener that fails is logged: mail keeps flowing.
func (s *tlsService) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	for _, l := range s.lns {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := l.serve(l.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.log.Error("HTTPS listener stopped", "role", l.role, "addr", l.ln.Addr().String(), "err", err)
			}
		}()
		s.log.Info("listening", "role", l.role, "addr", l.ln.Addr().String())
	}
	if s.acme != nil {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.acme.Run(ctx)
		}()
	}
}

// Close stops the ACME loop and the HTTPS listeners (requests in
// progress get a few seconds).
func (s *tlsService) Close() {
	if s.cancel != nil {
		s.cancel()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, srv := range s.servers {
		srv.Shutdown(ctx)
	}
	for _, l := range s.lns {
		l.ln.Close() // never served, when Start was not called
	}
	s.wg.Wait()
}
