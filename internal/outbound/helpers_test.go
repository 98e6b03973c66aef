package outbound

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/posthorn/posthorn/internal/dns/dnstest"
	"github.com/posthorn/posthorn/internal/policy"
	"github.com/posthorn/posthorn/internal/queue"
	"github.com/posthorn/posthorn/internal/smtpserver"
	"github.com/posthorn/posthorn/internal/spool"
	"github.com/posthorn/posthorn/internal/testutil"
)

// listenSamePort listens on port P of every ip, for one P free on all:
// the Deliverer uses one port for every MX host.
func listenSamePort(t *testing.T, ips ...string) (int, []net.Listener) {
	t.Helper()
	for range 50 {
		first, err := net.Listen("tcp", net.JoinHostPort(ips[0], "0"))
		if err != nil {
			t.Fatal(err)
		}
		port := first.Addr().(*net.TCPAddr).Port
		lns := []net.Listener{first}
		for _, ip := range ips[1:] {
			ln, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
			if err != nil {
				break
			}
			lns = append(lns, ln)
		}
		if len(lns) == len(ips) {
			t.Cleanup(func() {
				for _, ln := range lns {
					ln.Close()
				}
			})
			return port, lns
		}
		for _, ln := range lns {
			ln.Close()
		}
	}
	t.Fatal("no port free on all of", ips)
	return 0, nil
}

// freePort returns a port that nothing listens on at ip (for "server
// down" tests: connecting there is refused at once on loopback).
func closedPort(t *testing.T, ip string) int {
	t.Helper()
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	p := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return p
}

// fake is a scripted SMTP server. Its replies are set per test; it
// records what it was sent.
type fake struct {
	Greeting  string   // default "220 fake.example ESMTP"
	Ext       []string // EHLO keywords; nil: the default set below
	NoExt     bool     // EHLO with no keywords at all
	EHLOReply string   // replaces the EHLO reply (e.g. "502 5.5.2 no")
	// StartTLS is written as is in answer to STARTTLS; default
	// "220 2.0.0 ready\r\n".
	StartTLS string
	// BreakTLS: after the 220 to STARTTLS, answer the ClientHello with
	// garbage and hang up.
	BreakTLS bool
	TLS      *tls.Config
	Mail     string                   // reply to MAIL; default 250
	Rcpt     func(addr string) string // reply to RCPT; default 250
	Data     string                   // reply to DATA; default 354 (503 or 554 without MAIL or recipients)
	// DataAlways answers DATA with 354 even without MAIL or recipients,
	// as a broken server might.
	DataAlways bool
	Final      string // reply after the dot; default 250
	NoFinal    bool   // never answer after the dot
	HangUp     bool   // close the connection after answering the dot
	Rset       string // reply to RSET; default 250
	// Chunk is the reply to a BDAT chunk that is not the last; default
	// 250. Any other ends the transaction: later chunks get 503.
	Chunk string
	// NoBDAT: BDAT is an unknown command (500), its octets read as
	// commands, as by a server that offers CHUNKING wrongly.
	NoBDAT bool
	Users  map[string]string // AUTH PLAIN accounts; nil: no AUTH

	mu     sync.Mutex
	conns  int
	msgs   []fakeMsg
	chunks []string // every Read from the client, in order
	cmds   []string // every command line, "n: LINE" with n the connection number
}

type fakeMsg struct {
	From   string
	Params string
	Rcpts  []string // "addr params" as sent
	Body   string   // as sent, dot-stuffing undone (DATA) or the chunks joined (BDAT), CRLF kept
	TLS    bool
	Auth   string
	Conn   int
}

var defaultExt = []string{"PIPELINING", "SIZE 10000000", "8BITMIME", "ENHANCEDSTATUSCODES", "SMTPUTF8", "DSN"}

func (f *fake) serve(t *testing.T, ln net.Listener) {
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.mu.Lock()
			f.conns++
			n := f.conns
			f.mu.Unlock()
			go f.session(t, c, n)
		}
	}()
}

// recorder keeps each Read's bytes, so tests can see what arrived together.
type recorder struct {
	r io.Reader
	f *fake
}

func (r recorder) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if n > 0 {
		r.f.mu.Lock()
		r.f.chunks = append(r.f.chunks, string(p[:n]))
		r.f.mu.Unlock()
	}
	return n, err
}

func (f *fake) session(t *testing.T, c net.Conn, n int) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(recorder{c, f})
	w := func(s string) { io.WriteString(c, s) }
	def := func(s, d string) string {
		if s == "" {
			return d
		}
		return s
	}
	w(def(f.Greeting, "220 fake.example ESMTP") + "\r\n")
	var cur *fakeMsg
	tlsOn, auth := false, ""
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		f.mu.Lock()
		f.cmds = append(f.cmds, fmt.Sprintf("%d: %s", n, line))
		f.mu.Unlock()
		verb, arg, _ := strings.Cut(line, " ")
		switch strings.ToUpper(verb) {
		case "EHLO", "LHLO":
			if f.EHLOReply != "" {
				w(f.EHLOReply + "\r\n")
				continue
			}
			ext := f.Ext
			if ext == nil && !f.NoExt {
				ext = defaultExt
			}
			if f.TLS != nil && !tlsOn {
				ext = append(append([]string(nil), ext...), "STARTTLS")
			}
			if f.Users != nil {
				ext = append(append([]string(nil), ext...), "AUTH PLAIN")
			}
			lines := append([]string{"fake.example hello " + arg}, ext...)
			for i, l := range lines {
				sep := "-"
				if i == len(lines)-1 {
					sep = " "
				}
				w("250" + sep + l + "\r\n")
			}
		case "HELO":
			w("250 fake.example\r\n")
		case "STARTTLS":
			w(def(f.StartTLS, "220 2.0.0 ready\r\n"))
			if f.BreakTLS {
				buf := make([]byte, 1)
				br.Read(buf) // the ClientHello has begun
				w("this is not TLS\r\n")
				return
			}
			tc := tls.Server(c, f.TLS)
			if err := tc.Handshake(); err != nil {
				return
			}
			c, br, tlsOn = tc, bufio.NewReader(recorder{tc, f}), true
		case "AUTH":
			mech, ir, _ := strings.Cut(arg, " ")
			dec, _ := base64.StdEncoding.DecodeString(ir)
			parts := strings.Split(string(dec), "\x00")
			if strings.ToUpper(mech) == "PLAIN" && len(parts) == 3 && f.Users != nil && f.Users[parts[1]] == parts[2] {
				auth = parts[1]
				w("235 2.7.0 ok\r\n")
			} else {
				w("535 5.7.8 bad credentials\r\n")
			}
		case "MAIL":
			from, params, _ := strings.Cut(strings.TrimPrefix(arg, "FROM:"), " ")
			cur = &fakeMsg{From: strings.Trim(from, "<>"), Params: params, TLS: tlsOn, Auth: auth, Conn: n}
			r := def(f.Mail, "250 2.1.0 ok")
			if !strings.HasPrefix(r, "2") {
				cur = nil
			}
			w(r + "\r\n")
		case "RCPT":
			to, params, _ := strings.Cut(strings.TrimPrefix(arg, "TO:"), " ")
			to = strings.Trim(to, "<>")
			r := "250 2.1.5 ok"
			if f.Rcpt != nil {
				r = f.Rcpt(to)
			}
			if cur != nil && strings.HasPrefix(r, "2") {
				cur.Rcpts = append(cur.Rcpts, strings.TrimSpace(to+" "+params))
			}
			w(r + "\r\n")
		case "DATA":
			d := def(f.Data, "354 go ahead")
			switch {
			case f.DataAlways:
			case cur == nil:
				d = "503 5.5.1 need MAIL first"
			case len(cur.Rcpts) == 0:
				d = "554 5.5.1 no valid recipients"
			}
			w(d + "\r\n")
			if !strings.HasPrefix(d, "354") {
				continue
			}
			var body strings.Builder
			for {
				l, err := br.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
				body.WriteString(strings.TrimPrefix(l, "."))
			}
			if f.NoFinal {
				// Hold the line until the client gives up.
				io.Copy(io.Discard, br)
				return
			}
			if cur != nil {
				cur.Body = body.String()
				f.mu.Lock()
				f.msgs = append(f.msgs, *cur)
				f.mu.Unlock()
			}
			cur = nil
			w(def(f.Final, "250 2.0.0 queued") + "\r\n")
			if f.HangUp {
				return
			}
		case "BDAT":
			if f.NoBDAT {
				w("500 5.5.2 what?\r\n")
				continue
			}
			// RFC 3030: the chunk is read whatever the reply.
			size, last, _ := strings.Cut(arg, " ")
			n, err := strconv.Atoi(size)
			if err != nil || n < 0 {
				w("501 5.5.4 bad chunk size\r\n")
				return
			}
			data := make([]byte, n)
			if _, err := io.ReadFull(br, data); err != nil {
				return
			}
			isLast := strings.EqualFold(last, "LAST")
			switch {
			case cur == nil:
				w("503 5.5.1 need MAIL first\r\n")
				continue
			case len(cur.Rcpts) == 0:
				w("554 5.5.1 no valid recipients\r\n")
				continue
			}
			cur.Body += string(data)
			if !isLast {
				r := def(f.Chunk, "250 2.0.0 chunk taken")
				if !strings.HasPrefix(r, "2") {
					cur = nil
				}
				w(r + "\r\n")
				continue
			}
			f.mu.Lock()
			f.msgs = append(f.msgs, *cur)
			f.mu.Unlock()
			cur = nil
			w(def(f.Final, "250 2.0.0 queued") + "\r\n")
		case "RSET":
			cur = nil
			w(def(f.Rset, "250 2.0.0 ok") + "\r\n")
		case "NOOP":
			w("250 2.0.0 ok\r\n")
		case "QUIT":
			w("221 2.0.0 bye\r\n")
			return
		default:
			w("500 5.5.2 what?\r\n")
		}
	}
}

func (f *fake) messages() []fakeMsg {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]fakeMsg(nil), f.msgs...)
}

func (f *fake) connCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.conns
}

// chunk reports whether some Read from the client began with prefix.
func (f *fake) chunk(prefix string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.ContainsFunc(f.chunks, func(c string) bool { return strings.HasPrefix(c, prefix) })
}

func (f *fake) commands() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.cmds...)
}

// env makes an envelope for body, to rcpts.
func env(from string, body string, rcpts ...string) *spool.Envelope {
	e := &spool.Envelope{ID: "TESTID", From: from, Size: int64(len(body)), Arrival: time.Now()}
	for _, r := range rcpts {
		e.Recipients = append(e.Recipients, spool.Recipient{Addr: r})
	}
	return e
}

func bodyFunc(s string) func() (io.ReadCloser, error) {
	return func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(s)), nil }
}

func all(e *spool.Envelope) []int {
	idx := make([]int, len(e.Recipients))
	for i := range idx {
		idx[i] = i
	}
	return idx
}

// testOptions are Options for tests: short timeouts, the test resolver.
func testOptions(t *testing.T, r *dnstest.Resolver, port int) Options {
	return Options{
		Hostname: "client.posthorn.test",
		Resolver: r,
		Port:     port,
		Timeouts: Timeouts{Connect: 5 * time.Second, Greeting: 10 * time.Second, Command: 10 * time.Second,
			Mail: 10 * time.Second, Rcpt: 10 * time.Second, DataInit: 10 * time.Second, DataBlock: 10 * time.Second, DataFinal: 10 * time.Second},
		Logger: testutil.Logger(t),
	}
}

func newDeliverer(t *testing.T, o Options) *Deliverer {
	d := New(o)
	t.Cleanup(func() { d.Close() })
	return d
}

func deliver(d *Deliverer, e *spool.Envelope, body string) []queue.Outcome {
	return d.Deliver(context.Background(), e, bodyFunc(body), all(e))
}

func wantStatus(t *testing.T, got []queue.Outcome, want ...queue.Status) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d outcomes, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		if got[i].Status != want[i] {
			t.Fatalf("outcome %d: %v %q, want %v (all: %+v)", i, got[i].Status, got[i].Detail, want[i], got)
		}
	}
}

// posthorn is one of our own servers (internal/smtpserver) with its spool.
type posthorn struct {
	srv    *smtpserver.Server
	spool  *spool.Spool
	mu     sync.Mutex
	queued []*spool.Envelope
	accept int // connections accepted
}

// countingListener counts accepted connections.
type countingListener struct {
	net.Listener
	p *posthorn
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.p.mu.Lock()
		l.p.accept++
		l.p.mu.Unlock()
	}
	return c, err
}

// startPosthorn serves SMTP for domains (space-separated) on ln (role) with a test
// certificate; users may AUTH on the submission role.
func startPosthorn(t *testing.T, ln net.Listener, role smtpserver.Role, domains string, users map[string]string) *posthorn {
	t.Helper()
	sp, err := spool.Open(spool.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	p := &posthorn{spool: sp}
	cert := testutil.NewCert(t)
	var auth smtpserver.Authenticator
	if users != nil {
		auth = accounts(users)
	}
	p.srv = smtpserver.New(smtpserver.Options{
		Hostname: "mx." + strings.Fields(domains)[0],
		Spool:    sp,
		Queued: func(env *spool.Envelope) {
			p.mu.Lock()
			p.queued = append(p.queued, env)
			p.mu.Unlock()
		},
		Policy: policy.New(policy.Options{
			LocalDomain:      func(d string) bool { return slices.Contains(strings.Fields(domains), strings.ToLower(d)) },
			LocalRecipient:   func(string) (bool, error) { return true, nil },
			PostmasterDomain: strings.Fields(domains)[0],
		}),
		Auth:   auth,
		TLS:    &tls.Config{Certificates: []tls.Certificate{cert.Server}},
		Logger: testutil.Logger(t),
	})
	go p.srv.Serve(countingListener{ln, p}, role)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		p.srv.Shutdown(ctx)
	})
	return p
}

type accounts map[string]string

func (a accounts) Authenticate(_ context.Context, user, pass string) (bool, error) {
	p, ok := a[user]
	return ok && p == pass, nil
}

func (p *posthorn) envelopes() []*spool.Envelope {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]*spool.Envelope(nil), p.queued...)
}

func (p *posthorn) accepted() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.accept
}

func (p *posthorn) body(t *testing.T, e *spool.Envelope) string {
	t.Helper()
	r, err := p.spool.Body(e.ID)
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

func itoa(n int) string { return strconv.Itoa(n) }

func tlsServerConfig(c testutil.Cert) *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{c.Server}}
}

type tlsConnState = tls.ConnectionState

func decodeBase64(s string) ([]byte, error) {
	return base64.StdEncoding.DecodeString(strings.ReplaceAll(s, "\r\n", ""))
}
