package main

import (
	"bufio"
	"fmt"
	"mime"
	"mime/multipart"
	"net"
	"net/mail"
	"net/textproto"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/posthorn/posthorn/internal/dns/dnstest"
	"github.com/posthorn/posthorn/internal/testutil"
)

// Delivery to the world, on loopback: posthorn instances and scripted
// servers on 127.0.0.x share one delivery port, and the test's DNS server
// says which address each domain's MX has.

// sharedPort finds a TCP port free on every ip and returns it.
func sharedPort(t *testing.T, ips ...string) int {
	t.Helper()
	for try := 0; try < 50; try++ {
		ln, err := net.Listen("tcp", ips[0]+":0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		lns := []net.Listener{ln}
		ok := true
		for _, ip := range ips[1:] {
			l, err := net.Listen("tcp", fmt.Sprintf("%s:%d", ip, port))
			if err != nil {
				ok = false
				break
			}
			lns = append(lns, l)
		}
		for _, l := range lns {
			l.Close()
		}
		if ok {
			return port
		}
	}
	t.Fatal("no port free on all of", ips)
	return 0
}

// instanceConfig is a posthorn on its own loopback address.
func instanceConfig(dir, hostname, ip string, smtpPort, deliveryPort int, dnsAddr, rest string) string {
	return fmt.Sprintf(`hostname = %q
data_dir = %q
log_level = "debug"

[listen]
smtp        = ["%s:%d"]
submission  = ["%s:0"]
submissions = ["%s:0"]

[dns]
servers = [%q]

[delivery]
port = %d

[queue]
first_retry = "1s"
max_retry = "2s"

%s`, hostname, filepath.Join(dir, "data"), ip, smtpPort, ip, ip, dnsAddr, deliveryPort, rest)
}

// fakeMX is a scripted SMTP server: reply decides each RCPT's answer from
// the recipient and how many times it was asked.
type fakeMX struct {
	t     *testing.T
	ln    net.Listener
	reply func(rcpt string, n int) string

	// hold, when set, delays the reply to the end of data until it is
	// closed (deliveries in flight).
	hold chan struct{}

	mu        sync.Mutex
	asked     map[string]int
	delivered map[string]int
	messages  []string
}

func newFakeMX(t *testing.T, addr string, reply func(rcpt string, n int) string) *fakeMX {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeMX{t: t, ln: ln, reply: reply, asked: map[string]int{}, delivered: map[string]int{}}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go f.serve(c)
		}
	}()
	return f
}

func (f *fakeMX) serve(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	tp := textproto.NewConn(c)
	tp.PrintfLine("220 fake.example ESMTP")
	var accepted []string
	for {
		line, err := tp.ReadLine()
		if err != nil {
			return
		}
		verb := strings.ToUpper(strings.SplitN(line, " ", 2)[0])
		switch verb {
		case "EHLO":
			tp.PrintfLine("250-fake.example\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 ENHANCEDSTATUSCODES")
		case "MAIL":
			accepted = nil
			tp.PrintfLine("250 2.1.0 ok")
		case "RCPT":
			rcpt := strings.Trim(strings.SplitN(line, ":", 2)[1], "<> ")
			if i := strings.Index(rcpt, ">"); i >= 0 {
				rcpt = rcpt[:i]
			}
			f.mu.Lock()
			f.asked[rcpt]++
			n := f.asked[rcpt]
			f.mu.Unlock()
			r := f.reply(rcpt, n)
			if strings.HasPrefix(r, "2") {
				accepted = append(accepted, rcpt)
			}
			tp.PrintfLine("%s", r)
		case "DATA":
			tp.PrintfLine("354 go on")
			body, err := tp.ReadDotBytes()
			if err != nil {
				return
			}
			f.mu.Lock()
			for _, r := range accepted {
				f.delivered[r]++
			}
			f.messages = append(f.messages, string(body))
			hold := f.hold
			f.mu.Unlock()
			if hold != nil {
				<-hold
			}
			tp.PrintfLine("250 2.0.0 queued")
		case "RSET":
			accepted = nil
			tp.PrintfLine("250 2.0.0 ok")
		case "QUIT":
			tp.PrintfLine("221 2.0.0 bye")
			return
		default:
			tp.PrintfLine("502 5.5.1 no")
		}
	}
}

// received returns the messages taken so far.
func (f *fakeMX) received() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.messages...)
}

func (f *fakeMX) count(rcpt string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.delivered[rcpt]
}

// waitFor polls cond until it holds or the bound passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestSubmissionRelayedToAnotherPosthornOverSTARTTLS: A (127.0.0.1) takes a
// submission from an authenticated user and delivers it by MX over
// STARTTLS to B (127.0.0.2), where it lands with both Received headers.
func TestSubmissionRelayedToAnotherPosthornOverSTARTTLS(t *testing.T) {
	port := sharedPort(t, "127.0.0.2")
	dnsSrv := dnstest.NewServer(t, dnstest.Zone{
		"b.example":    {MX: mxs("mx.b.example")},
		"mx.b.example": {A: []string{"127.0.0.2"}},
		"a.example":    {TXT: []string{"v=spf1 ip4:127.0.0.1 -all"}},
	})
	dirA, dirB := t.TempDir(), t.TempDir()
	b := startWithConfig(t, dirB, instanceConfig(dirB, "mx.b.example", "127.0.0.2", port, 25, dnsSrv.Addr(), "[[domain]]\nname = \"b.example\"\nmailboxes = [\"bob\"]\n"), dnsSrv)
	a := startWithConfig(t, dirA, instanceConfig(dirA, "mx.a.example", "127.0.0.1", 0, port, dnsSrv.Addr(), "[[domain]]\nname = \"a.example\"\n"), dnsSrv)
	if out, err := cli(t, "pw-alice\n", "user", "add", "-c", a.config, "alice@a.example"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	c := testutil.Dial(t, a.addrs["submission"])
	c.ExpectCmd("EHLO client.example.org", 250, "")
	c.StartTLS(dataDirCA(t, a))
	c.ExpectCmd("EHLO client.example.org", 250, "")
	c.ExpectCmd("AUTH PLAIN "+b64("\x00alice@a.example\x00pw-alice"), 235, "")
	c.ExpectCmd("MAIL FROM:<alice@a.example>", 250, "")
	c.ExpectCmd("RCPT TO:<bob@b.example>", 250, "")
	c.ExpectCmd("DATA", 354, "")
	c.ExpectCmd("From: alice@a.example\r\nTo: bob@b.example\r\nSubject: across\r\n\r\nhello B\r\n.", 250, "")

	a.waitLog(`msg="remote delivery" .*rcpt=bob@b.example status=delivered`, 1)
	b.waitLog(`msg=delivered .*mailbox=bob@b.example`, 1)
	got := maildirFiles(t, filepath.Join(dirB, "data", "mail", "b.example", "bob"))[0]
	if n := strings.Count(got, "Received: "); n != 2 {
		t.Fatalf("%d Received headers, want 2 (A and B):\n%s", n, got)
	}
	for _, want := range []string{"by mx.b.example (posthorn) with ESMTPS", "by mx.a.example (posthorn) with ESMTPSA", "spf=pass", "Subject: across", "hello B"} {
		if !strings.Contains(got, want) {
			t.Errorf("B's copy lacks %q:\n%s", want, got)
		}
	}
}

func mxs(hosts ...string) []*net.MX {
	var out []*net.MX
	for i, h := range hosts {
		out = append(out, &net.MX{Host: h, Pref: uint16(10 * (i + 1))})
	}
	return out
}

// worldA starts a posthorn whose users send to remote domains served by
// fake MX hosts; lifetime bounds the queue.
func worldA(t *testing.T, port int, zone dnstest.Zone, lifetime string) *daemon {
	t.Helper()
	zone["a.example"] = dnstest.Records{TXT: []string{"v=spf1 ip4:127.0.0.1 -all"}}
	dnsSrv := dnstest.NewServer(t, zone)
	dir := t.TempDir()
	rest := "[[domain]]\nname = \"a.example\"\nmailboxes = [\"sender\"]\n"
	cfg := instanceConfig(dir, "mx.a.example", "127.0.0.1", 0, port, dnsSrv.Addr(), rest)
	cfg = strings.Replace(cfg, "max_retry = \"2s\"\n", "max_retry = \"2s\"\nlifetime = \""+lifetime+"\"\n", 1)
	cfg = strings.Replace(cfg, "[queue]\n", "[relay]\ntrusted_networks = [\"127.0.0.0/8\"]\n\n[queue]\n", 1)
	return startWithConfig(t, dir, cfg, dnsSrv)
}

// sendFromA sends one message from sender@a.example through A's port 25
// (A trusts loopback as its network, so it relays).
func sendFromA(t *testing.T, a *daemon, subject string, rcpts ...string) {
	t.Helper()
	c := testutil.Dial(t, a.addrs["smtp"])
	c.ExpectCmd("EHLO app.a.example", 250, "")
	c.ExpectCmd("MAIL FROM:<sender@a.example>", 250, "")
	for _, r := range rcpts {
		c.ExpectCmd("RCPT TO:<"+r+">", 250, "")
	}
	c.ExpectCmd("DATA", 354, "")
	c.ExpectCmd("From: sender@a.example\r\nSubject: "+subject+"\r\nMessage-ID: <"+strings.ReplaceAll(subject, " ", "-")+"@a.example>\r\n\r\nbody\r\n.", 250, "")
	c.ExpectCmd("QUIT", 221, "")
}

// bounces returns the DSNs in sender@a.example's Maildir.
func bounces(t *testing.T, a *daemon) []string {
	return maildirFiles(t, filepath.Join(a.dir, "data", "mail", "a.example", "sender"))
}

// checkDSN parses a bounce with Go's MIME parsers and checks its report
// fields for rcpt.
func checkDSN(t *testing.T, raw, rcpt, status string) {
	t.Helper()
	m, err := mail.ReadMessage(strings.NewReader(raw))
	if err != nil {
		t.Fatalf("DSN is not a message: %v", err)
	}
	mt, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/report" || params["report-type"] != "delivery-status" {
		t.Fatalf("DSN Content-Type %q %v", mt, params)
	}
	mr := multipart.NewReader(m.Body, params["boundary"])
	found := false
	for {
		p, err := mr.NextPart()
		if err != nil {
			break
		}
		if p.Header.Get("Content-Type") != "message/delivery-status" {
			continue
		}
		found = true
		tp := textproto.NewReader(bufio.NewReader(p))
		if _, err := tp.ReadMIMEHeader(); err != nil { // per-message fields
			t.Fatalf("per-message fields: %v", err)
		}
		var recips []textproto.MIMEHeader
		for {
			h, err := tp.ReadMIMEHeader()
			if len(h) > 0 {
				recips = append(recips, h)
			}
			if err != nil {
				break
			}
		}
		ok := false
		for _, h := range recips {
			if strings.Contains(h.Get("Final-Recipient"), rcpt) {
				ok = true
				if h.Get("Action") != "failed" || h.Get("Status") != status || h.Get("Diagnostic-Code") == "" {
					t.Errorf("DSN fields for %s: Action %q Status %q Diagnostic-Code %q", rcpt, h.Get("Action"), h.Get("Status"), h.Get("Diagnostic-Code"))
				}
			}
		}
		if !ok {
			t.Errorf("DSN has no Final-Recipient %s: %v", rcpt, recips)
		}
	}
	if !found {
		t.Fatal("DSN has no message/delivery-status part")
	}
}

func TestRetryAfter4xxThenDelivered(t *testing.T) {
	port := sharedPort(t, "127.0.0.3")
	f := newFakeMX(t, fmt.Sprintf("127.0.0.3:%d", port), func(rcpt string, n int) string {
		if n == 1 {
			return "451 4.3.0 try again later"
		}
		return "250 2.1.5 ok"
	})
	a := worldA(t, port, dnstest.Zone{"c.example": {MX: mxs("mx.c.example")}, "mx.c.example": {A: []string{"127.0.0.3"}}}, "1h")
	sendFromA(t, a, "retry me", "u@c.example")
	a.waitLog(`rcpt=u@c.example status=deferred`, 1)
	a.waitLog(`msg="remote delivery" .*rcpt=u@c.example status=delivered`, 1)
	if n := f.count("u@c.example"); n != 1 {
		t.Fatalf("delivered %d times, want 1", n)
	}
}

func TestMixedOutcomesEachRecipientOnce(t *testing.T) {
	port := sharedPort(t, "127.0.0.3")
	f := newFakeMX(t, fmt.Sprintf("127.0.0.3:%d", port), func(rcpt string, n int) string {
		switch {
		case strings.HasPrefix(rcpt, "ok@"):
			return "250 2.1.5 ok"
		case strings.HasPrefix(rcpt, "later@") && n == 1:
			return "452 4.2.2 mailbox full for now"
		case strings.HasPrefix(rcpt, "later@"):
			return "250 2.1.5 ok"
		}
		return "550 5.1.1 no such user here"
	})
	a := worldA(t, port, dnstest.Zone{"c.example": {MX: mxs("mx.c.example")}, "mx.c.example": {A: []string{"127.0.0.3"}}}, "1h")
	sendFromA(t, a, "mixed", "ok@c.example", "later@c.example", "gone@c.example")
	a.waitLog(`msg="remote delivery" .*rcpt=later@c.example status=delivered`, 1)
	a.waitLog(`msg=delivered .*mailbox=sender@a.example`, 1) // the DSN for gone@
	a.waitLog(`queue: message done`, 2)                      // the message and its DSN
	if f.count("ok@c.example") != 1 || f.count("later@c.example") != 1 || f.count("gone@c.example") != 0 {
		t.Fatalf("deliveries: ok %d, later %d, gone %d; want 1, 1, 0", f.count("ok@c.example"), f.count("later@c.example"), f.count("gone@c.example"))
	}
	f.mu.Lock()
	asked := f.asked["ok@c.example"]
	f.mu.Unlock()
	if asked != 1 {
		t.Fatalf("ok@ was asked %d times: a done recipient was retried", asked)
	}
	b := bounces(t, a)
	if len(b) != 1 {
		t.Fatalf("%d DSNs, want exactly 1", len(b))
	}
	checkDSN(t, b[0], "gone@c.example", "5.1.1")
	if strings.Contains(b[0], "Final-Recipient: rfc822; ok@") || strings.Contains(b[0], "Final-Recipient: rfc822; later@") {
		t.Fatalf("DSN reports delivered recipients:\n%s", b[0])
	}
}

func TestNullMXBouncesAtOnce(t *testing.T) {
	port := sharedPort(t, "127.0.0.3")
	a := worldA(t, port, dnstest.Zone{"nomail.example": {MX: []*net.MX{{Host: ".", Pref: 0}}}}, "1h")
	sendFromA(t, a, "to null mx", "x@nomail.example")
	a.waitLog(`msg=delivered .*mailbox=sender@a.example`, 1)
	checkDSN(t, bounces(t, a)[0], "x@nomail.example", "5.1.10")
}

func TestUnreachableDeferredThenBouncedAtLifetime(t *testing.T) {
	port := sharedPort(t, "127.0.0.4")
	// Nothing listens on 127.0.0.4: connections are refused.
	a := worldA(t, port, dnstest.Zone{"down.example": {MX: mxs("mx.down.example")}, "mx.down.example": {A: []string{"127.0.0.4"}}}, "4s")
	sendFromA(t, a, "to a dead host", "x@down.example")
	a.waitLog(`rcpt=x@down.example status=deferred`, 1)
	a.waitLog(`msg=delivered .*mailbox=sender@a.example`, 1)
	b := bounces(t, a)
	if len(b) != 1 {
		t.Fatalf("%d DSNs, want 1", len(b))
	}
	if !strings.Contains(b[0], "Status: 4.4.1") && !strings.Contains(b[0], "Status: 4.4.7") {
		t.Errorf("expiry DSN should keep the temporary status of the last error:\n%s", b[0])
	}
}
