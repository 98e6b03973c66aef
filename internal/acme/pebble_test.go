package acme

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/posthorn/posthorn/internal/acme/acmetest"
	"github.com/posthorn/posthorn/internal/certs"
	"github.com/posthorn/posthorn/internal/dns/dnstest"
	"github.com/posthorn/posthorn/internal/mtastshost"
	"github.com/posthorn/posthorn/internal/testutil"
)

func startPebble(t *testing.T, httpPort, tlsPort int, validity time.Duration) *acmetest.Pebble {
	t.Helper()
	dnsSrv := dnstest.NewServer(t, dnstest.Zone{
		"mx.example.test":       {A: []string{"127.0.0.1"}},
		"mta-sts.example.test":  {A: []string{"127.0.0.1"}},
		"mta-sts.example2.test": {A: []string{"127.0.0.1"}},
	})
	return acmetest.Start(t, acmetest.Options{HTTPPort: httpPort, TLSPort: tlsPort, Resolver: dnsSrv.Addr(), Validity: validity})
}

func listen(t *testing.T) (net.Listener, int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln, ln.Addr().(*net.TCPAddr).Port
}

// fallback is a self-signed certificate, as serve makes on first start.
func fallback(t *testing.T) certs.Source {
	t.Helper()
	dir := t.TempDir()
	cf, kf := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	if _, _, err := certs.LoadOrCreate(cf, kf, "mx.example.test"); err != nil {
		t.Fatal(err)
	}
	src, err := certs.NewFileSource(cf, kf, certs.FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return src
}

// dialVerified makes a TLS connection to addr that verifies the server's
// certificate for name against roots, and returns the leaf.
func dialVerified(t *testing.T, addr, name string, roots *x509.CertPool) *x509.Certificate {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr,
		&tls.Config{ServerName: name, RootCAs: roots, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatalf("TLS to %s as %s: %v", addr, name, err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0]
}

func TestPebbleTLSALPNObtainServeAndRenewWithoutRestart(t *testing.T) {
	ln, tlsPort := listen(t)
	p := startPebble(t, 1, tlsPort, 90*24*time.Hour)

	// The clock Run decides by: the test moves it forward to make the
	// certificate due, and the Changed hook moves it back once the
	// renewed one is in service.
	var offset atomic.Int64
	changed := make(chan *tls.Certificate, 4)
	dir := t.TempDir()
	names := []string{"mx.example.test", "mta-sts.example.test", "mta-sts.example2.test"}
	m, err := New(Options{
		DirectoryURL: p.DirectoryURL,
		Email:        "postmaster@example.test",
		Names:        names,
		Dir:          dir,
		Challenge:    ChallengeTLSALPN,
		HTTPClient:   p.Client,
		Fallback:     fallback(t),
		Logger:       testutil.Logger(t),
		Now:          func() time.Time { return time.Now().Add(time.Duration(offset.Load())) },
		CheckEvery:   20 * time.Millisecond,
		Changed: func(c *tls.Certificate) {
			offset.Store(0)
			changed <- c
		},
	})
	if err != nil {
		t.Fatal(err)
	}

	// The MTA-STS policy host on "port 443" answers the challenges too.
	host := mtastshost.New(mtastshost.Options{
		Domains: []string{"example.test", "example2.test"},
		Policy:  mtastshost.Policy{Mode: "enforce", MX: []string{"mx.example.test"}, MaxAge: 86400 * time.Second},
		TLS:     m.ChallengeTLSConfig(certs.ServerConfigFrom(m)),
	})
	go host.Serve(ln)
	t.Cleanup(func() { host.Shutdown(context.Background()) })
	addr := ln.Addr().String()

	// Before the CA has answered: the self-signed fallback.
	if got, err := m.GetCertificate(&tls.ClientHelloInfo{ServerName: "mx.example.test"}); err != nil || !strings.Contains(got.Leaf.Subject.String(), "self-signed") {
		t.Fatalf("before issuance: %v, %v; want the self-signed fallback", got, err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Run: %v", err)
		}
	})

	first := waitCert(t, changed)
	for _, n := range names {
		leaf := dialVerified(t, addr, n, p.Roots)
		if !leaf.Equal(first.Leaf) {
			t.Fatalf("%s: served %v, want the issued certificate %v", n, leaf.SerialNumber, first.Leaf.SerialNumber)
		}
	}
	// The policy is fetchable over the ACME certificate.
	res, err := (&http.Client{Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: p.Roots},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}}).Get("https://mta-sts.example2.test" + mtastshost.WellKnownPath)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || !strings.Contains(string(body), "mode: enforce") {
		t.Fatalf("policy: %d %q", res.StatusCode, body)
	}
	if want := renewAt(first.Leaf); !m.RenewAt().Equal(want) || want.Before(first.Leaf.NotBefore.Add(59*24*time.Hour)) {
		t.Fatalf("RenewAt = %v: want two thirds into %v..%v", m.RenewAt(), first.Leaf.NotBefore, first.Leaf.NotAfter)
	}

	// Sixty-one days later the certificate is due; Run renews it.
	offset.Store(int64(61 * 24 * time.Hour))
	second := waitCert(t, changed)
	if second.Leaf.Equal(first.Leaf) {
		t.Fatal("renewal returned the same certificate")
	}
	if certs.TLSA311(second.Leaf) != certs.TLSA311(first.Leaf) {
		t.Fatal("renewal changed the key: a published TLSA 3 1 1 record would no longer match")
	}
	if leaf := dialVerified(t, addr, "mx.example.test", p.Roots); !leaf.Equal(second.Leaf) {
		t.Fatalf("after renewal: served %v, want the renewed certificate %v", leaf.SerialNumber, second.Leaf.SerialNumber)
	}

	// Kept in the directory: a restart serves it without asking the CA.
	m2, err := New(Options{DirectoryURL: "https://127.0.0.1:1/unused", Names: names, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	got, err := m2.GetCertificate(&tls.ClientHelloInfo{})
	if err != nil {
		t.Fatal(err)
	}
	if leaf, _ := x509.ParseCertificate(got.Certificate[0]); !leaf.Equal(second.Leaf) {
		t.Fatal("after a restart: not the renewed certificate")
	}
	if !m2.RenewAt().After(time.Now()) {
		t.Fatal("after a restart: the kept certificate is due already")
	}
	b, _ := os.ReadFile(filepath.Join(dir, CertFile))
	if n := strings.Count(string(b), "BEGIN CERTIFICATE"); n < 2 {
		t.Fatalf("%s holds %d certificates: want the chain", CertFile, n)
	}
}

func TestPebbleHTTP01(t *testing.T) {
	ln, httpPort := listen(t)
	p := startPebble(t, httpPort, 1, 7*24*time.Hour)
	m, err := New(Options{
		DirectoryURL: p.DirectoryURL,
		Names:        []string{"mx.example.test", "mta-sts.example.test"},
		Dir:          t.TempDir(),
		Challenge:    ChallengeHTTP,
		HTTPClient:   p.Client,
		Logger:       testutil.Logger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: m.HTTPHandler(nil)}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	if _, err := m.GetCertificate(&tls.ClientHelloInfo{}); err == nil {
		t.Fatal("no certificate and no fallback, yet GetCertificate answered")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := m.Renew(ctx); err != nil {
		t.Fatal(err)
	}
	c := m.Certificate()
	if _, err := c.Leaf.Verify(x509.VerifyOptions{DNSName: "mta-sts.example.test", Roots: p.Roots, Intermediates: intermediates(c)}); err != nil {
		t.Fatalf("issued certificate does not verify: %v", err)
	}
	// 7-day certificate: renewed after two thirds, about 4.7 days in.
	if d := m.RenewAt().Sub(c.Leaf.NotBefore); d < 4*24*time.Hour || d > 5*24*time.Hour {
		t.Fatalf("RenewAt is %v after NotBefore", d)
	}
}

func TestFailedValidationIsAnError(t *testing.T) {
	// Nothing answers on the port Pebble's VA validates at.
	ln, tlsPort := listen(t)
	ln.Close()
	p := startPebble(t, 1, tlsPort, 90*24*time.Hour)
	m, err := New(Options{DirectoryURL: p.DirectoryURL, Names: []string{"mx.example.test"}, Dir: t.TempDir(), HTTPClient: p.Client, Logger: testutil.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err = m.Renew(ctx)
	if err == nil || !strings.Contains(err.Error(), "validation of mx.example.test") {
		t.Fatalf("Renew = %v; want a validation error", err)
	}
	if m.Certificate() != nil {
		t.Fatal("a certificate is in service after a failed order")
	}
}

func waitCert(t *testing.T, ch <-chan *tls.Certificate) *tls.Certificate {
	t.Helper()
	select {
	case c := <-ch:
		return c
	case <-time.After(2 * time.Minute):
		t.Fatal("no certificate from Pebble within two minutes")
		return nil
	}
}

func intermediates(c *tls.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, der := range c.Certificate[1:] {
		if ic, err := x509.ParseCertificate(der); err == nil {
			p.AddCert(ic)
		}
	}
	return p
}
