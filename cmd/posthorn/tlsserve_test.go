package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/posthorn/posthorn/internal/acme"
	"github.com/posthorn/posthorn/internal/acme/acmetest"
	"github.com/posthorn/posthorn/internal/certs"
	"github.com/posthorn/posthorn/internal/config"
	"github.com/posthorn/posthorn/internal/dns/dnstest"
	"github.com/posthorn/posthorn/internal/mtastshost"
	"github.com/posthorn/posthorn/internal/testutil"
)

func parseTestConfig(t *testing.T, src string) *config.Config {
	t.Helper()
	cfg, err := config.Parse("test.toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func records(t *testing.T, cfg *config.Config) string {
	t.Helper()
	var b bytes.Buffer
	if err := writeRecords(&b, cfg, &cfg.Domains[0]); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

var tlsaLine = regexp.MustCompile(`(?m)^_25\._tcp\.mx\.example\.test\. +3600 IN TLSA +3 1 1 ([0-9a-f]{64})$`)

// opensslTLSA computes the 3 1 1 data of a PEM certificate with openssl,
// independently of our code; "" when openssl is not installed.
func opensslTLSA(t *testing.T, certFile string) string {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		return ""
	}
	pub, err := exec.Command("openssl", "x509", "-in", certFile, "-noout", "-pubkey").Output()
	if err != nil {
		t.Fatalf("openssl x509: %v", err)
	}
	cmd := exec.Command("openssl", "pkey", "-pubin", "-outform", "DER")
	cmd.Stdin = bytes.NewReader(pub)
	der, err := cmd.Output()
	if err != nil {
		t.Fatalf("openssl pkey: %v", err)
	}
	cmd = exec.Command("openssl", "dgst", "-sha256", "-r")
	cmd.Stdin = bytes.NewReader(der)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("openssl dgst: %v", err)
	}
	return strings.Fields(string(out))[0]
}

func TestDNSRecordsPrintTheTLSARecordOfTheServedCertificate(t *testing.T) {
	dir := t.TempDir()
	base := fmt.Sprintf("hostname = \"mx.example.test\"\ndata_dir = %q\n[[domain]]\nname = \"example.test\"\n", filepath.Join(dir, "data"))

	// Self-signed: nothing until serve has made the certificate.
	cfg := parseTestConfig(t, base)
	if out := records(t, cfg); tlsaLine.MatchString(out) || !strings.Contains(out, "no certificate yet") {
		t.Fatalf("before the self-signed certificate exists:\n%s", out)
	}
	svc, err := newTLSService(cfg, testutil.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	svc.Close()
	out := records(t, cfg)
	m := tlsaLine.FindStringSubmatch(out)
	certFile, _, _ := cfg.TLSFiles()
	if m == nil || !strings.Contains(out, "DNSSEC") {
		t.Fatalf("no TLSA record (or no word on DNSSEC):\n%s", out)
	}
	if want := opensslTLSA(t, certFile); want != "" && m[1] != want {
		t.Fatalf("TLSA data %s, openssl says %s", m[1], want)
	}
	served, _ := svc.src.GetCertificate(&tls.ClientHelloInfo{})
	if m[1] != certs.TLSA311(served.Leaf) {
		t.Fatal("the TLSA record is not the served certificate's")
	}

	// Files configured by hand.
	c, k, _ := certs.SelfSigned("mx.example.test")
	cf, kf := filepath.Join(dir, "fullchain.pem"), filepath.Join(dir, "privkey.pem")
	os.WriteFile(cf, c, 0o644)
	os.WriteFile(kf, k, 0o600)
	cfg = parseTestConfig(t, base+fmt.Sprintf("[tls]\ncert = %q\nkey = %q\n", cf, kf))
	m = tlsaLine.FindStringSubmatch(records(t, cfg))
	if m == nil {
		t.Fatal("no TLSA record for configured files")
	}
	if want := opensslTLSA(t, cf); want != "" && m[1] != want {
		t.Fatalf("TLSA data %s, openssl says %s", m[1], want)
	}

	// ACME: the kept key, the same for every renewal.
	cfg = parseTestConfig(t, base+"[tls.acme]\nlisten = [\"127.0.0.1:0\"]\n")
	if out := records(t, cfg); tlsaLine.MatchString(out) || !strings.Contains(out, "no ACME key yet") {
		t.Fatalf("ACME before the first start:\n%s", out)
	}
	mgr, err := acme.New(acme.Options{Names: cfg.ACMENames(), Dir: acmeDir(cfg)})
	if err != nil {
		t.Fatal(err)
	}
	out = records(t, cfg)
	m = tlsaLine.FindStringSubmatch(out)
	want, _ := certs.TLSA311Key(mgr.PublicKey())
	if m == nil || m[1] != want || !strings.Contains(out, "kept across renewals") {
		t.Fatalf("ACME TLSA: want %s:\n%s", want, out)
	}
}

func TestDNSRecordsPolicyFollowsMTASTSConfig(t *testing.T) {
	base := fmt.Sprintf("hostname = \"mx.example.test\"\ndata_dir = %q\n[[domain]]\nname = \"example.test\"\n", t.TempDir())
	testing := records(t, parseTestConfig(t, base))
	enforce := records(t, parseTestConfig(t, base+"[mta_sts]\nmode = \"enforce\"\nmax_age = \"30d\"\nlisten = [\"127.0.0.1:0\"]\n"))
	id := regexp.MustCompile(`_mta-sts\.example\.test\. .*id=([0-9a-f]+)`)
	if id.FindStringSubmatch(testing)[1] == id.FindStringSubmatch(enforce)[1] {
		t.Fatal("the _mta-sts id did not change with the policy")
	}
	for _, want := range []string{";   mode: enforce", ";   max_age: 2592000", ";   mx: mx.example.test", "posthorn serves it on 127.0.0.1:0"} {
		if !strings.Contains(enforce, want) {
			t.Errorf("missing %q:\n%s", want, enforce)
		}
	}
	if !strings.Contains(testing, ";   mode: testing") || !strings.Contains(testing, ";   max_age: 604800") {
		t.Errorf("default policy:\n%s", testing)
	}
}

// freePort finds a loopback port nobody listens on now (Pebble must be
// told where to validate before posthorn listens there).
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// logWatch is a slog handler that tells a channel about every record
// whose message matches.
type logWatch struct {
	slog.Handler
	msg string
	ch  chan<- struct{}
}

func (w logWatch) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == w.msg {
		select {
		case w.ch <- struct{}{}:
		default:
		}
	}
	return w.Handler.Handle(ctx, r)
}

func (w logWatch) WithAttrs(a []slog.Attr) slog.Handler {
	return logWatch{w.Handler.WithAttrs(a), w.msg, w.ch}
}

func acmeTestConfig(dir string, port int, p *acmetest.Pebble, dnsAddr string) string {
	return fmt.Sprintf(`hostname = "mx.example.test"
data_dir = %q
log_level = "debug"

[listen]
smtp        = ["127.0.0.1:0"]
submission  = []
submissions = []

[[domain]]
name = "example.test"

[dns]
servers = [%q]

[tls.acme]
directory    = %q
directory_ca = %q
listen       = ["127.0.0.1:%d"]

[mta_sts]
listen = ["127.0.0.1:%d"]
mode   = "enforce"
`, filepath.Join(dir, "data"), dnsAddr, p.DirectoryURL, p.APICertFile, port, port)
}

func policyClient(addr string, roots *x509.CertPool) *http.Client {
	return &http.Client{Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}}
}

func fetchPolicy(t *testing.T, addr string, roots *x509.CertPool) string {
	t.Helper()
	res, err := policyClient(addr, roots).Get("https://mta-sts.example.test" + mtastshost.WellKnownPath)
	if err != nil {
		t.Fatalf("policy fetch: %v", err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 {
		t.Fatalf("policy fetch: %s", res.Status)
	}
	return string(b)
}

// The wiring of newTLSService, in process: ACME through Pebble with
// tls-alpn-01 answered on the MTA-STS listener (one port for both), the
// certificate served to SMTP's TLS configuration and on the policy host.
func TestTLSServiceObtainsFromPebbleAndServesPolicy(t *testing.T) {
	dnsSrv := dnstest.NewServer(t, dnstest.Zone{
		"mx.example.test":      {A: []string{"127.0.0.1"}},
		"mta-sts.example.test": {A: []string{"127.0.0.1"}},
	})
	port := freePort(t)
	p := acmetest.Start(t, acmetest.Options{TLSPort: port, HTTPPort: 1, Resolver: dnsSrv.Addr()})
	dir := t.TempDir()
	cfg := parseTestConfig(t, acmeTestConfig(dir, port, p, dnsSrv.Addr()))

	issued := make(chan struct{}, 1)
	log := slog.New(logWatch{testutil.Logger(t).Handler(), "ACME certificate in service", issued})
	svc, err := newTLSService(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	if got := svc.Listeners(); len(got) != 1 || got[0] != fmt.Sprintf("mta-sts 127.0.0.1:%d", port) {
		t.Fatalf("Listeners = %q: want the one shared MTA-STS/tls-alpn-01 listener", got)
	}
	svc.Start()
	select {
	case <-issued:
	case <-time.After(2 * time.Minute):
		t.Fatal("no certificate from Pebble")
	}

	// SMTP's TLS configuration serves the ACME certificate.
	cc, sc := net.Pipe()
	defer cc.Close()
	go func() {
		s := tls.Server(sc, svc.ServerConfig())
		s.Handshake()
		s.Close()
	}()
	client := tls.Client(cc, &tls.Config{ServerName: "mx.example.test", RootCAs: p.Roots})
	if err := client.Handshake(); err != nil {
		t.Fatalf("SMTP TLS configuration: %v", err)
	}
	if pol := fetchPolicy(t, fmt.Sprintf("127.0.0.1:%d", port), p.Roots); !strings.Contains(pol, "mode: enforce\r\nmx: mx.example.test\r\n") {
		t.Fatalf("policy: %q", pol)
	}
}

// posthorn serve end to end: the daemon obtains a certificate from Pebble
// (tls-alpn-01 on its MTA-STS listener), serves it on STARTTLS, and
// renews it without a restart (Pebble issues 9-second certificates, so
// renewal comes due six seconds in).
func TestServeObtainsAndRenewsFromPebbleAndServesItOnSTARTTLS(t *testing.T) {
	dnsSrv := dnstest.NewServer(t, dnstest.Zone{
		"mx.example.test":      {A: []string{"127.0.0.1"}},
		"mta-sts.example.test": {A: []string{"127.0.0.1"}},
	})
	port := freePort(t)
	p := acmetest.Start(t, acmetest.Options{TLSPort: port, HTTPPort: 1, Resolver: dnsSrv.Addr(), Validity: 9 * time.Second})
	dir := t.TempDir()
	d := startWithConfig(t, dir, acmeTestConfig(dir, port, p, dnsSrv.Addr()), dnsSrv)
	if !strings.Contains(d.logText(), "TLS certificate source") {
		t.Skip("serve does not use newTLSService yet (cmd/posthorn/serve.go)")
	}

	starttls := func() *x509.Certificate {
		t.Helper()
		c := testutil.Dial(t, d.addrs["smtp"])
		c.ExpectCmd("EHLO client.example.org", 250, "")
		c.StartTLS(&tls.Config{ServerName: "mx.example.test", RootCAs: p.Roots})
		c.ExpectCmd("EHLO client.example.org", 250, "")
		c.ExpectCmd("QUIT", 221, "")
		return c.Conn.(*tls.Conn).ConnectionState().PeerCertificates[0]
	}
	d.waitLog(`msg="ACME certificate in service"`, 1)
	first := starttls()
	d.waitLog(`msg="ACME certificate in service"`, 3) // renewed twice: the second surely after first was served
	second := starttls()
	if second.Equal(first) {
		t.Fatal("STARTTLS serves the first certificate after renewal")
	}
	if certs.TLSA311(second) != certs.TLSA311(first) {
		t.Fatal("renewal changed the key")
	}
	if pol := fetchPolicy(t, fmt.Sprintf("127.0.0.1:%d", port), p.Roots); !strings.Contains(pol, "mode: enforce") {
		t.Fatalf("policy: %q", pol)
	}
	// The record posthorn dns records prints matches what STARTTLS serves.
	out, err := cli(t, "", "dns", "records", "-c", d.config, "example.test")
	if err != nil {
		t.Fatalf("dns records: %v\n%s", err, out)
	}
	if m := tlsaLine.FindStringSubmatch(out); m == nil || m[1] != certs.TLSA311(second) {
		t.Fatalf("dns records TLSA does not match the served key:\n%s", out)
	}
	if err := d.stop(); err != nil {
		t.Fatalf("posthorn did not stop cleanly: %v", err)
	}
}
