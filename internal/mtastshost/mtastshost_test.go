package mtastshost

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/posthorn/posthorn/internal/certs"
	"github.com/posthorn/posthorn/internal/dns/dnstest"
	"github.com/posthorn/posthorn/internal/mtasts"
)

func TestPolicyText(t *testing.T) {
	p := Policy{Mode: "enforce", MX: []string{"mx.example.com"}, MaxAge: 7 * 24 * time.Hour}
	want := "version: STSv1\r\nmode: enforce\r\nmx: mx.example.com\r\nmax_age: 604800\r\n"
	if got := p.Text(); got != want {
		t.Fatalf("Text = %q, want %q", got, want)
	}
	if p.ID() == (Policy{Mode: "testing", MX: p.MX, MaxAge: p.MaxAge}).ID() {
		t.Fatal("ID does not change with the mode")
	}
	if len(p.ID()) != 16 {
		t.Fatalf("ID = %q: want 16 hex digits", p.ID())
	}
}

// startHost runs a policy host for example.test and example.org on
// loopback with a test CA; it returns the port and the roots to trust.
func startHost(t *testing.T, pol Policy) (port int, roots *x509.CertPool) {
	t.Helper()
	certPEM, keyPEM, err := certs.SelfSigned("mta-sts.example.test", "mta-sts.example.org")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	roots = x509.NewCertPool()
	b, _ := pem.Decode(certPEM)
	leaf, _ := x509.ParseCertificate(b.Bytes)
	roots.AddCert(leaf)
	srv := New(Options{
		Domains: []string{"example.test", "Example.org."},
		Policy:  pol,
		TLS:     certs.ServerConfig(cert),
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().(*net.TCPAddr).Port, roots
}

func TestPolicyFetchedByOurOwnMTASTSClient(t *testing.T) {
	pol := Policy{Mode: "enforce", MX: []string{"mx.example.test"}, MaxAge: 86400 * time.Second}
	port, roots := startHost(t, pol)
	res := dnstest.NewResolver(dnstest.Zone{
		"mta-sts.example.test": {A: []string{"127.0.0.1"}},
		"mta-sts.example.org":  {A: []string{"127.0.0.1"}},
	})
	for _, dom := range []string{"example.test", "example.org"} {
		got, err := mtasts.Fetch(context.Background(), dom, mtasts.FetchOptions{Resolver: res, RootCAs: roots, Port: port})
		if err != nil {
			t.Fatalf("%s: %v", dom, err)
		}
		if got.Mode != mtasts.ModeEnforce || len(got.MX) != 1 || got.MX[0] != "mx.example.test" || got.MaxAge != 86400*time.Second {
			t.Fatalf("%s: fetched %+v", dom, got)
		}
	}
}

func TestOnlyThePolicyIsServed(t *testing.T) {
	pol := Policy{Mode: "testing", MX: []string{"mx.example.test"}, MaxAge: 604800 * time.Second}
	port, roots := startHost(t, pol)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	client := &http.Client{
		Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "mta-sts.example.test"},
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, network, addr)
			},
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	for _, tc := range []struct {
		method, url string
		status      int
	}{
		{"GET", "https://mta-sts.example.test/.well-known/mta-sts.txt", 200},
		{"HEAD", "https://mta-sts.example.test/.well-known/mta-sts.txt", 200},
		{"GET", "https://mta-sts.example.test:443/.well-known/mta-sts.txt", 200},
		{"GET", "https://mta-sts.example.test/", 404},
		{"GET", "https://mta-sts.example.test/.well-known/mta-sts.txt/", 404},
		{"GET", "https://mta-sts.example.test/.well-known/mta-sts.txt?x=1", 404},
		{"GET", "https://mta-sts.example.test/.well-known/MTA-STS.txt", 404},
		{"GET", "https://mta-sts.example.net/.well-known/mta-sts.txt", 404},
		{"GET", "https://example.test/.well-known/mta-sts.txt", 404},
		{"POST", "https://mta-sts.example.test/.well-known/mta-sts.txt", 405},
	} {
		req, _ := http.NewRequest(tc.method, tc.url, nil)
		res, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", tc.method, tc.url, err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != tc.status {
			t.Errorf("%s %s: status %d, want %d", tc.method, tc.url, res.StatusCode, tc.status)
		}
		if tc.status == 200 {
			if ct := res.Header.Get("Content-Type"); ct != "text/plain" {
				t.Errorf("%s %s: Content-Type %q", tc.method, tc.url, ct)
			}
			if tc.method == "GET" && string(body) != pol.Text() {
				t.Errorf("%s %s: body %q, want %q", tc.method, tc.url, body, pol.Text())
			}
		}
		if loc := res.Header.Get("Location"); loc != "" || (res.StatusCode >= 300 && res.StatusCode < 400) {
			t.Errorf("%s %s: a redirect", tc.method, tc.url)
		}
		if tc.status != 200 && strings.Contains(string(body), "STSv1") {
			t.Errorf("%s %s: policy served", tc.method, tc.url)
		}
	}
}
