package probe

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// testPKI is a CA and the certificates it signs, made per test.
type testPKI struct {
	ca    *x509.Certificate
	caKey *ecdsa.PrivateKey
	Pool  *x509.CertPool
}

func newPKI(t *testing.T) *testPKI {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "probe test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &testPKI{ca: ca, caKey: key, Pool: pool}
}

// leaf issues a certificate for names valid from notBefore to notAfter;
// selfSigned makes it sign itself instead.
func (p *testPKI) leaf(t *testing.T, selfSigned bool, notAfter time.Time, names ...string) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: notAfter,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
	}
	parent, signer := p.ca, p.caKey
	if selfSigned {
		parent, signer = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// fakeSMTP is a small scripted SMTP server on loopback that behaves as
// configured: weak or sound. Every reply goes out in one write.
type fakeSMTP struct {
	Banner   string   // after "220 "
	Ext      []string // EHLO keywords before TLS (STARTTLS added when TLS is set)
	ExtTLS   []string // EHLO keywords after TLS
	TLS      *tls.Config
	Implicit bool                    // TLS from the first byte
	NoEHLO   bool                    // answer EHLO with 502
	Vrfy     func(arg string) string // nil: "252 2.0.0 Cannot VRFY user"
	Expn     string                  // nil: 502
	Mail     func(arg string) string // nil: 250
	Rcpt     func(arg string) string // nil: 554 relay denied
	Unknown  string                  // reply to unknown commands
	Silent   bool                    // never greet

	ln    net.Listener
	mu    sync.Mutex
	cmds  []string
	datas int
}

func (f *fakeSMTP) start(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.ln = ln
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range 200 { // bounded: a test opens a few dozen connections at most
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() { defer wg.Done(); f.serve(c) }()
		}
	}()
	return ln.Addr().String()
}

func (f *fakeSMTP) commands() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.cmds...)
}

func (f *fakeSMTP) serve(nc net.Conn) {
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(20 * time.Second)) //nolint:errcheck
	if f.Implicit {
		tc := tls.Server(nc, f.TLS)
		if tc.Handshake() != nil {
			return
		}
		nc = tc
	}
	br := bufio.NewReader(nc)
	reply := func(s string) bool {
		_, err := nc.Write([]byte(strings.ReplaceAll(s, "\n", "\r\n") + "\r\n"))
		return err == nil
	}
	if f.Silent {
		br.ReadString('\n') //nolint:errcheck // wait for the client to give up
		return
	}
	reply("220 " + f.Banner)
	secure := f.Implicit
	for range 500 {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		f.mu.Lock()
		f.cmds = append(f.cmds, line)
		f.mu.Unlock()
		verb, arg, _ := strings.Cut(line, " ")
		switch strings.ToUpper(verb) {
		case "EHLO":
			if f.NoEHLO {
				reply("502 5.5.2 Error: command not recognized")
				continue
			}
			ext := f.Ext
			if secure {
				ext = f.ExtTLS
			} else if f.TLS != nil && !f.Implicit {
				ext = append(append([]string{}, ext...), "STARTTLS")
			}
			lines := []string{"250-" + strings.Fields(f.Banner)[0]}
			for i, e := range ext {
				sep := "-"
				if i == len(ext)-1 {
					sep = " "
				}
				lines = append(lines, "250"+sep+e)
			}
			if len(ext) == 0 {
				lines[0] = "250 " + strings.Fields(f.Banner)[0]
			}
			reply(strings.Join(lines, "\n"))
		case "HELO":
			reply("250 " + strings.Fields(f.Banner)[0])
		case "STARTTLS":
			if f.TLS == nil || secure {
				reply("502 5.5.1 no")
				continue
			}
			reply("220 2.0.0 Ready to start TLS")
			tc := tls.Server(nc, f.TLS)
			if tc.Handshake() != nil {
				return
			}
			nc, br, secure = tc, bufio.NewReader(tc), true
		case "MAIL":
			if f.Mail != nil {
				reply(f.Mail(arg))
			} else {
				reply("250 2.1.0 Ok")
			}
		case "RCPT":
			if f.Rcpt != nil {
				reply(f.Rcpt(arg))
			} else {
				reply("554 5.7.1 Relay access denied")
			}
		case "RSET", "NOOP":
			reply("250 2.0.0 Ok")
		case "VRFY":
			if f.Vrfy != nil {
				reply(f.Vrfy(arg))
			} else {
				reply("252 2.0.0 Cannot VRFY user, but will accept message")
			}
		case "EXPN":
			if f.Expn != "" {
				reply(f.Expn)
			} else {
				reply("502 5.5.1 EXPN not available")
			}
		case "DATA":
			f.mu.Lock()
			f.datas++
			f.mu.Unlock()
			reply("554 5.5.1 no data here")
		case "QUIT":
			reply("221 2.0.0 Bye")
			return
		default:
			if f.Unknown != "" {
				reply(f.Unknown)
			} else {
				reply("500 5.5.1 Unknown command")
			}
		}
	}
}

// dialTo sends every dial to addr, whatever the probe asked for.
func dialTo(addr string) func(ctx context.Context, network, _ string) (net.Conn, error) {
	return func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
}

func findingIDs(fs []Finding) map[string]Severity {
	m := map[string]Severity{}
	for _, f := range fs {
		m[f.ID] = f.Severity
	}
	return m
}

func testOptions(pki *testPKI) Options {
	o := DefaultOptions()
	o.StepTimeout = 10 * time.Second
	o.ConnectTimeout = 5 * time.Second
	o.Total = 60 * time.Second
	if pki != nil {
		o.RootCAs = pki.Pool
	}
	return o
}
