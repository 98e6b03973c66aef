package tlspolicy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/posthorn/posthorn/internal/dns/dnstest"
	"github.com/posthorn/posthorn/internal/mtasts"
	"github.com/posthorn/posthorn/internal/outbound"
	"github.com/posthorn/posthorn/internal/queue"
	"github.com/posthorn/posthorn/internal/spool"
	"github.com/posthorn/posthorn/internal/tlsrpt"
)

// testPKI is a test CA.
type testPKI struct {
	pool *x509.CertPool
	ca   *x509.Certificate
	key  *ecdsa.PrivateKey
}

var serial int64 = 1

func newPKI(t *testing.T) *testPKI {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "posthorn test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	serial++
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &testPKI{pool: pool, ca: ca, key: key}
}

// leaf issues a certificate for names; the chain sent includes the CA.
func (p *testPKI) leaf(t *testing.T, names ...string) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	serial++
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der, p.ca.Raw}, PrivateKey: key, Leaf: leaf}
}

// selfSigned is a certificate no one vouches for.
func selfSigned(t *testing.T, name string) tls.Certificate {
	return newPKI(t).leaf(t, name)
}

// got is a message a test server took.
type got struct {
	tls      bool
	mailLine string
}

// mxServer is a scripted SMTP server with STARTTLS.
type mxServer struct {
	ln         net.Listener
	cert       *tls.Certificate // nil: no STARTTLS
	requireTLS bool             // offer REQUIRETLS after TLS
	mu         sync.Mutex
	msgs       []got
}

func newMX(t *testing.T, cert *tls.Certificate) *mxServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &mxServer{ln: ln, cert: cert}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go s.serve(c)
		}
	}()
	return s
}

func (s *mxServer) port() int { return s.ln.Addr().(*net.TCPAddr).Port }

func (s *mxServer) received() []got {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]got(nil), s.msgs...)
}

func (s *mxServer) serve(c net.Conn) {
	defer func() { c.Close() }()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	r, w := bufio.NewReader(c), bufio.NewWriter(c)
	say := func(l string) { w.WriteString(l + "\r\n"); w.Flush() }
	say("220 mx.test ESMTP")
	inTLS := false
	mail := ""
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		verb := strings.ToUpper(strings.SplitN(line, " ", 2)[0])
		switch verb {
		case "EHLO":
			lines := []string{"250-mx.test", "250-PIPELINING", "250-8BITMIME"}
			if s.cert != nil && !inTLS {
				lines = append(lines, "250-STARTTLS")
			}
			if s.requireTLS && inTLS {
				lines = append(lines, "250-REQUIRETLS")
			}
			say(strings.Join(lines, "\r\n") + "\r\n250 ENHANCEDSTATUSCODES")
		case "STARTTLS":
			if s.cert == nil || inTLS {
				say("502 5.5.1 no")
				continue
			}
			say("220 2.0.0 go ahead")
			tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{*s.cert}})
			if err := tc.Handshake(); err != nil {
				return
			}
			c, inTLS = tc, true
			r, w = bufio.NewReader(c), bufio.NewWriter(c)
		case "MAIL":
			mail = line
			say("250 2.1.0 ok")
		case "RCPT":
			say("250 2.1.5 ok")
		case "DATA":
			say("354 go on")
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
			}
			s.mu.Lock()
			s.msgs = append(s.msgs, got{tls: inTLS, mailLine: mail})
			s.mu.Unlock()
			say("250 2.0.0 queued")
		case "RSET", "NOOP":
			say("250 2.0.0 ok")
		case "QUIT":
			say("221 2.0.0 bye")
			return
		default:
			say("502 5.5.1 no")
		}
	}
}

// stripper is a man in the middle on loopback that turns STARTTLS in
// the server's EHLO reply into XXXXXXXX, as some middleboxes do, and
// keeps what the client sent.
type stripper struct {
	ln     net.Listener
	mu     sync.Mutex
	client bytes.Buffer
}

func newStripper(t *testing.T, target string) *stripper {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := &stripper{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go m.relay(c, target)
		}
	}()
	return m
}

func (m *stripper) port() int { return m.ln.Addr().(*net.TCPAddr).Port }

func (m *stripper) sent() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.client.String()
}

func (m *stripper) relay(c net.Conn, target string) {
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
			if n > 0 {
				m.mu.Lock()
				m.client.Write(buf[:n])
				m.mu.Unlock()
				s.Write(buf[:n])
			}
			if err != nil {
				s.Close()
				return
			}
		}
	}()
	br := bufio.NewReader(s)
	for {
		line, err := br.ReadString('\n')
		if line != "" {
			if strings.EqualFold(strings.TrimRight(line[4:], "\r\n"), "STARTTLS") && len(line) > 4 {
				line = line[:4] + "XXXXXXXX\r\n"
			}
			if _, werr := io.WriteString(c, line); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// world is one destination domain's DNS, policy host and our side.
type world struct {
	t     *testing.T
	pki   *testPKI
	zone  dnstest.Zone
	res   *dnstest.Resolver
	store *tlsrpt.Store
	rpt   string // the store's directory
	logs  *syncBuffer
	cache *mtasts.Cache
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newWorld(t *testing.T) *world {
	w := &world{t: t, pki: newPKI(t), zone: dnstest.Zone{}, logs: &syncBuffer{}}
	w.res = dnstest.NewResolver(w.zone)
	var err error
	w.rpt = t.TempDir()
	w.store, err = tlsrpt.NewStore(tlsrpt.StoreOptions{Dir: w.rpt})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// mx makes domain's one MX host mxHost at 127.0.0.1; secure marks the
// MX and address answers DNSSEC-authenticated.
func (w *world) mx(domain, mxHost string, secure bool) {
	w.zone[domain] = dnstest.Records{MX: []*net.MX{{Host: mxHost, Pref: 10}}, Authentic: secure}
	w.zone[mxHost] = dnstest.Records{A: []string{"127.0.0.1"}, Authentic: secure}
	w.res.SetZone(w.zone)
}

// stsPolicy publishes an MTA-STS policy for domain, served over HTTPS
// under the test CA.
func (w *world) stsPolicy(domain, id, body string) {
	t := w.t
	cert := w.pki.leaf(t, "mta-sts."+domain)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		rw.Header().Set("Content-Type", "text/plain")
		io.WriteString(rw, body)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	_, ps, _ := net.SplitHostPort(srv.Listener.Addr().String())
	port, _ := strconv.Atoi(ps)
	w.zone["_mta-sts."+domain] = dnstest.Records{TXT: []string{"v=STSv1; id=" + id + ";"}}
	w.zone["mta-sts."+domain] = dnstest.Records{A: []string{"127.0.0.1"}}
	w.res.SetZone(w.zone)
	c, err := mtasts.NewCache(mtasts.CacheOptions{Dir: t.TempDir(), Resolver: w.res,
		Fetch: mtasts.FetchOptions{Resolver: w.res, RootCAs: w.pki.pool, Port: port, Timeout: 10 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	w.cache = c
}

// deliver sends one message to rcpt through a Deliverer whose MX port
// is port, and returns the outcome.
func (w *world) deliver(port int, rcpt string, requireTLS bool, overrides map[string]string) queue.Outcome {
	w.t.Helper()
	pols := New(Options{Resolver: w.res, MTASTS: w.cache, Roots: w.pki.pool, Reports: w.store, Overrides: overrides})
	log := slog.New(slog.NewTextHandler(w.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	d := outbound.New(outbound.Options{
		Hostname: "mx.sender.example", Resolver: w.res, Port: port,
		TLSConfig: &tls.Config{RootCAs: w.pki.pool},
		TLSPolicy: pols.Policy, OnTLS: pols.Outcome, Logger: log,
		Timeouts: outbound.Timeouts{Connect: 10 * time.Second},
	})
	defer d.Close()
	env := &spool.Envelope{ID: "T1", From: "a@sender.example", Recipients: []spool.Recipient{{Addr: rcpt}}, RequireTLS: requireTLS, Size: 40}
	body := func() (io.ReadCloser, error) {
		return io.NopCloser(strings.NewReader("Subject: hi\r\n\r\nsecret body\r\n")), nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return d.Deliver(ctx, env, body, []int{0})[0]
}

// results returns the TLS-RPT results recorded so far.
func (w *world) results() []tlsrpt.Result {
	w.t.Helper()
	w.store.Close()
	var out []tlsrpt.Result
	now := time.Now()
	s, _ := tlsrpt.NewStore(tlsrpt.StoreOptions{Dir: w.rpt, Now: func() time.Time { return now.Add(48 * time.Hour) }})
	for _, p := range s.Due() {
		reps, doms, err := s.Reports(p, tlsrpt.ReportOptions{OrganizationName: "t", ContactInfo: "c"})
		if err != nil {
			w.t.Fatal(err)
		}
		for _, d := range doms {
			for _, pr := range reps[d].Policies {
				for range pr.Summary.Successful {
					out = append(out, tlsrpt.Result{PolicyDomain: d, PolicyType: pr.Policy.Type})
				}
				for _, fd := range pr.FailureDetails {
					for range fd.FailedSessionCount {
						out = append(out, tlsrpt.Result{PolicyDomain: d, PolicyType: pr.Policy.Type, ResultType: fd.ResultType, ReceivingMX: fd.ReceivingMXHostname})
					}
				}
			}
		}
	}
	return out
}

func x509Parse(der []byte) (*x509.Certificate, error) { return x509.ParseCertificate(der) }
