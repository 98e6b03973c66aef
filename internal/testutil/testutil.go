// Package testutil holds helpers shared by posthorn's tests: scripted SMTP dialogs and test certificates.
package testutil

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/posthorn/posthorn/internal/certs"
	"github.com/posthorn/posthorn/internal/smtp"
)

// Conn is a scripted SMTP client for tests: send lines, expect replies.
type Conn struct {
	t    testing.TB
	Conn net.Conn
	BR   *bufio.Reader
}

// Dial connects to addr and expects the 220 greeting.
func Dial(t testing.TB, addr string) *Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(30 * time.Second))
	sc := &Conn{t: t, Conn: c, BR: bufio.NewReader(c)}
	sc.Expect(220)
	return sc
}

// DialTLS connects with TLS from the first byte (port 465).
func DialTLS(t testing.TB, addr string, cfg *tls.Config) *Conn {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		t.Fatalf("dial tls %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(30 * time.Second))
	sc := &Conn{t: t, Conn: c, BR: bufio.NewReader(c)}
	sc.Expect(220)
	return sc
}

// Send writes raw bytes as they are.
func (c *Conn) Send(raw string) {
	c.t.Helper()
	if _, err := io.WriteString(c.Conn, raw); err != nil {
		c.t.Fatalf("send %q: %v", raw, err)
	}
}

// Cmd sends one command line (CRLF added) and returns the reply.
func (c *Conn) Cmd(line string) smtp.Reply {
	c.t.Helper()
	c.Send(line + "\r\n")
	return c.Read()
}

// Read reads one reply.
func (c *Conn) Read() smtp.Reply {
	c.t.Helper()
	r, err := smtp.ReadReply(c.BR)
	if err != nil {
		c.t.Fatalf("reading reply: %v", err)
	}
	return r
}

// Expect reads a reply and fails unless its code is code.
func (c *Conn) Expect(code int) smtp.Reply {
	c.t.Helper()
	r := c.Read()
	if r.Code != code {
		c.t.Fatalf("got %q, want %d", r.Error(), code)
	}
	return r
}

// ExpectCmd sends a command and checks the reply code and, when enhanced
// is not empty, the enhanced status code.
func (c *Conn) ExpectCmd(line string, code int, enhanced string) smtp.Reply {
	c.t.Helper()
	r := c.Cmd(line)
	if r.Code != code || enhanced != "" && r.Enhanced != enhanced {
		c.t.Fatalf("%s: got %q, want %d %s", line, r.Error(), code, enhanced)
	}
	return r
}

// StartTLS runs STARTTLS and the client handshake.
func (c *Conn) StartTLS(cfg *tls.Config) {
	c.t.Helper()
	c.ExpectCmd("STARTTLS", 220, "")
	tc := tls.Client(c.Conn, cfg)
	if err := tc.Handshake(); err != nil {
		c.t.Fatalf("TLS handshake: %v", err)
	}
	c.Conn = tc
	c.BR = bufio.NewReader(tc)
}

// Closed reports whether the server has closed the connection (EOF on read).
func (c *Conn) Closed() bool {
	c.Conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := c.BR.ReadByte()
	return err != nil
}

// Cert is a self-signed certificate for "localhost" and 127.0.0.1, and a
// client configuration that trusts it.
type Cert struct {
	Server tls.Certificate
	Client *tls.Config
	PEM    []byte
	KeyPEM []byte
}

// NewCert makes a test certificate.
func NewCert(t testing.TB) Cert {
	t.Helper()
	cp, kp, err := certs.SelfSigned("localhost", "127.0.0.1", "::1")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(cp, kp)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(cp)
	return Cert{Server: cert, Client: &tls.Config{RootCAs: pool, ServerName: "localhost"}, PEM: cp, KeyPEM: kp}
}

// Logger returns a logger writing to the test log.
func Logger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
