package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/posthorn/posthorn/internal/dns"
	"github.com/posthorn/posthorn/internal/dns/dnstest"
	"github.com/posthorn/posthorn/internal/tlsrpt"
)

// Outbound TLS policies end to end: posthorn A (127.0.0.1) sends to
// posthorn B (127.0.0.2), whose certificate comes from a test CA that A
// is told to trust (delivery.tls_ca); MTA-STS policies are fetched over
// HTTPS from a test server (delivery.mta_sts_port), and DANE's TLSA
// records come from the test DNS server with the AD bit set.

// e2ePKI writes a test CA and a certificate for names into dir and
// returns the files and the leaf.
func e2ePKI(t *testing.T, dir string, names ...string) (caFile, certFile, keyFile string, leaf *x509.Certificate, httpsCert tls.Certificate) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "e2e test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, _ := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	ca, _ := x509.ParseCertificate(caDER)
	issue := func(serial int64, names []string) ([]byte, *ecdsa.PrivateKey) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return der, key
	}
	der, key := issue(2, names)
	leaf, _ = x509.ParseCertificate(der)
	keyDER, _ := x509.MarshalECPrivateKey(key)
	caFile, certFile, keyFile = filepath.Join(dir, "ca.pem"), filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600)
	os.WriteFile(certFile, append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})...), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600)
	hder, hkey := issue(3, []string{"mta-sts.b.example", "mta-sts.d.example"})
	httpsCert = tls.Certificate{Certificate: [][]byte{hder, caDER}, PrivateKey: hkey}
	return caFile, certFile, keyFile, leaf, httpsCert
}

// policyHost serves MTA-STS policies per Host header over HTTPS on
// 127.0.0.1 and returns its port.
func policyHost(t *testing.T, cert tls.Certificate, policies map[string]string) int {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, ok := policies[strings.TrimPrefix(r.Host, "mta-sts.")]
		if !ok || r.URL.Path != "/.well-known/mta-sts.txt" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, body)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	_, p, _ := net.SplitHostPort(srv.Listener.Addr().String())
	port, _ := strconv.Atoi(p)
	return port
}

type tlsE2E struct {
	a, b     *daemon
	dns      *dnstest.Server
	zone     dnstest.Zone
	leaf     *x509.Certificate
	dirB     string
	httpPort int
}

// startTLSE2E starts B (domains b.example and d.example, mailboxes bob
// and tlsrpt) and A; zone is completed with B's MX and the policy
// hosts; aExtra is added to A's configuration.
func startTLSE2E(t *testing.T, policies map[string]string, zone dnstest.Zone, aExtra string) *tlsE2E {
	t.Helper()
	port := sharedPort(t, "127.0.0.2", "127.0.0.3")
	e := &tlsE2E{zone: zone, dirB: t.TempDir()}
	caFile, certFile, keyFile, leaf, httpsCert := e2ePKI(t, e.dirB, "mx.b.example")
	e.leaf = leaf
	e.httpPort = policyHost(t, httpsCert, policies)
	for _, d := range []string{"b.example", "d.example"} {
		if _, ok := zone[d]; !ok {
			zone[d] = dnstest.Records{MX: mxs("mx." + d)}
		}
		if _, ok := zone["mx."+d]; !ok {
			zone["mx."+d] = dnstest.Records{A: []string{"127.0.0.2"}}
		}
		zone["mta-sts."+d] = dnstest.Records{A: []string{"127.0.0.1"}}
	}
	zone["a.example"] = dnstest.Records{TXT: []string{"v=spf1 ip4:127.0.0.1 -all"}}
	e.dns = dnstest.NewServer(t, zone)
	restB := fmt.Sprintf("[tls]\ncert = %q\nkey = %q\n\n[[domain]]\nname = \"b.example\"\nmailboxes = [\"bob\", \"tlsrpt\"]\n\n[[domain]]\nname = \"d.example\"\nmailboxes = [\"bob\"]\n", certFile, keyFile)
	e.b = startWithConfig(t, e.dirB, instanceConfig(e.dirB, "mx.b.example", "127.0.0.2", port, 25, e.dns.Addr(), restB), e.dns)
	dirA := t.TempDir()
	cfgA := instanceConfig(dirA, "mx.a.example", "127.0.0.1", 0, port, e.dns.Addr(), "[[domain]]\nname = \"a.example\"\nmailboxes = [\"sender\"]\n"+aExtra)
	cfgA = strings.Replace(cfgA, "[delivery]\n", fmt.Sprintf("[delivery]\ntls_ca = %q\nmta_sts_port = %d\n", caFile, e.httpPort), 1)
	cfgA = strings.Replace(cfgA, "[queue]\n", "[relay]\ntrusted_networks = [\"127.0.0.0/8\"]\n\n[queue]\n", 1)
	e.a = startWithConfig(t, dirA, cfgA, e.dns)
	return e
}

const enforceB = "version: STSv1\nmode: enforce\nmx: mx.b.example\nmax_age: 86400\n"

func TestMTASTSEnforceDeliversOverVerifiedTLSEndToEnd(t *testing.T) {
	e := startTLSE2E(t, map[string]string{"b.example": enforceB},
		dnstest.Zone{"_mta-sts.b.example": {TXT: []string{"v=STSv1; id=e2e1;"}}}, "")
	sendFromA(t, e.a, "sts enforce", "bob@b.example")
	e.a.waitLog(`msg="remote delivery" .*rcpt=bob@b.example status=delivered .*tls_mode=mta-sts tls_version="TLS 1.3" tls_cipher=`, 1)
	e.b.waitLog(`msg=delivered .*mailbox=bob@b.example`, 1)
	if _, err := os.Stat(filepath.Join(e.a.dir, "data", "mta-sts", "b.example.json")); err != nil {
		t.Errorf("the policy is not cached in the data dir: %v", err)
	}
}

// stripProxy listens on addr and relays to target, turning STARTTLS in
// the EHLO reply into XXXXXXXX; it keeps what the client sent.
type stripProxy struct {
	mu   sync.Mutex
	sent bytes.Buffer
}

func newStripProxy(t *testing.T, addr, target string) *stripProxy {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	p := &stripProxy{}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				s, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer s.Close()
				go func() {
					buf := make([]byte, 4096)
					for {
						n, err := c.Read(buf)
						p.mu.Lock()
						p.sent.Write(buf[:n])
						p.mu.Unlock()
						s.Write(buf[:n])
						if err != nil {
							s.Close()
							return
						}
					}
				}()
				br := bufio.NewReader(s)
				for {
					line, err := br.ReadString('\n')
					if len(line) > 4 && strings.EqualFold(strings.TrimSpace(line[4:]), "STARTTLS") {
						line = line[:4] + "XXXXXXXX\r\n"
					}
					if _, werr := io.WriteString(c, line); werr != nil || err != nil {
						return
					}
				}
			}()
		}
	}()
	return p
}

func (p *stripProxy) text() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sent.String()
}

// TestDowngradeByManInTheMiddleEndToEnd: the MX hosts of b.example (no
// policy) and d.example (MTA-STS enforce) are reached through a man in
// the middle on 127.0.0.3 that hides STARTTLS. b.example's mail goes in
// clear text, as opportunistic TLS allows, and A logs it; d.example's is
// deferred and never crosses in clear.
func TestDowngradeByManInTheMiddleEndToEnd(t *testing.T) {
	zone := dnstest.Zone{
		"mx.b.example":       {A: []string{"127.0.0.3"}},
		"mx.d.example":       {A: []string{"127.0.0.3"}},
		"_mta-sts.d.example": {TXT: []string{"v=STSv1; id=d1;"}},
	}
	e := startTLSE2E(t, map[string]string{"d.example": strings.ReplaceAll(enforceB, "b.example", "d.example")}, zone, "")
	port := strings.TrimPrefix(e.b.addrs["smtp"], "127.0.0.2:")
	mitm := newStripProxy(t, "127.0.0.3:"+port, e.b.addrs["smtp"])

	sendFromA(t, e.a, "plain", "bob@b.example")
	e.a.waitLog(`msg="session TLS: sending in clear text" .*server=mx.b.example.*tls_mode=none`, 1)
	e.a.waitLog(`msg="remote delivery" .*rcpt=bob@b.example status=delivered .*tls=false tls_mode=none`, 1)
	e.b.waitLog(`msg=delivered .*mailbox=bob@b.example`, 1)

	before := len(mitm.text())
	sendFromA(t, e.a, "secret enforce", "bob@d.example")
	e.a.waitLog(`rcpt=bob@d.example status=deferred detail="4.7.4 TLS is required \(mta-sts policy\)`, 2)
	after := mitm.text()[before:]
	if !strings.Contains(after, "EHLO") {
		t.Fatalf("A never reached the man in the middle for d.example: %q", after)
	}
	for _, s := range []string{"MAIL FROM", "RCPT TO", "secret enforce"} {
		if strings.Contains(after, s) {
			t.Fatalf("%q crossed the man in the middle in clear text:\n%s", s, after)
		}
	}
	if strings.Contains(e.b.logText(), "bob@d.example") {
		t.Fatal("B got the message for d.example")
	}
}

// TestDANEAndTLSRPTReportEndToEnd: b.example is DNSSEC-signed (AD set)
// with a DANE-EE TLSA record for B's key and asks for TLS reports at
// tlsrpt@b.example. A delivers over DANE; at the end of the (shortened)
// report period A queues an RFC 8460 report, and it arrives in B's
// Maildir through A's own queue.
func TestDANEAndTLSRPTReportEndToEnd(t *testing.T) {
	zone := dnstest.Zone{
		"b.example":             {MX: mxs("mx.b.example"), Authentic: true},
		"mx.b.example":          {A: []string{"127.0.0.2"}, Authentic: true},
		"_smtp._tls.b.example":  {TXT: []string{"v=TLSRPTv1; rua=mailto:tlsrpt@b.example"}},
		"d.example":             {MX: mxs("mx.d.example"), Authentic: true},
		"mx.d.example":          {A: []string{"127.0.0.2"}, Authentic: true},
		"_25._tcp.mx.d.example": {TLSA: []dns.TLSA{{Usage: 3, Selector: 1, MatchingType: 1, CertData: make([]byte, 32)}}, Authentic: true},
	}
	e := startTLSE2E(t, nil, zone, "\n[tls_rpt]\nenabled = true\nperiod = \"3s\"\n")
	spki := sha256.Sum256(e.leaf.RawSubjectPublicKeyInfo)
	zone["_25._tcp.mx.b.example"] = dnstest.Records{TLSA: []dns.TLSA{{Usage: 3, Selector: 1, MatchingType: 1, CertData: spki[:]}}, Authentic: true}
	e.dns.SetZone(zone)

	sendFromA(t, e.a, "over dane", "bob@b.example")
	e.a.waitLog(`msg="remote delivery" .*rcpt=bob@b.example status=delivered .*tls_mode=dane tls_version=`, 1)
	// d.example's TLSA record matches nothing: deferred, never sent.
	sendFromA(t, e.a, "dane mismatch", "bob@d.example")
	e.a.waitLog(`rcpt=bob@d.example status=deferred detail="4.7.5 `, 1)

	e.a.waitLog(`msg="TLS-RPT report queued" .*domain=b.example to=tlsrpt@b.example`, 1)
	e.b.waitLog(`msg=delivered .*mailbox=tlsrpt@b.example`, 1)
	var js []byte
	for _, raw := range maildirFiles(t, filepath.Join(e.dirB, "data", "mail", "b.example", "tlsrpt")) {
		js = reportJSON(t, raw)
		break
	}
	sum, err := tlsrpt.Validate(js)
	if err != nil {
		t.Fatalf("the report does not follow RFC 8460 4.4: %v\n%s", err, js)
	}
	if sum.Successful < 1 || !strings.Contains(string(js), `"policy-type":"tlsa"`) || !strings.Contains(string(js), `"policy-domain":"b.example"`) {
		t.Fatalf("report %s", js)
	}
}

func reportJSON(t *testing.T, raw string) []byte {
	t.Helper()
	m, err := mail.ReadMessage(strings.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if m.Header.Get("TLS-Report-Domain") != "b.example" || m.Header.Get("TLS-Report-Submitter") != "mx.a.example" {
		t.Errorf("report header: %v", m.Header)
	}
	mt, params, _ := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if mt != "multipart/report" || params["report-type"] != "tlsrpt" {
		t.Fatalf("Content-Type %q", m.Header.Get("Content-Type"))
	}
	mr := multipart.NewReader(m.Body, params["boundary"])
	for {
		p, err := mr.NextPart()
		if err != nil {
			t.Fatal("no application/tlsrpt+gzip part")
		}
		if p.Header.Get("Content-Type") != "application/tlsrpt+gzip" {
			continue
		}
		zr, err := gzip.NewReader(base64.NewDecoder(base64.StdEncoding, p))
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(zr)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
}
