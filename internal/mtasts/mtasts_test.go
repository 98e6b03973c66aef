package mtasts

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/posthorn/posthorn/internal/dns/dnstest"

	"gopkg.in/yaml.v3"
)

// conformance is ../shared/conformance/mta-sts/mta-sts-cases.yml.
type conformance struct {
	TXTRecords []struct {
		Src        string   `yaml:"src"`
		Domain     string   `yaml:"domain"`
		TXT        string   `yaml:"txt"`
		TXTs       []string `yaml:"txts"`
		TXTStrings []string `yaml:"txt_strings"`
		Expect     string   `yaml:"expect"`
		Why        string   `yaml:"why"`
	} `yaml:"txt_records"`
	Policies []struct {
		Src         string `yaml:"src"`
		Domain      string `yaml:"domain"`
		Status      int    `yaml:"status"`
		ContentType string `yaml:"content_type"`
		Body        string `yaml:"body"`
		BodyDesc    string `yaml:"body_desc"`
		TLS         string `yaml:"tls"`
		Expect      string `yaml:"expect"`
		Why         string `yaml:"why"`
	} `yaml:"policies"`
	MXMatching []struct {
		Pattern string `yaml:"pattern"`
		Host    string `yaml:"host"`
		Match   bool   `yaml:"match"`
	} `yaml:"mx_matching"`
}

func loadConformance(t *testing.T) conformance {
	t.Helper()
	b, err := os.ReadFile("../../../shared/conformance/mta-sts/mta-sts-cases.yml")
	if err != nil {
		t.Skipf("conformance data not available: %v", err)
	}
	var c conformance
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	if len(c.TXTRecords) == 0 || len(c.Policies) == 0 || len(c.MXMatching) == 0 {
		t.Fatal("conformance file parsed to nothing")
	}
	return c
}

func TestRecordConformance(t *testing.T) {
	c := loadConformance(t)
	for i, tc := range c.TXTRecords {
		txts := tc.TXTs
		switch {
		case tc.TXT != "":
			txts = []string{tc.TXT}
		case tc.TXTStrings != nil:
			txts = []string{strings.Join(tc.TXTStrings, "")}
		}
		_, err := SelectRecord(txts)
		if got := map[bool]string{true: "valid", false: "invalid"}[err == nil]; got != tc.Expect {
			t.Errorf("case %d (%s %v): got %s (%v), want %s: %s", i, tc.Src, txts, got, err, tc.Expect, tc.Why)
		}
	}
}

func TestPolicyBodyConformance(t *testing.T) {
	c := loadConformance(t)
	n := 0
	for i, tc := range c.Policies {
		if tc.Body == "" || tc.Status != 200 || tc.ContentType != "" || tc.TLS != "" {
			continue // needs HTTP: TestFetchConformance
		}
		n++
		_, err := Parse([]byte(tc.Body))
		if got := map[bool]string{true: "valid", false: "invalid"}[err == nil]; got != tc.Expect {
			t.Errorf("case %d (%s %q): got %s (%v), want %s: %s", i, tc.Src, tc.Body, got, err, tc.Expect, tc.Why)
		}
	}
	if n < 15 {
		t.Fatalf("only %d body cases ran", n)
	}
}

func TestMXMatchingConformance(t *testing.T) {
	c := loadConformance(t)
	for _, tc := range c.MXMatching {
		if got := MatchMX(tc.Pattern, tc.Host); got != tc.Match {
			t.Errorf("MatchMX(%q, %q) = %v, want %v", tc.Pattern, tc.Host, got, tc.Match)
		}
	}
}

func TestParsePolicyFields(t *testing.T) {
	p, err := Parse([]byte("version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmax_age: 604800\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	if p.Mode != ModeEnforce || p.MaxAge != 604800*time.Second || len(p.MX) != 2 {
		t.Fatalf("got %+v", p)
	}
	if !p.Matches("MAIL.example.com.") || !p.Matches("a.example.net") || p.Matches("example.net") {
		t.Fatal("Matches wrong")
	}
}

// testCA makes a CA and a server certificate for names, signed by it.
func testCA(t *testing.T, names ...string) (*x509.CertPool, tls.Certificate) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mtasts test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return pool, tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// policyServer serves handler over HTTPS on loopback with cert and
// returns the port.
func policyServer(t *testing.T, cert tls.Certificate, h http.HandlerFunc) int {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	p, _ := strconv.Atoi(port)
	return p
}

const goodBody = "version: STSv1\nmode: enforce\nmx: mail.loc\nmax_age: 86400"

func TestFetchConformance(t *testing.T) {
	pool, cert := testCA(t, "mta-sts.good.loc")
	_, wrongName := testCA(t, "mta-sts.other.loc")
	resolver := dnstest.NewResolver(dnstest.Zone{"mta-sts.good.loc": {A: []string{"127.0.0.1"}}})

	type reply struct {
		status int
		ctype  string
		body   string
		header map[string]string
	}
	cases := []struct {
		name    string
		reply   reply
		cert    tls.Certificate
		roots   *x509.CertPool
		wantErr error
	}{
		{"good", reply{200, "text/plain", goodBody, nil}, cert, pool, nil},
		{"charset parameter", reply{200, "text/plain; charset=utf-8", goodBody, nil}, cert, pool, nil},
		{"html media type (snawoot bad-policy3)", reply{200, "text/html", goodBody, nil}, cert, pool, ErrBadPolicy},
		{"404 (snawoot bad-policy4)", reply{404, "text/plain", goodBody, nil}, cert, pool, ErrFetch},
		{"redirect not followed (RFC 8461 3.3)", reply{301, "text/plain", "", map[string]string{"Location": "https://mta-sts.good.loc/elsewhere"}}, cert, pool, ErrFetch},
		{"overlength (snawoot static-overlength)", reply{200, "text/plain", goodBody + "\n" + strings.Repeat("a", 131193), nil}, cert, pool, ErrBadPolicy},
		{"untrusted CA (snawoot bad-cert1)", reply{200, "text/plain", goodBody, nil}, cert, x509.NewCertPool(), ErrFetch},
		{"wrong name (snawoot bad-cert2)", reply{200, "text/plain", goodBody, nil}, wrongName, pool, ErrFetch},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var path string
			port := policyServer(t, tc.cert, func(w http.ResponseWriter, r *http.Request) {
				path = r.URL.Path
				for k, v := range tc.reply.header {
					w.Header().Set(k, v)
				}
				w.Header().Set("Content-Type", tc.reply.ctype)
				w.WriteHeader(tc.reply.status)
				w.Write([]byte(tc.reply.body)) //nolint:errcheck
			})
			p, err := Fetch(context.Background(), "good.loc", FetchOptions{Resolver: resolver, RootCAs: tc.roots, Port: port, Timeout: 10 * time.Second})
			if tc.wantErr == nil {
				if err != nil {
					t.Fatal(err)
				}
				if path != "/.well-known/mta-sts.txt" {
					t.Errorf("fetched %q", path)
				}
				if p.Mode != ModeEnforce || !p.Matches("mail.loc") {
					t.Errorf("policy %+v", p)
				}
				return
			}
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
		})
	}
}

func TestLookupRecord(t *testing.T) {
	r := dnstest.NewResolver(dnstest.Zone{
		"_mta-sts.good.loc": {TXT: []string{"v=spf1 -all", "v=STSv1; id=20180907T090909;"}},
		"_mta-sts.two.loc":  {TXT: []string{"v=STSv1; id=a1;", "v=STSv1; id=b2;"}},
		"_mta-sts.fail.loc": {ServFail: true},
	})
	ctx := context.Background()
	if rec, _, err := LookupRecord(ctx, r, "good.loc."); err != nil || rec.ID != "20180907T090909" {
		t.Errorf("good: %+v %v", rec, err)
	}
	if _, _, err := LookupRecord(ctx, r, "two.loc"); !errors.Is(err, ErrMultipleRecords) {
		t.Errorf("two: %v", err)
	}
	if _, _, err := LookupRecord(ctx, r, "none.loc"); !errors.Is(err, ErrNoRecord) {
		t.Errorf("none: %v", err)
	}
	if _, _, err := LookupRecord(ctx, r, "fail.loc"); err == nil || errors.Is(err, ErrNoRecord) {
		t.Errorf("servfail: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(goodBody))
	f.Add([]byte("version: STSv1\r\nmode: none\r\nmax_age: 1\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Parse(b)
		if err == nil && p.Mode == "" {
			t.Fatal("valid policy without mode")
		}
		ParseRecord(string(b)) //nolint:errcheck
	})
}
