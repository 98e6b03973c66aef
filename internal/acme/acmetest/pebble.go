// Package acmetest runs Pebble, Let's Encrypt's test ACME server, inside a test process, validating on loopback.
package acmetest

import (
	"crypto/x509"
	"encoding/pem"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/letsencrypt/pebble/v2/ca"
	"github.com/letsencrypt/pebble/v2/db"
	"github.com/letsencrypt/pebble/v2/va"
	"github.com/letsencrypt/pebble/v2/wfe"
)

// Options configures a Pebble.
type Options struct {
	// HTTPPort and TLSPort are where Pebble's VA connects, on the address
	// the name resolves to, for http-01 and tls-alpn-01 validation.
	HTTPPort, TLSPort int
	// Resolver is a DNS server ("127.0.0.1:port", TCP) that resolves the
	// names to validate; a dnstest.Server's Addr.
	Resolver string
	// Validity of the certificates issued; zero means Pebble's 90 days.
	Validity time.Duration
}

// Pebble is a running test CA. Its VA really validates the challenges;
// only its random wait before each validation is off.
type Pebble struct {
	// DirectoryURL is the ACME directory, over HTTPS with a certificate
	// that Client (and APICertFile) trust.
	DirectoryURL string
	Client       *http.Client
	// APICertFile holds the API server's certificate in PEM, for a
	// process of its own to trust (tls.acme.directory_ca).
	APICertFile string
	// Roots trust the certificates Pebble issues.
	Roots   *x509.CertPool
	RootPEM []byte
}

// Start runs Pebble until the test ends. It sets PEBBLE_VA_NOSLEEP for
// the test, so the test cannot be parallel.
func Start(t testing.TB, opts Options) *Pebble {
	t.Helper()
	t.Setenv("PEBBLE_VA_NOSLEEP", "1") // read by va.New
	var logw io.Writer = io.Discard
	if testing.Verbose() {
		logw = os.Stderr
	}
	logger := log.New(logw, "pebble ", log.Lmicroseconds)
	store := db.NewMemoryStore()
	authority := ca.New(logger, store, "", "ecdsa", 0, 1, map[string]ca.Profile{
		"default": {Description: "posthorn tests", ValidityPeriod: uint64(opts.Validity / time.Second)},
	})
	validator := va.New(logger, opts.HTTPPort, opts.TLSPort, false, opts.Resolver, store)
	front := wfe.New(logger, store, validator, authority, []string{"pebble.letsencrypt.org"}, false, false, 0, 0)
	api := httptest.NewTLSServer(front.Handler())
	t.Cleanup(api.Close)
	mgmt := httptest.NewTLSServer(front.ManagementHandler())
	t.Cleanup(mgmt.Close)

	res, err := mgmt.Client().Get(mgmt.URL + wfe.RootCertPath + "0")
	if err != nil {
		t.Fatal(err)
	}
	rootPEM, _ := io.ReadAll(res.Body)
	res.Body.Close()
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(rootPEM) {
		t.Fatalf("acmetest: Pebble's root: %q", rootPEM)
	}
	certFile := filepath.Join(t.TempDir(), "pebble-api.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: api.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	return &Pebble{
		DirectoryURL: api.URL + wfe.DirectoryPath,
		Client:       api.Client(),
		APICertFile:  certFile,
		Roots:        roots,
		RootPEM:      rootPEM,
	}
}
