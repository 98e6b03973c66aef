package smtpserver

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/posthorn/posthorn/internal/policy"
	"github.com/posthorn/posthorn/internal/spool"
	"github.com/posthorn/posthorn/internal/testutil"
)

// users is the account table of these tests.
type users map[string]string

func (u users) Authenticate(_ context.Context, user, pass string) (bool, error) {
	p, ok := u[user]
	return ok && p == pass, nil
}

type harness struct {
	srv    *Server
	spool  *spool.Spool
	cert   testutil.Cert
	addr   map[Role]string
	mu     sync.Mutex
	queued []*spool.Envelope
}

func newHarness(t *testing.T, mod func(*Options)) *harness {
	t.Helper()
	sp, err := spool.Open(spool.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	h := &harness{spool: sp, cert: testutil.NewCert(t), addr: map[Role]string{}}
	pol := policy.New(policy.Options{
		LocalDomain: func(d string) bool { return strings.EqualFold(d, "example.test") },
		LocalRecipient: func(a string) (bool, error) {
			l, _, _ := strings.Cut(strings.ToLower(a), "@")
			return l == "alice" || l == "bob" || l == "postmaster", nil
		},
		PostmasterDomain: "example.test",
		SenderMustOwn:    true,
		Owns:             func(user, addr string) bool { return strings.EqualFold(user, addr) },
	})
	o := Options{
		Hostname: "mx.example.test",
		Spool:    sp,
		Queued: func(env *spool.Envelope) {
			h.mu.Lock()
			h.queued = append(h.queued, env)
			h.mu.Unlock()
		},
		Policy: pol,
		Auth:   users{"alice@example.test": "secret"},
		TLS:    &tls.Config{Certificates: []tls.Certificate{h.cert.Server}},
		Logger: testutil.Logger(t),
	}
	if mod != nil {
		mod(&o)
	}
	h.srv = New(o)
	for _, role := range []Role{RoleSMTP, RoleSubmission, RoleSubmissions} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		h.addr[role] = ln.Addr().String()
		go h.srv.Serve(ln, role)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		h.srv.Shutdown(ctx)
	})
	return h
}

func (h *harness) queuedCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.queued)
}

// body returns the stored bytes of the only queued message.
func (h *harness) lastBody(t *testing.T) string {
	t.Helper()
	h.mu.Lock()
	env := h.queued[len(h.queued)-1]
	h.mu.Unlock()
	r, err := h.spool.Body(env.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

const msg = "From: sender@example.org\r\nTo: alice@example.test\r\nSubject: test\r\n\r\nHello.\r\n..dot line\r\n"

func TestLocalDeliveryOnPort25StoresBodyExactly(t *testing.T) {
	h := newHarness(t, nil)
	c := testutil.Dial(t, h.addr[RoleSMTP])
	c.ExpectCmd("EHLO client.example.org", 250, "")
	c.ExpectCmd("MAIL FROM:<sender@example.org>", 250, "2.1.0")
	c.ExpectCmd("RCPT TO:<Alice@Example.Test>", 250, "2.1.5")
	c.ExpectCmd("DATA", 354, "")
	r := c.ExpectCmd(msg+".", 250, "2.0.0")
	if !strings.Contains(r.Text(), "queued as") {
		t.Fatalf("reply does not name the queue id: %q", r.Text())
	}
	body := h.lastBody(t)
	if !strings.HasPrefix(body, "Received: from client.example.org ([127.0.0.1])\r\n\tby mx.example.test (posthorn) with ESMTP id ") {
		t.Fatalf("Received header missing or wrong:\n%s", body)
	}
	_, after, ok := strings.Cut(body, "\r\nFrom: ")
	if !ok || "From: "+after != strings.Replace(msg, "..dot", ".dot", 1) {
		t.Fatalf("body not stored byte-exact after the Received header:\n%q", body)
	}
	c.ExpectCmd("QUIT", 221, "2.0.0")
}

func TestRefusalsCarryTheRightCodes(t *testing.T) {
	h := newHarness(t, nil)
	c := testutil.Dial(t, h.addr[RoleSMTP])
	c.ExpectCmd("MAIL FROM:<a@example.org>", 503, "5.5.1")
	c.ExpectCmd("EHLO client.example.org", 250, "")
	c.ExpectCmd("RCPT TO:<alice@example.test>", 503, "5.5.1")
	c.ExpectCmd("MAIL FROM:<>", 250, "2.1.0") // null sender accepted
	c.ExpectCmd("RCPT TO:<someone@elsewhere.example>", 550, "5.7.1")
	c.ExpectCmd("RCPT TO:<nobody@example.test>", 550, "5.1.1")
	c.ExpectCmd("RCPT TO:<relay%elsewhere.example@example.test>", 550, "5.1.1")
	c.ExpectCmd("RCPT TO:<@hop.example:someone@elsewhere.example>", 550, "5.7.1")
	c.ExpectCmd("RCPT TO:<Postmaster>", 250, "2.1.5")
	c.ExpectCmd("VRFY alice", 252, "2.5.0")
	c.ExpectCmd("EXPN staff", 502, "5.5.1")
	c.ExpectCmd("AUTH PLAIN AGFsaWNlAHNlY3JldA==", 503, "5.5.1") // never AUTH on 25
	c.ExpectCmd("RSET", 250, "2.0.0")
	c.ExpectCmd("MAIL FROM:<a@example.org> SIZE=999999999999", 552, "5.3.4")
	c.ExpectCmd("MAIL FROM:<a@example.org> FOO=BAR", 555, "5.5.4")
	c.ExpectCmd("MAIL FROM:<bad address@example.org>", 501, "")
	c.ExpectCmd("FOO", 500, "5.5.2")
	if h.queuedCount() != 0 {
		t.Fatal("something was queued")
	}
}

func TestOversizeMessageRefused(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.Limits.MessageSize = 1000 })
	c := testutil.Dial(t, h.addr[RoleSMTP])
	c.ExpectCmd("EHLO client.example.org", 250, "")
	c.ExpectCmd("MAIL FROM:<a@example.org>", 250, "")
	c.ExpectCmd("RCPT TO:<alice@example.test>", 250, "")
	c.ExpectCmd("DATA", 354, "")
	c.ExpectCmd(strings.Repeat("x", 500)+"\r\n"+strings.Repeat("y", 500)+"\r\n.", 552, "5.3.4")
	c.ExpectCmd("NOOP", 250, "2.0.0") // still in sync
	if h.queuedCount() != 0 {
		t.Fatal("oversize message queued")
	}
}

func TestBareLineEndingsInDataRefusedAndNothingQueued(t *testing.T) {
	for name, body := range map[string]string{"LF": "a\nb\r\n", "CR": "a\rb\r\n", "smuggle": "a\r\n\n.\nmail from:<x@example.org>\r\n"} {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, nil)
			c := testutil.Dial(t, h.addr[RoleSMTP])
			c.ExpectCmd("EHLO client.example.org", 250, "")
			c.ExpectCmd("MAIL FROM:<a@example.org>", 250, "")
			c.ExpectCmd("RCPT TO:<alice@example.test>", 250, "")
			c.ExpectCmd("DATA", 354, "")
			r := c.Cmd(body + ".")
			if r.Code != 550 || !strings.HasPrefix(r.Enhanced, "5.") {
				t.Fatalf("got %q, want 550", r.Error())
			}
			c.ExpectCmd("NOOP", 250, "2.0.0")
			if h.queuedCount() != 0 {
				t.Fatal("message with bare line ending was queued")
			}
		})
	}
}

func TestSubmissionRequiresAuthAndTLS(t *testing.T) {
	h := newHarness(t, nil)
	c := testutil.Dial(t, h.addr[RoleSubmission])
	r := c.ExpectCmd("EHLO client.example.org", 250, "")
	if strings.Contains(r.Text(), "AUTH") {
		t.Fatalf("AUTH advertised before STARTTLS: %q", r.Lines)
	}
	if !strings.Contains(r.Text(), "STARTTLS") {
		t.Fatalf("STARTTLS not advertised: %q", r.Lines)
	}
	c.ExpectCmd("AUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABzZWNyZXQ=", 530, "5.7.0")
	c.ExpectCmd("MAIL FROM:<alice@example.test>", 530, "5.7.0")
	c.StartTLS(h.cert.Client)
	r = c.ExpectCmd("EHLO client.example.org", 250, "")
	if !strings.Contains(r.Text(), "AUTH PLAIN LOGIN") || strings.Contains(r.Text(), "STARTTLS") {
		t.Fatalf("after TLS: %q", r.Lines)
	}
	c.ExpectCmd("MAIL FROM:<alice@example.test>", 530, "5.7.0")
	c.ExpectCmd("AUTH PLAIN "+b64("\x00alice@example.test\x00wrong"), 535, "5.7.8")
	c.ExpectCmd("AUTH PLAIN "+b64("\x00alice@example.test\x00secret"), 235, "2.7.0")
	c.ExpectCmd("MAIL FROM:<bob@example.test>", 553, "5.7.1") // not hers
	c.ExpectCmd("MAIL FROM:<alice@example.test>", 250, "")
	c.ExpectCmd("RCPT TO:<friend@elsewhere.example>", 250, "") // may relay
	c.ExpectCmd("DATA", 354, "")
	c.ExpectCmd("Subject: hi\r\n\r\nhi\r\n.", 250, "2.0.0")
	if !strings.Contains(h.lastBody(t), "with ESMTPSA id") {
		t.Fatalf("Received does not say ESMTPSA:\n%s", h.lastBody(t))
	}
}

func TestAuthLoginOnImplicitTLS(t *testing.T) {
	h := newHarness(t, nil)
	c := testutil.DialTLS(t, h.addr[RoleSubmissions], h.cert.Client)
	r := c.ExpectCmd("EHLO client.example.org", 250, "")
	if !strings.Contains(r.Text(), "AUTH PLAIN LOGIN") || strings.Contains(r.Text(), "STARTTLS") {
		t.Fatalf("465 EHLO: %q", r.Lines)
	}
	c.ExpectCmd("AUTH LOGIN", 334, "")
	c.ExpectCmd(b64("alice@example.test"), 334, "")
	c.ExpectCmd(b64("nope"), 535, "5.7.8")
	c.ExpectCmd("AUTH LOGIN "+b64("alice@example.test"), 334, "")
	c.ExpectCmd(b64("secret"), 235, "2.7.0")
	c.ExpectCmd("AUTH LOGIN", 503, "5.5.1")
}

func TestAuthFailuresPerIPLockOut(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.Limits.AuthFailuresIP = 2 })
	c := testutil.DialTLS(t, h.addr[RoleSubmissions], h.cert.Client)
	c.ExpectCmd("EHLO client.example.org", 250, "")
	c.ExpectCmd("AUTH PLAIN "+b64("\x00alice@example.test\x00x"), 535, "5.7.8")
	c.ExpectCmd("AUTH PLAIN "+b64("\x00alice@example.test\x00y"), 535, "5.7.8")
	c.Expect(421)
	c2 := testutil.DialTLS(t, h.addr[RoleSubmissions], h.cert.Client)
	c2.ExpectCmd("EHLO client.example.org", 250, "")
	c2.ExpectCmd("AUTH PLAIN "+b64("\x00alice@example.test\x00secret"), 421, "4.7.0")
}

// CVE-2011-0411: a command pipelined with STARTTLS in the same packet must
// not run inside the TLS session.
func TestCommandPipelinedWithStartTLSIsNotExecuted(t *testing.T) {
	h := newHarness(t, nil)
	c := testutil.Dial(t, h.addr[RoleSubmission])
	c.ExpectCmd("EHLO client.example.org", 250, "")
	c.Send("STARTTLS\r\nRSET\r\n")
	c.Expect(220)
	tc := tls.Client(c.Conn, h.cert.Client)
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	c.Conn = tc
	c.BR.Reset(tc)
	// Had RSET run inside TLS, its 250 would answer the MAIL below, and
	// MAIL's own reply would be left over.
	c.ExpectCmd("MAIL FROM:<alice@example.test>", 503, "5.5.1") // EHLO state was reset
	c.Conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if _, err := c.BR.ReadByte(); err == nil {
		t.Fatal("an extra reply arrived: the pipelined command was executed")
	}
}

func TestEHLOReplyWrittenInOneWrite(t *testing.T) {
	h := newHarness(t, nil)
	c := testutil.Dial(t, h.addr[RoleSMTP])
	c.Send("EHLO client.example.org\r\n")
	buf := make([]byte, 4096)
	n, err := c.Conn.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	got := string(buf[:n])
	if !strings.HasSuffix(got, "250 STARTTLS\r\n") || !strings.Contains(got, "250-PIPELINING\r\n") {
		t.Fatalf("EHLO reply not whole in one read: %q", got)
	}
}

func TestPipelinedRepliesArriveTogether(t *testing.T) {
	h := newHarness(t, nil)
	c := testutil.Dial(t, h.addr[RoleSMTP])
	c.ExpectCmd("EHLO client.example.org", 250, "")
	c.Send("MAIL FROM:<a@example.org>\r\nRCPT TO:<alice@example.test>\r\nRCPT TO:<x@elsewhere.example>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n")
	buf := make([]byte, 4096)
	n, err := c.Conn.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	got := string(buf[:n])
	for _, want := range []string{"250 2.1.0", "250 2.1.5", "550 5.7.1", "354 "} {
		if !strings.Contains(got, want) {
			t.Fatalf("batch reply %q lacks %q", got, want)
		}
	}
	c.BR.Reset(c.Conn)
	c.ExpectCmd("Subject: x\r\n\r\nx\r\n.", 250, "2.0.0")
	h.mu.Lock()
	rc := len(h.queued[0].Recipients)
	h.mu.Unlock()
	if rc != 2 {
		t.Fatalf("queued with %d recipients, want 2", rc)
	}
}

func TestHTTPRequestEndsSession(t *testing.T) {
	h := newHarness(t, nil)
	c := testutil.Dial(t, h.addr[RoleSMTP])
	c.Send("GET / HTTP/1.1\r\nHost: example\r\n\r\n")
	c.Expect(554)
	if !c.Closed() {
		t.Fatal("session still open after an HTTP request line")
	}
}

func TestBDAT(t *testing.T) {
	h := newHarness(t, nil)
	c := testutil.Dial(t, h.addr[RoleSMTP])
	c.ExpectCmd("EHLO client.example.org", 250, "")
	c.ExpectCmd("MAIL FROM:<a@example.org>", 250, "")
	c.ExpectCmd("RCPT TO:<alice@example.test>", 250, "")
	part1, part2 := "Subject: chunked\r\n\r\n", "body\r\n.line\r\n"
	c.Send("BDAT " + itoa(len(part1)) + "\r\n" + part1)
	c.Expect(250)
	c.ExpectCmd("DATA", 503, "5.5.1") // no mixing
	c.Send("BDAT " + itoa(len(part2)) + " LAST\r\n" + part2)
	c.Expect(250)
	if body := h.lastBody(t); !strings.HasSuffix(body, "\r\n"+part1+part2) {
		t.Fatalf("stored %q", body)
	}
	// RSET clears chunking state: a new transaction may use DATA.
	c.ExpectCmd("MAIL FROM:<a@example.org>", 250, "")
	c.ExpectCmd("RCPT TO:<alice@example.test>", 250, "")
	c.Send("BDAT 3\r\nabc")
	c.Expect(250)
	c.ExpectCmd("RSET", 250, "")
	c.ExpectCmd("MAIL FROM:<a@example.org>", 250, "")
	c.ExpectCmd("RCPT TO:<alice@example.test>", 250, "")
	c.ExpectCmd("DATA", 354, "")
	c.ExpectCmd("x\r\n.", 250, "")
	// BDAT without a transaction: the chunk is still consumed.
	c.Send("BDAT 5\r\nRSET\n")
	c.Expect(503)
	c.ExpectCmd("NOOP", 250, "")
}

func TestShutdownClosesIdleSessionsAndWaitsForTransactions(t *testing.T) {
	h := newHarness(t, nil)
	idle := testutil.Dial(t, h.addr[RoleSMTP])
	busy := testutil.Dial(t, h.addr[RoleSMTP])
	busy.ExpectCmd("EHLO client.example.org", 250, "")
	busy.ExpectCmd("MAIL FROM:<a@example.org>", 250, "")
	busy.ExpectCmd("RCPT TO:<alice@example.test>", 250, "")
	busy.ExpectCmd("DATA", 354, "")
	busy.Send("Subject: x\r\n\r\n")
	done := make(chan error)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		done <- h.srv.Shutdown(ctx)
	}()
	idle.Expect(421)
	busy.ExpectCmd("body\r\n.", 250, "2.0.0")
	busy.Expect(421)
	if err := <-done; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if _, err := net.Dial("tcp", h.addr[RoleSMTP]); err == nil {
		t.Fatal("listener still accepting after shutdown")
	}
}

func TestConnectionsPerIPLimit(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.Limits.ConnectionsPerIP = 2 })
	testutil.Dial(t, h.addr[RoleSMTP])
	testutil.Dial(t, h.addr[RoleSMTP])
	c, err := net.Dial("tcp", h.addr[RoleSMTP])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b, _ := io.ReadAll(c)
	if !strings.HasPrefix(string(b), "421 4.7.0") {
		t.Fatalf("third connection got %q", b)
	}
}

func TestTrustedNetworkMayRelay(t *testing.T) {
	h := newHarness(t, func(o *Options) {
		o.Policy = policy.New(policy.Options{
			LocalDomain:     func(string) bool { return false },
			TrustedNetworks: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		})
	})
	c := testutil.Dial(t, h.addr[RoleSMTP])
	c.ExpectCmd("HELO client.example.org", 250, "")
	c.ExpectCmd("MAIL FROM:<a@example.org>", 250, "")
	c.ExpectCmd("RCPT TO:<x@elsewhere.example>", 250, "2.1.5")
}

func TestBadHeloNamesRefused(t *testing.T) {
	h := newHarness(t, nil)
	c := testutil.Dial(t, h.addr[RoleSMTP])
	for _, name := range []string{"", "bad name", "evil\x01ctl", "(comment)", "a..b", "[300.1.1.1]"} {
		r := c.Cmd("EHLO " + name)
		if !r.Permanent() {
			t.Errorf("EHLO %q: %q", name, r.Error())
		}
	}
	c.ExpectCmd("EHLO [127.0.0.1]", 250, "")
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func itoa(n int) string { return strconv.Itoa(n) }

func TestIPv6Listener(t *testing.T) {
	ln, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback here: %v", err)
	}
	h := newHarness(t, nil)
	go h.srv.Serve(ln, RoleSMTP)
	c := testutil.Dial(t, ln.Addr().String())
	c.ExpectCmd("EHLO [IPv6:::1]", 250, "")
	c.ExpectCmd("MAIL FROM:<a@example.org>", 250, "")
	c.ExpectCmd("RCPT TO:<alice@example.test>", 250, "")
	c.ExpectCmd("DATA", 354, "")
	c.ExpectCmd("Subject: v6\r\n\r\nx\r\n.", 250, "")
	if body := h.lastBody(t); !strings.Contains(body, "[::1]") {
		t.Fatalf("Received does not show the IPv6 client:\n%s", body)
	}
}
