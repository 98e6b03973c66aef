// Package acme obtains the server's certificate from an ACME CA (RFC 8555), keeps it in a directory and renews it before it expires.
//
// One certificate covers all the names (the host name and the mta-sts
// names of the domains), so that one key serves them all. That key is made
// once and kept across renewals: the DANE-EE TLSA record (3 1 1) that
// names it stays true when the certificate is renewed. Challenges are
// answered with tls-alpn-01 (RFC 8737) on an HTTPS listener (port 443) or
// http-01 (RFC 8555 8.3) on a plain HTTP listener (port 80).
package acme

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/posthorn/posthorn/internal/durable"

	acmeclient "golang.org/x/crypto/acme"

	"github.com/posthorn/posthorn/internal/certs"
)

// The challenge types a Manager can answer.
const (
	ChallengeTLSALPN = "tls-alpn-01" // RFC 8737, on port 443
	ChallengeHTTP    = "http-01"     // RFC 8555 8.3, on port 80
)

// ALPNProto is the ALPN protocol of tls-alpn-01 validation (RFC 8737 6.2).
const ALPNProto = "acme-tls/1"

// The files a Manager keeps in Options.Dir.
const (
	AccountKeyFile = "account-key.pem" // the ACME account's key
	KeyFile        = "key.pem"         // the certificate's key, kept across renewals
	CertFile       = "cert.pem"        // the certificate chain, leaf first
)

// Options configures a Manager.
type Options struct {
	// DirectoryURL is the CA's ACME directory; "" means Let's Encrypt.
	DirectoryURL string
	// Email is the account's contact address, for the CA's expiry
	// warnings; "" registers without one.
	Email string
	// Names go into the one certificate; the first is its subject.
	Names []string
	// Dir holds the account key, the certificate and its key (mode 0700).
	Dir string
	// Challenge is ChallengeTLSALPN (the default) or ChallengeHTTP. The
	// caller serves it: ChallengeTLSConfig on port 443, or HTTPHandler on
	// port 80.
	Challenge string
	// HTTPClient talks to the CA; nil means http.DefaultClient. Tests
	// trust their CA's root here.
	HTTPClient *http.Client
	// Fallback is served until a certificate is obtained (a self-signed
	// one, so that STARTTLS keeps working while the CA is unreachable);
	// nil fails those handshakes.
	Fallback certs.Source
	Logger   *slog.Logger
	// Now is the clock that decides when to renew; nil means time.Now.
	Now func() time.Time
	// CheckEvery is the longest Run waits before looking at the clock
	// again (a suspended machine's timers lag); zero means an hour.
	CheckEvery time.Duration
	// Changed, when set, is called by Run and Renew after a new
	// certificate is in service, before they look at the clock again.
	Changed func(*tls.Certificate)
}

// Manager obtains, serves and renews the certificate.
type Manager struct {
	o       Options
	client  *acmeclient.Client
	certKey crypto.Signer
	log     *slog.Logger

	mu   sync.RWMutex
	cert *tls.Certificate // nil until obtained

	chalMu sync.Mutex
	alpn   map[string]*tls.Certificate // name -> tls-alpn-01 challenge certificate
	http   map[string]string           // token -> key authorization

	obtainMu   sync.Mutex // one order at a time
	registered bool
}

// New loads the keys and certificate kept in opts.Dir, making the keys
// when they do not exist. It does not talk to the CA: Run (or Renew) does.
func New(opts Options) (*Manager, error) {
	if len(opts.Names) == 0 {
		return nil, errors.New("acme: no names for the certificate")
	}
	names := make([]string, len(opts.Names))
	for i, n := range opts.Names {
		names[i] = strings.ToLower(strings.TrimSuffix(n, "."))
	}
	opts.Names = names
	switch opts.Challenge {
	case "":
		opts.Challenge = ChallengeTLSALPN
	case ChallengeTLSALPN, ChallengeHTTP:
	default:
		return nil, fmt.Errorf("acme: unknown challenge type %q", opts.Challenge)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.CheckEvery <= 0 {
		opts.CheckEvery = time.Hour
	}
	if opts.DirectoryURL == "" {
		opts.DirectoryURL = acmeclient.LetsEncryptURL
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("acme: %w", err)
	}
	accountKey, err := loadOrCreateKey(filepath.Join(opts.Dir, AccountKeyFile))
	if err != nil {
		return nil, err
	}
	certKey, err := loadOrCreateKey(filepath.Join(opts.Dir, KeyFile))
	if err != nil {
		return nil, err
	}
	m := &Manager{
		o: opts,
		client: &acmeclient.Client{
			Key:          accountKey,
			DirectoryURL: opts.DirectoryURL,
			HTTPClient:   opts.HTTPClient,
			UserAgent:    "posthorn",
		},
		certKey: certKey,
		log:     opts.Logger.With("acme_directory", opts.DirectoryURL),
		alpn:    map[string]*tls.Certificate{},
		http:    map[string]string{},
	}
	c, err := tls.LoadX509KeyPair(filepath.Join(opts.Dir, CertFile), filepath.Join(opts.Dir, KeyFile))
	switch {
	case err == nil:
		m.cert = &c
	case errors.Is(err, os.ErrNotExist):
	default:
		// A damaged file is replaced by the next certificate.
		m.log.Warn("ignoring the kept ACME certificate; a new one will be obtained", "err", err)
	}
	return m, nil
}

// Certificate returns the ACME certificate in service, or nil.
func (m *Manager) Certificate() *tls.Certificate {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.cert
}

// PublicKey is the certificate's key, the same in every certificate
// this Manager obtains: the one a DANE-EE TLSA record names.
func (m *Manager) PublicKey() crypto.PublicKey { return m.certKey.Public() }

// GetCertificate serves the ACME certificate, or the fallback until there
// is one. It fits tls.Config.GetCertificate.
func (m *Manager) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if c := m.Certificate(); c != nil {
		return c, nil
	}
	if m.o.Fallback != nil {
		return m.o.Fallback.GetCertificate(hello)
	}
	return nil, errors.New("acme: no certificate obtained yet")
}

// RenewAt is when the certificate is due for renewal: after two thirds
// of its lifetime (30 days before the end of a 90-day certificate, as
// Let's Encrypt advises). With no certificate, or one that lacks a
// configured name, it is due now (the zero time).
func (m *Manager) RenewAt() time.Time {
	c := m.Certificate()
	if c == nil {
		return time.Time{}
	}
	leaf, err := certs.LeafOf(c)
	if err != nil || !covers(leaf, m.o.Names) {
		return time.Time{}
	}
	return renewAt(leaf)
}

func renewAt(leaf *x509.Certificate) time.Time {
	life := leaf.NotAfter.Sub(leaf.NotBefore)
	return leaf.NotBefore.Add(life / 3 * 2)
}

func covers(leaf *x509.Certificate, names []string) bool {
	for _, n := range names {
		if leaf.VerifyHostname(n) != nil {
			return false
		}
	}
	return true
}

// Run obtains a certificate when there is none, and renews it when due,
// until ctx is done. Failures are logged and tried again after a
// growing wait (from a minute up to six hours), well within the third of
// the lifetime that renewal leaves.
func (m *Manager) Run(ctx context.Context) error {
	var retryAt time.Time
	failures := 0
	for {
		due := m.RenewAt()
		if retryAt.After(due) {
			due = retryAt
		}
		if wait := due.Sub(m.o.Now()); wait > 0 {
			t := time.NewTimer(min(wait, m.o.CheckEvery))
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C:
			}
			continue
		}
		if err := m.Renew(ctx); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			failures++
			delay := min(time.Minute<<min(failures-1, 9), 6*time.Hour)
			retryAt = m.o.Now().Add(delay)
			args := []any{"err", err, "retry_in", delay.String()}
			if c := m.Certificate(); c != nil && c.Leaf != nil {
				args = append(args, "not_after", c.Leaf.NotAfter.UTC().Format(time.RFC3339))
			}
			m.log.Warn("ACME certificate not obtained", args...)
			continue
		}
		failures, retryAt = 0, time.Time{}
	}
}

// Renew orders a new certificate now, with the same key, and puts it in
// service. It is what Run does when the certificate is due.
func (m *Manager) Renew(ctx context.Context) error {
	m.obtainMu.Lock()
	defer m.obtainMu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	chain, err := m.order(ctx)
	if err != nil {
		return err
	}
	c, err := m.install(chain)
	if err != nil {
		return err
	}
	m.log.Info("ACME certificate in service", "names", strings.Join(m.o.Names, ","),
		"not_after", c.Leaf.NotAfter.UTC().Format(time.RFC3339),
		"renew_at", renewAt(c.Leaf).UTC().Format(time.RFC3339))
	if m.o.Changed != nil {
		m.o.Changed(c)
	}
	return nil
}

// order runs one ACME order for all the names (RFC 8555 7.4) and returns
// the certificate chain.
func (m *Manager) order(ctx context.Context) ([][]byte, error) {
	if !m.registered {
		acct := &acmeclient.Account{}
		if m.o.Email != "" {
			acct.Contact = []string{"mailto:" + m.o.Email}
		}
		if _, err := m.client.Register(ctx, acct, acmeclient.AcceptTOS); err != nil && !errors.Is(err, acmeclient.ErrAccountAlreadyExists) {
			return nil, fmt.Errorf("acme: registering the account: %w", err)
		}
		m.registered = true
	}
	o, err := m.client.AuthorizeOrder(ctx, acmeclient.DomainIDs(m.o.Names...))
	if err != nil {
		return nil, fmt.Errorf("acme: new order: %w", err)
	}
	// Set up every challenge answer first, then tell the CA to look at
	// all of them: it validates in parallel.
	var pending []*acmeclient.Authorization
	defer m.clearChallenges()
	for _, u := range o.AuthzURLs {
		z, err := m.client.GetAuthorization(ctx, u)
		if err != nil {
			return nil, fmt.Errorf("acme: authorization: %w", err)
		}
		switch z.Status {
		case acmeclient.StatusValid:
			continue // validated recently, for an earlier order
		case acmeclient.StatusPending:
		default:
			return nil, fmt.Errorf("acme: authorization for %s is %s", z.Identifier.Value, z.Status)
		}
		i := slices.IndexFunc(z.Challenges, func(c *acmeclient.Challenge) bool { return c.Type == m.o.Challenge })
		if i < 0 {
			return nil, fmt.Errorf("acme: the CA offers no %s challenge for %s", m.o.Challenge, z.Identifier.Value)
		}
		chal := z.Challenges[i]
		if err := m.prepare(z.Identifier.Value, chal); err != nil {
			return nil, err
		}
		if _, err := m.client.Accept(ctx, chal); err != nil {
			return nil, fmt.Errorf("acme: %s challenge for %s: %w", chal.Type, z.Identifier.Value, err)
		}
		pending = append(pending, z)
	}
	for _, z := range pending {
		if _, err := m.client.WaitAuthorization(ctx, z.URI); err != nil {
			return nil, fmt.Errorf("acme: %s validation of %s: %w", m.o.Challenge, z.Identifier.Value, err)
		}
	}
	if o, err = m.client.WaitOrder(ctx, o.URI); err != nil {
		return nil, fmt.Errorf("acme: order: %w", err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:  pkix.Name{CommonName: m.o.Names[0]},
		DNSNames: m.o.Names,
	}, m.certKey)
	if err != nil {
		return nil, fmt.Errorf("acme: certificate request: %w", err)
	}
	chain, _, err := m.client.CreateCertFromOrder(ctx, o, csr, true)
	if err != nil {
		return nil, fmt.Errorf("acme: finalizing the order: %w", err)
	}
	return chain, nil
}

// install checks a new chain against our key and names, keeps it on
// disk and puts it in service.
func (m *Manager) install(chain [][]byte) (*tls.Certificate, error) {
	if len(chain) == 0 {
		return nil, errors.New("acme: the CA returned no certificate")
	}
	leaf, err := x509.ParseCertificate(chain[0])
	if err != nil {
		return nil, fmt.Errorf("acme: the CA's certificate: %w", err)
	}
	if !covers(leaf, m.o.Names) {
		return nil, fmt.Errorf("acme: the CA's certificate does not cover %s", strings.Join(m.o.Names, ", "))
	}
	if pub, ok := leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(m.certKey.Public()) {
		return nil, errors.New("acme: the CA's certificate is not for our key")
	}
	var pemChain []byte
	for _, der := range chain {
		pemChain = append(pemChain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	if err := durable.WriteFile(filepath.Join(m.o.Dir, CertFile), pemChain, 0o644); err != nil {
		return nil, fmt.Errorf("acme: keeping the certificate: %w", err)
	}
	c := &tls.Certificate{Certificate: chain, PrivateKey: m.certKey, Leaf: leaf}
	m.mu.Lock()
	m.cert = c
	m.mu.Unlock()
	return c, nil
}

// prepare makes the answer to one challenge available to the listeners.
func (m *Manager) prepare(name string, chal *acmeclient.Challenge) error {
	m.chalMu.Lock()
	defer m.chalMu.Unlock()
	switch chal.Type {
	case ChallengeTLSALPN:
		c, err := m.client.TLSALPN01ChallengeCert(chal.Token, name)
		if err != nil {
			return fmt.Errorf("acme: tls-alpn-01 certificate for %s: %w", name, err)
		}
		m.alpn[name] = &c
	case ChallengeHTTP:
		ka, err := m.client.HTTP01ChallengeResponse(chal.Token)
		if err != nil {
			return fmt.Errorf("acme: http-01 response for %s: %w", name, err)
		}
		m.http[chal.Token] = ka
	}
	return nil
}

func (m *Manager) clearChallenges() {
	m.chalMu.Lock()
	defer m.chalMu.Unlock()
	clear(m.alpn)
	clear(m.http)
}

// ChallengeTLSConfig returns base with tls-alpn-01 answered: a client
// that offers ALPN protocol acme-tls/1 (the CA's validator, RFC 8737 3)
// gets the challenge certificate for the name it asks for; every other
// client gets what base serves. Use it on the HTTPS listener of port 443
// (the MTA-STS policy host), not on SMTP listeners.
func (m *Manager) ChallengeTLSConfig(base *tls.Config) *tls.Config {
	c := base.Clone()
	if !slices.Contains(c.NextProtos, ALPNProto) {
		c.NextProtos = append(c.NextProtos, ALPNProto)
	}
	next := base.GetCertificate
	c.GetCertificate = func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		if slices.Contains(hello.SupportedProtos, ALPNProto) {
			m.chalMu.Lock()
			cert := m.alpn[strings.ToLower(strings.TrimSuffix(hello.ServerName, "."))]
			m.chalMu.Unlock()
			if cert == nil {
				return nil, fmt.Errorf("acme: no tls-alpn-01 challenge pending for %q", hello.ServerName)
			}
			return cert, nil
		}
		if next != nil {
			return next(hello)
		}
		return nil, nil // base.Certificates
	}
	return c
}

// HTTPHandler answers http-01 challenges at /.well-known/acme-challenge/
// (RFC 8555 8.3) and hands every other request to next (nil: 404).
func (m *Manager) HTTPHandler(next http.Handler) http.Handler {
	if next == nil {
		next = http.NotFoundHandler()
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, ok := strings.CutPrefix(r.URL.Path, "/.well-known/acme-challenge/")
		if !ok {
			next.ServeHTTP(w, r)
			return
		}
		m.chalMu.Lock()
		ka, ok := m.http[token]
		m.chalMu.Unlock()
		if !ok || r.Method != http.MethodGet {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write([]byte(ka))
	})
}

// loadOrCreateKey reads a PEM private key, or makes an ECDSA P-256 key
// and writes it (mode 0600) when the file does not exist.
func loadOrCreateKey(path string) (crypto.Signer, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return nil, err
		}
		if err := durable.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
			return nil, fmt.Errorf("acme: writing %s: %w", path, err)
		}
		return key, nil
	}
	if err != nil {
		return nil, fmt.Errorf("acme: %w", err)
	}
	return parseKey(path, data)
}

// LoadKey reads the certificate key kept in dir (for the TLSA record of
// posthorn dns records); it returns an error wrapping os.ErrNotExist when
// there is none yet.
func LoadKey(dir string) (crypto.Signer, error) {
	path := filepath.Join(dir, KeyFile)
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return parseKey(path, data)
}

func parseKey(path string, data []byte) (crypto.Signer, error) {
	b, _ := pem.Decode(data)
	if b == nil {
		return nil, fmt.Errorf("acme: %s: no PEM block", path)
	}
	var (
		key any
		err error
	)
	switch b.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(b.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(b.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(b.Bytes)
	default:
		return nil, fmt.Errorf("acme: %s: unexpected PEM block %q", path, b.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("acme: %s: %w", path, err)
	}
	s, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("acme: %s: not a signing key", path)
	}
	return s, nil
}
