package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/posthorn/posthorn/internal/dns/dnstest"
	"github.com/posthorn/posthorn/internal/smtp"
	"github.com/posthorn/posthorn/internal/testutil"
)

// The known-attack regression suite: one test per published class of
// attack on MTAs, each driving a real session against the real daemon.

// sharedFile finds a file of ../shared (the conformance data), next to
// the repository or where POSTHORN_SHARED says.
func sharedFile(t *testing.T, rel string) []byte {
	t.Helper()
	dirs := []string{filepath.Join("..", "..", "..", "shared")}
	if d := os.Getenv("POSTHORN_SHARED"); d != "" {
		dirs = append(dirs, d)
	}
	for _, d := range dirs {
		if b, err := os.ReadFile(filepath.Join(d, rel)); err == nil {
			return b
		}
	}
	t.Skipf("conformance data %s not found (set POSTHORN_SHARED to the shared directory)", rel)
	return nil
}

// eodSequences returns the distinct fake end-of-data sequences of
// eod-sequences.yml, with where each comes from.
func eodSequences(t *testing.T, section string) []string {
	t.Helper()
	raw := string(sharedFile(t, "conformance/smtp-smuggling/eod-sequences.yml"))
	var seqs []string
	seen := map[string]bool{}
	cur := ""
	for _, line := range strings.Split(raw, "\n") {
		if m := regexp.MustCompile(`^([a-z_]+):`).FindStringSubmatch(line); m != nil {
			cur = m[1]
		}
		m := regexp.MustCompile(`hex: "([0-9a-f]+)"`).FindStringSubmatch(line)
		if m == nil || section != "" && cur != section {
			continue
		}
		var b []byte
		for i := 0; i+1 < len(m[1]); i += 2 {
			v, _ := strconv.ParseUint(m[1][i:i+2], 16, 8)
			b = append(b, byte(v))
		}
		if !seen[string(b)] {
			seen[string(b)] = true
			seqs = append(seqs, string(b))
		}
	}
	if len(seqs) < 5 {
		t.Fatalf("found only %d sequences in section %q", len(seqs), section)
	}
	return seqs
}

// readReplies reads replies until the connection closes or a bound.
func readReplies(c net.Conn, br *bufio.Reader) []smtp.Reply {
	var out []smtp.Reply
	c.SetReadDeadline(time.Now().Add(15 * time.Second))
	for {
		r, err := smtp.ReadReply(br)
		if err != nil {
			return out
		}
		out = append(out, r)
	}
}

// headerSection returns the header of a stored message.
func headerSection(m string) string {
	h, _, _ := strings.Cut(m, "\r\n\r\n")
	return h
}

// CVE-2023-51764/51765/51766: every fake end-of-data sequence of the
// published scanners, followed by a smuggled second message in lower-case
// commands pipelined in the same write, as SEC Consult's scanner sends
// them. posthorn refuses the message (bare CR/LF) or keeps the sequence as
// content; a second message never comes out of it.
func TestAttackSMTPSmugglingInbound(t *testing.T) {
	d := startDaemon(t, t.TempDir(), "")
	seqs := eodSequences(t, "")
	accepted := 0
	for i, seq := range seqs {
		c, err := net.Dial("tcp", d.addrs["smtp"])
		if err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(c)
		c.SetDeadline(time.Now().Add(30 * time.Second))
		smtp.ReadReply(br)
		for _, cmd := range []string{"EHLO check.smtpsmuggling.example", "MAIL FROM:<test@check.smtpsmuggling.example>", "RCPT TO:<bob@example.test>", "DATA"} {
			io.WriteString(c, cmd+"\r\n")
			if r, err := smtp.ReadReply(br); err != nil || r.Code >= 400 {
				t.Fatalf("%q: %s: %v %v", seq, cmd, r.Error(), err)
			}
		}
		q := strconv.Quote(seq)
		io.WriteString(c, "From: test@check.smtpsmuggling.example\r\nTo: bob@example.test\r\nSubject: CHECK EMAIL ("+q+")\r\n"+
			"Message-ID: <check"+strconv.Itoa(i)+"@check.smtpsmuggling.example>\r\n\r\nTESTING "+q+" as \"fake\" end-of-data sequence!\r\n"+
			seq+"\r\n"+
			"mail FROM:<smuggled@check.smtpsmuggling.example>\r\nrcpt TO:<bob@example.test>\r\ndata\r\n"+
			"From: smuggled@check.smtpsmuggling.example\r\nTo: bob@example.test\r\nSubject: SMUGGLED EMAIL ("+q+")\r\n\r\n"+
			"SMUGGLING WORKS with "+q+" as \"fake\" end-of-data sequence!\r\n.\r\nQUIT\r\n")
		replies := readReplies(c, br)
		c.Close()
		// One reply to the end of data, one to QUIT: nothing in between.
		if len(replies) != 2 || replies[1].Code != 221 {
			t.Fatalf("%q: replies %v: the smuggled commands were answered", seq, replies)
		}
		switch r := replies[0]; {
		case r.Code == 250:
			accepted++
		case r.Code == 550 && r.Enhanced == "5.6.11":
		default:
			t.Fatalf("%q: end of data answered %q", seq, r.Error())
		}
		t.Logf("%-22q %s", seq, replies[0].Error())
	}

	// smtpsmug's test_pipelining: a second complete message written after
	// the first's CRLF.CRLF without waiting: two messages, neither inside
	// the other.
	c := testutil.Dial(t, d.addrs["smtp"])
	c.ExpectCmd("EHLO example.org", 250, "")
	c.Send("MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n")
	for _, code := range []int{250, 250, 354} {
		c.Expect(code)
	}
	c.Send("Subject: Hello World 1\r\n\r\nThis is mail 1/2 to test pipelining\r\n.\r\n" +
		"MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n" +
		"Subject: Hello World 2\r\n\r\nThis is mail 2/2 to test pipelining\r\n.\r\n")
	for _, code := range []int{250, 250, 250, 354, 250} {
		c.Expect(code)
	}
	accepted += 2

	d.waitLog(`msg=delivered .*mailbox=bob@example.test`, accepted)
	msgs := maildirFiles(t, filepath.Join(d.dir, "data", "mail", "example.test", "bob"))
	if len(msgs) != accepted {
		t.Fatalf("%d messages stored, %d acknowledged", len(msgs), accepted)
	}
	for _, m := range msgs {
		h := headerSection(m)
		if strings.Contains(h, "smuggled@") || strings.Contains(h, "SMUGGLED") {
			t.Fatalf("a smuggled message was stored as a message of its own:\n%s", m)
		}
		if strings.Contains(m, "mail 1/2") && strings.Contains(m, "mail 2/2") {
			t.Fatalf("pipelined messages merged:\n%s", m)
		}
	}
	if strings.Contains(d.logText(), "from=smuggled@") {
		t.Fatal("the daemon logged a transaction from the smuggled sender")
	}
	t.Logf("%d sequences: %d kept as content, %d refused; pipelined pair stored as 2", len(seqs), accepted-2, len(seqs)-(accepted-2))
}

// rawMX is a receiving server that keeps the exact octets of each DATA
// transfer, and can inject replies after STARTTLS (CVE-2021-38371).
type rawMX struct {
	t      *testing.T
	ln     net.Listener
	inject string           // sent right after "220" to STARTTLS, before the handshake
	cert   *tls.Certificate // STARTTLS offered when set

	mu      sync.Mutex
	raw     [][]byte
	inTLS   []bool // whether each transfer came inside TLS
	starttl int
}

func newRawMX(t *testing.T, addr string) *rawMX {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	m := &rawMX{t: t, ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go m.serve(c)
		}
	}()
	return m
}

func (m *rawMX) serve(c net.Conn) {
	defer func() { c.Close() }()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	br := bufio.NewReader(c)
	io.WriteString(c, "220 raw.example ESMTP\r\n")
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		verb := strings.ToUpper(strings.Fields(line + " x")[0])
		switch verb {
		case "EHLO":
			ext := "250-raw.example\r\n250-PIPELINING\r\n250-8BITMIME\r\n"
			if m.cert != nil {
				if _, ok := c.(*tls.Conn); !ok {
					ext += "250-STARTTLS\r\n"
				}
			}
			io.WriteString(c, ext+"250 ENHANCEDSTATUSCODES\r\n")
		case "STARTTLS":
			m.mu.Lock()
			m.starttl++
			m.mu.Unlock()
			io.WriteString(c, "220 2.0.0 go ahead\r\n"+m.inject)
			tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{*m.cert}})
			if err := tc.Handshake(); err != nil {
				return
			}
			c = tc
			br = bufio.NewReader(tc)
		case "DATA":
			io.WriteString(c, "354 go on\r\n")
			var raw []byte
			for !bytes.HasSuffix(raw, []byte("\r\n.\r\n")) && !bytes.Equal(raw, []byte(".\r\n")) {
				b, err := br.ReadByte()
				if err != nil {
					return
				}
				raw = append(raw, b)
			}
			m.mu.Lock()
			m.raw = append(m.raw, raw)
			_, isTLS := c.(*tls.Conn)
			m.inTLS = append(m.inTLS, isTLS)
			m.mu.Unlock()
			io.WriteString(c, "250 2.0.0 stored\r\n")
		case "QUIT":
			io.WriteString(c, "221 2.0.0 bye\r\n")
			return
		default: // MAIL, RCPT, RSET, NOOP
			io.WriteString(c, "250 2.0.0 ok\r\n")
		}
	}
}

func (m *rawMX) transfers() [][]byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([][]byte(nil), m.raw...)
}

// checkWire fails unless raw is a clean DATA transfer: CRLF line endings
// only, every line starting with a dot stuffed, and the end of data only
// at the end.
func checkWire(t *testing.T, raw []byte) {
	t.Helper()
	for i, b := range raw {
		if b == '\r' && (i+1 >= len(raw) || raw[i+1] != '\n') {
			t.Fatalf("bare CR at %d in what posthorn sent: %q", i, raw)
		}
		if b == '\n' && (i == 0 || raw[i-1] != '\r') {
			t.Fatalf("bare LF at %d in what posthorn sent: %q", i, raw)
		}
	}
	lines := strings.Split(strings.TrimSuffix(string(raw), "\r\n"), "\r\n")
	for i, l := range lines[:len(lines)-1] {
		if strings.HasPrefix(l, ".") && !strings.HasPrefix(l, "..") {
			t.Fatalf("line %d %q starts with an unstuffed dot: %q", i, l, raw)
		}
	}
	if lines[len(lines)-1] != "." {
		t.Fatalf("transfer does not end in CRLF.CRLF: %q", raw)
	}
}

// The outbound half of SMTP smuggling: whatever a message holds (the
// outbound sequences of SEC Consult's scanner, sent in by sendmail with
// bare CR and LF, and dotted lines through port 25), posthorn relays it
// with CRLF line endings and stuffed dots only.
func TestAttackSMTPSmugglingOutbound(t *testing.T) {
	port := sharedPort(t, "127.0.0.3")
	mx := newRawMX(t, fmt.Sprintf("127.0.0.3:%d", port))
	a := worldA(t, port, dnstest.Zone{"c.example": {MX: mxs("mx.c.example")}, "mx.c.example": {A: []string{"127.0.0.3"}}}, "1h")
	seqs := eodSequences(t, "secconsult_outbound")
	for i, seq := range seqs {
		id := fmt.Sprintf("SMUG%d", i)
		msg := "From: sender@a.example\r\nTo: u@c.example\r\nSubject: " + id + "\r\n\r\nTESTING " + strconv.Quote(seq) + "\r\n" + id + "START\r\n" + seq + "\r\n" + id + "END\r\n"
		if out, err := cli(t, msg, "sendmail", "-C", a.config, "-oi", "-f", "sender@a.example", "u@c.example"); err != nil {
			t.Fatalf("sendmail: %v\n%s", err, out)
		}
	}
	// Through port 25: a lone dot, dots at line starts, NUL around a dot.
	c := testutil.Dial(t, a.addrs["smtp"])
	c.ExpectCmd("EHLO app.a.example", 250, "")
	c.ExpectCmd("MAIL FROM:<sender@a.example>", 250, "")
	c.ExpectCmd("RCPT TO:<u@c.example>", 250, "")
	c.ExpectCmd("DATA", 354, "")
	c.ExpectCmd("Subject: dots\r\n\r\n..\r\n...\r\n..x\r\n\x00.\r\n.\x00\r\nmail from:<x@y>\r\n.", 250, "")
	c.ExpectCmd("QUIT", 221, "")

	want := len(seqs) + 1
	waitFor(t, fmt.Sprintf("%d transfers at the recording MX", want), func() bool { return len(mx.transfers()) >= want })
	for _, raw := range mx.transfers() {
		checkWire(t, raw)
	}
	for _, raw := range mx.transfers() {
		if bytes.Contains(raw, []byte("Subject: dots")) && !bytes.Contains(raw, []byte("\r\n..\r\n...\r\n..x\r\n\x00.\r\n\x00\r\n")) {
			t.Fatalf("dotted lines not stuffed as expected: %q", raw)
		}
	}
	t.Logf("%d transfers relayed, all CRLF-only and dot-stuffed", want)
}

// CVE-2011-0411: commands pipelined after STARTTLS in clear text are
// never executed inside the TLS session.
func TestAttackSTARTTLSCommandInjectionServer(t *testing.T) {
	d := startDaemon(t, t.TempDir(), "")
	c := testutil.Dial(t, d.addrs["smtp"])
	c.ExpectCmd("EHLO client.example.org", 250, "")
	c.Send("STARTTLS\r\nMAIL FROM:<injected@example.org>\r\nRSET\r\n")
	c.Expect(220)
	tc := tls.Client(c.Conn, dataDirCA(t, d))
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	c.Conn, c.BR = tc, bufio.NewReader(tc)
	r := c.ExpectCmd("EHLO client.example.org", 250, "")
	if !strings.Contains(strings.Join(r.Lines, " "), "greets") {
		t.Fatalf("first reply inside TLS is not EHLO's but %q: an injected command was run", r.Error())
	}
	c.ExpectCmd("RCPT TO:<bob@example.test>", 503, "5.5.1") // no MAIL was carried over
	d.waitLog(`discarding data pipelined after STARTTLS`, 1)
}

// CVE-2021-38371: a server (or a man in the middle) that sends replies
// after its 220 to STARTTLS, before the handshake, must not have them read
// inside TLS. posthorn gives the connection up; the message is deferred
// (or, TLS being opportunistic here, sent again in clear text), never
// bounced with the injected reply.
func TestAttackSTARTTLSResponseInjectionClient(t *testing.T) {
	port := sharedPort(t, "127.0.0.3")
	mx := newRawMX(t, fmt.Sprintf("127.0.0.3:%d", port))
	cert := testutil.NewCert(t)
	mx.cert = &cert.Server
	mx.inject = "250-raw.example\r\n250 AUTH PLAIN\r\n550 5.7.1 injected permanent failure\r\n"
	a := worldA(t, port, dnstest.Zone{"c.example": {MX: mxs("mx.c.example")}, "mx.c.example": {A: []string{"127.0.0.3"}}}, "1h")
	sendFromA(t, a, "injection", "u@c.example")
	a.waitLog(`rcpt=u@c.example status=(deferred|delivered)`, 1)
	logs := a.logText()
	if regexp.MustCompile(`rcpt=u@c.example status=failed`).MatchString(logs) || strings.Contains(strings.Join(bounces(t, a), ""), "injected") {
		t.Fatalf("the injected reply decided the delivery:\n%s", logs)
	}
	mx.mu.Lock()
	for i, inTLS := range mx.inTLS {
		if inTLS {
			t.Fatalf("message delivered inside a TLS session that began with injected replies: %q", mx.raw[i])
		}
	}
	tries, plain := mx.starttl, len(mx.raw)
	mx.mu.Unlock()
	t.Logf("STARTTLS tried %d times; %d delivered in clear text (TLS is opportunistic for this domain, as Postfix's may level)", tries, plain)
	if !strings.Contains(logs, "response injection") {
		t.Errorf("the log does not say why the connection was given up")
	}
}

// Exim "21Nails" class: CR, LF and other control characters smuggled
// through xtext in ESMTP parameters (AUTH=, ENVID=, ORCPT=) never reach
// the spool or a header; the parameters are refused.
func TestAttackParameterInjectionIntoSpool(t *testing.T) {
	d := startDaemon(t, t.TempDir(), "")
	c := testutil.Dial(t, d.addrs["smtp"])
	c.ExpectCmd("EHLO client.example.org", 250, "")
	for _, cmd := range []string{
		"MAIL FROM:<a@example.org> AUTH=<a+0D+0AX-Injected:+20yes@example.org>",
		"MAIL FROM:<a@example.org> ENVID=abc+0D+0AX-Injected:+20yes",
		"MAIL FROM:<a@example.org> ENVID=abc+0AX-Injected:+20yes",
		"MAIL FROM:<a@example.org> ENVID=abc+00def",
		"MAIL FROM:<a@example.org> ENVID=" + strings.Repeat("A", 101),
	} {
		if r := c.Cmd(cmd); r.Code < 500 {
			t.Fatalf("%q: %q", cmd, r.Error())
		}
	}
	if r := c.Cmd("MAIL FROM:<a@example.org> ENVID=abc\rX-Injected: yes"); r.Code != 500 {
		t.Fatalf("bare CR in a command: %q", r.Error())
	}
	c.ExpectCmd("MAIL FROM:<a@example.org> ENVID=good+2Benvid RET=HDRS", 250, "")
	for _, cmd := range []string{
		"RCPT TO:<bob@example.test> ORCPT=rfc822;bob+0D+0AX-Injected:+20yes@example.test",
		"RCPT TO:<bob@example.test> ORCPT=rfc822;bob+0A@example.test",
		"RCPT TO:<bob@example.test> NOTIFY=SUCCESS,FAILURE+0D+0A",
	} {
		if r := c.Cmd(cmd); r.Code < 500 {
			t.Fatalf("%q: %q", cmd, r.Error())
		}
	}
	c.ExpectCmd("RCPT TO:<bob@example.test> ORCPT=rfc822;bob+40example.test NOTIFY=FAILURE", 250, "")
	c.ExpectCmd("DATA", 354, "")
	c.ExpectCmd("Subject: params\r\n\r\nbody\r\n.", 250, "")
	c.ExpectCmd("QUIT", 221, "")
	d.waitLog(`msg=delivered .*mailbox=bob@example.test`, 1)
	filepath.Walk(filepath.Join(d.dir, "data"), func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return nil
		}
		if b, _ := os.ReadFile(p); bytes.Contains(b, []byte("X-Injected")) {
			t.Errorf("%s holds the injected text", p)
		}
		return nil
	})
}

// CVE-2019-16928 class (Exim's EHLO heap overflow): over-long EHLO names,
// command lines and parameters are refused with the right code, and the
// session (and daemon) carry on.
func TestAttackOverlongEHLOAndParameters(t *testing.T) {
	d := startDaemon(t, t.TempDir(), "")
	c := testutil.Dial(t, d.addrs["smtp"])
	c.ExpectCmd("EHLO "+strings.Repeat("a", 20000), 500, "5.5.6")
	c.ExpectCmd("EHLO "+strings.Repeat("b", 64)+".example", 501, "5.5.4") // label over 63
	c.ExpectCmd("EHLO "+strings.Repeat("abcdefgh.", 55)+"example", 501, "5.5.4")
	c.ExpectCmd("EHLO client.example.org", 250, "")
	c.ExpectCmd("MAIL FROM:<"+strings.Repeat("x", 300)+"@example.org>", 501, "")
	c.ExpectCmd("MAIL FROM:<a@example.org> "+strings.Repeat("P", 600)+"=1", 501, "5.5.4")
	c.ExpectCmd("MAIL FROM:<a@example.org> X="+strings.Repeat("P", 3000), 500, "5.5.6") // over 2048 octets
	c.ExpectCmd("MAIL FROM:<a@example.org> AUTH="+strings.Repeat("+41", 150), 250, "")
	c.ExpectCmd("RCPT TO:<bob@example.test> ORCPT=rfc822;"+strings.Repeat("b", 495), 501, "5.5.4")
	c.ExpectCmd("RCPT TO:<bob@example.test> ORCPT=rfc822;"+strings.Repeat("b", 4000), 500, "5.5.6")
	c.ExpectCmd("RCPT TO:<bob@example.test>", 250, "")
	c.ExpectCmd("DATA", 354, "")
	c.ExpectCmd("Subject: still here\r\n\r\n"+strings.Repeat("y", 998)+"\r\n.", 250, "")
	c.ExpectCmd("QUIT", 221, "")
	// A new client is served as ever.
	c2 := testutil.Dial(t, d.addrs["smtp"])
	c2.ExpectCmd("EHLO client.example.org", 250, "")
}

// Exim's BDAT use-after-free class: chunk state never outlives RSET or
// STARTTLS, and a chunk sent outside a transaction is read (the dialog
// stays in sync) but goes nowhere.
func TestAttackBDATStateAcrossSTARTTLSAndRSET(t *testing.T) {
	d := startDaemon(t, t.TempDir(), "")
	c := testutil.Dial(t, d.addrs["smtp"])
	c.ExpectCmd("EHLO client.example.org", 250, "")
	c.ExpectCmd("MAIL FROM:<a@example.org>", 250, "")
	c.ExpectCmd("RCPT TO:<bob@example.test>", 250, "")
	c.Send("BDAT 14\r\nSTALE-CHUNK-1\n")
	c.Expect(250)
	c.ExpectCmd("RSET", 250, "")
	c.Send("BDAT 9 LAST\r\nafter-rst")
	c.Expect(503)
	c.ExpectCmd("NOOP", 250, "") // in sync: the chunk's octets were not read as commands

	c.ExpectCmd("MAIL FROM:<a@example.org>", 250, "")
	c.ExpectCmd("RCPT TO:<bob@example.test>", 250, "")
	c.Send("BDAT 14\r\nSTALE-CHUNK-2\n")
	c.Expect(250)
	c.ExpectCmd("DATA", 503, "5.5.1") // no DATA after BDAT
	c.StartTLS(dataDirCA(t, d))
	c.ExpectCmd("EHLO client.example.org", 250, "")
	c.Send("BDAT 9 LAST\r\nafter-tls")
	c.Expect(503) // the transaction ended with TLS
	c.ExpectCmd("MAIL FROM:<a@example.org>", 250, "")
	c.ExpectCmd("RCPT TO:<bob@example.test>", 250, "")
	c.Send("BDAT 25 LAST\r\nSubject: fresh\r\n\r\nfresh\r\n")
	c.Expect(250)
	c.Send("BDAT 99999999999999999999999\r\n")
	if r := c.Read(); r.Code != 501 || !c.Closed() {
		t.Fatalf("unparseable BDAT size: %q, want 501 and close", r.Error())
	}
	d.waitLog(`msg=delivered .*mailbox=bob@example.test`, 1)
	msgs := maildirFiles(t, filepath.Join(d.dir, "data", "mail", "example.test", "bob"))
	if len(msgs) != 1 || strings.Contains(msgs[0], "STALE") || !strings.Contains(msgs[0], "Subject: fresh") {
		t.Fatalf("stored %d messages: %q", len(msgs), msgs)
	}
}

// ALPACA: HTTP requests sent to port 25 (by a browser or a cross-protocol
// attacker) end the session at the request line; nothing after it is run.
func TestAttackHTTPRequestOnPort25(t *testing.T) {
	d := startDaemon(t, t.TempDir(), "")
	for _, req := range []string{
		"GET / HTTP/1.1\r\nHost: mx.example.test\r\n\r\n",
		"POST /form HTTP/1.1\r\nHost: mx.example.test\r\nContent-Length: 80\r\n\r\nEHLO x.example\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<bob@example.test>\r\n",
	} {
		c, err := net.Dial("tcp", d.addrs["smtp"])
		if err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(c)
		c.SetDeadline(time.Now().Add(15 * time.Second))
		smtp.ReadReply(br)
		io.WriteString(c, req)
		replies := readReplies(c, br)
		c.Close()
		if len(replies) != 1 || replies[0].Code != 554 || replies[0].Enhanced != "5.7.0" {
			t.Fatalf("%q: replies %v, want one 554 5.7.0 and the connection closed", req, replies)
		}
	}
	d.waitLog(`HTTP request on SMTP port; closing`, 2)
}

// OpenSMTPD CVE-2020-7247 class: shell metacharacters in addresses. No
// address ever reaches a shell, and none becomes a path outside the mail
// directory.
func TestAttackShellMetacharactersInAddresses(t *testing.T) {
	dir := t.TempDir()
	d := startDaemon(t, dir, "")
	mark := filepath.Join(dir, "pwned")
	c := testutil.Dial(t, d.addrs["smtp"])
	c.ExpectCmd("EHLO client.example.org", 250, "")
	// The exploit's own sender has no domain and a space: refused.
	if r := c.Cmd("MAIL FROM:<;touch " + mark + ";>"); r.Code < 500 {
		t.Fatalf("exploit sender: %q", r.Error())
	}
	c.Cmd("RSET")
	c.ExpectCmd(`MAIL FROM:<"$(touch${IFS}`+mark+`)`+"`touch${IFS}"+mark+"`"+`"@example.org>`, 250, "")
	accepted := 0
	for _, rcpt := range []string{
		`"|touch${IFS}` + mark + `"@localhost`,
		`"../../../../../../` + strings.TrimPrefix(dir, "/") + `/escaped"@localhost`,
		`"a;touch${IFS}` + mark + `"@localhost`,
		`"$(touch${IFS}` + mark + `)"@localhost`,
		"bob@example.test",
	} {
		r := c.Cmd("RCPT TO:<" + rcpt + ">")
		t.Logf("RCPT %s: %s", rcpt, r.Error())
		if r.Code == 250 {
			accepted++
		}
	}
	c.ExpectCmd("DATA", 354, "")
	c.ExpectCmd("Subject: metacharacters\r\n\r\n$(touch "+mark+")\r\n.", 250, "")
	c.ExpectCmd("QUIT", 221, "")
	d.waitLog(`msg=delivered .*mailbox=bob@example.test`, 1)
	d.waitLog(`queue: message done`, 1)
	if _, err := os.Stat(mark); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("a shell ran a command from an address")
	}
	if _, err := os.Stat(filepath.Join(dir, "escaped")); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("a recipient's local part became a path outside the mail directory")
	}
	ents, _ := os.ReadDir(filepath.Join(dir, "data", "mail", "localhost"))
	for _, e := range ents {
		if strings.ContainsAny(e.Name(), "/") || e.Name() == ".." || e.Name() == "." {
			t.Fatalf("mailbox directory %q", e.Name())
		}
	}
	t.Logf("%d recipients accepted, %d mailbox directories at localhost", accepted, len(ents))
}

// CR, LF and control characters in EHLO names never reach a Received
// header or the log.
func TestAttackControlCharactersInEHLO(t *testing.T) {
	d := startDaemon(t, t.TempDir(), "")
	c := testutil.Dial(t, d.addrs["smtp"])
	for _, name := range []string{"evil.example\rX-Injected: yes", "evil.example\x00X", "evil\x1b[31m.example", "evil.example\tX-Injected:", "evil.example\x7f", "[127.0.0.1]\x0bX"} {
		if r := c.Cmd("EHLO " + name); r.Code < 500 {
			t.Fatalf("EHLO %q: %q", name, r.Error())
		}
	}
	c.ExpectCmd("HELO evil.example.", 250, "")
	c.ExpectCmd("MAIL FROM:<a@example.org>", 250, "")
	c.ExpectCmd("RCPT TO:<bob@example.test>", 250, "")
	c.ExpectCmd("DATA", 354, "")
	c.ExpectCmd("Subject: ehlo\r\n\r\nbody\r\n.", 250, "")
	d.waitLog(`msg=delivered .*mailbox=bob@example.test`, 1)
	msgs := maildirFiles(t, filepath.Join(d.dir, "data", "mail", "example.test", "bob"))
	h := headerSection(msgs[0])
	if strings.Contains(h, "X-Injected") || strings.ContainsAny(strings.ReplaceAll(strings.ReplaceAll(h, "\r\n", ""), "\t", ""), "\x00\x1b\x0b\x7f\r\n") {
		t.Fatalf("control characters or injected fields in the header:\n%q", h)
	}
	if strings.ContainsAny(d.logText(), "\x00\x1b\x0b\x7f\r") {
		t.Fatal("control characters from EHLO reached the log")
	}
}

// fromConn is a scripted client on a chosen loopback source address.
type fromConn struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

// dialFrom connects to addr from a loopback source address and reads the
// greeting.
func dialFrom(t *testing.T, src, addr string) (*fromConn, smtp.Reply) {
	t.Helper()
	dl := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := dl.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(30 * time.Second))
	fc := &fromConn{t: t, c: c, br: bufio.NewReader(c)}
	g, err := smtp.ReadReply(fc.br)
	if err != nil {
		t.Fatalf("greeting from %s: %v", src, err)
	}
	return fc, g
}

func (f *fromConn) Cmd(line string) smtp.Reply {
	f.t.Helper()
	io.WriteString(f.c, line+"\r\n")
	r, err := smtp.ReadReply(f.br)
	if err != nil {
		f.t.Fatalf("%s: %v", line, err)
	}
	return r
}

func (f *fromConn) ExpectCmd(line string, code int, enhanced string) {
	f.t.Helper()
	if r := f.Cmd(line); r.Code != code || enhanced != "" && r.Enhanced != enhanced {
		f.t.Fatalf("%s: got %q, want %d %s", line, r.Error(), code, enhanced)
	}
}

// A client on a DNS block list is refused 554 5.7.1 with the list's
// text, at RCPT or, configured so, instead of the greeting; a client on
// an allow list is exempt.
func TestDNSBLRefusesListedClientWithListText(t *testing.T) {
	dnsSrv := dnstest.NewServer(t, dnstest.Zone{
		"9.0.0.127.bl.example":  {A: []string{"127.0.0.2"}, TXT: []string{"Listed at https://bl.example/lookup?127.0.0.9"}},
		"10.0.0.127.bl.example": {A: []string{"127.0.0.4"}},
		"10.0.0.127.wl.example": {A: []string{"127.0.5.2"}},
		"12.0.0.127.bl.example": {A: []string{"127.0.0.1"}}, // outside the filter
	})
	dir := t.TempDir()
	d := startDaemonDNS(t, dir, "\n[screen]\ndnsbl = [\"bl.example=127.0.0.[2..11]\"]\ndnswl = [\"wl.example\"]\n", dnsSrv)
	needAbuseWiring(t, d)
	for src, want := range map[string]int{"127.0.0.9": 554, "127.0.0.10": 250, "127.0.0.12": 250, "127.0.0.1": 250} {
		c, g := dialFrom(t, src, d.addrs["smtp"])
		if g.Code != 220 {
			t.Fatalf("%s greeted %q with check_at = rcpt", src, g.Error())
		}
		c.ExpectCmd("EHLO client.example.org", 250, "")
		c.ExpectCmd("MAIL FROM:<a@example.org>", 250, "")
		r := c.Cmd("RCPT TO:<bob@example.test>")
		if r.Code != want {
			t.Fatalf("%s: RCPT answered %q, want %d", src, r.Error(), want)
		}
		if want == 554 && (r.Enhanced != "5.7.1" || !strings.Contains(r.Text(), "https://bl.example/lookup?127.0.0.9") || !strings.Contains(r.Text(), "bl.example")) {
			t.Fatalf("refusal does not carry the list's text: %q", r.Error())
		}
		c.Cmd("QUIT")
	}
	d.stop()

	cfg, _ := os.ReadFile(d.config)
	d = startWithConfig(t, dir, strings.Replace(string(cfg), "[screen]\n", "[screen]\ncheck_at = \"connect\"\n", 1), dnsSrv)
	c, g := dialFrom(t, "127.0.0.9", d.addrs["smtp"])
	if g.Code != 554 || g.Enhanced != "5.7.1" || !strings.Contains(g.Text(), "https://bl.example/") {
		t.Fatalf("greeting for a listed client with check_at = connect: %q", g.Error())
	}
	c.ExpectCmd("EHLO client.example.org", 503, "5.7.1")
	c.ExpectCmd("QUIT", 221, "")
	// Submission is never screened.
	if _, g := dialFrom(t, "127.0.0.9", d.addrs["submission"]); g.Code != 220 {
		t.Fatalf("submission greeting for a listed client: %q", g.Error())
	}
}

// Greylisting (off by default): a new (network, sender, recipient) is
// answered 451 4.7.1 until the delay has passed; the triplets survive a
// restart.
func TestGreylistingDefersFirstAttemptAndSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	d := startDaemon(t, dir, "\n[screen]\ngreylisting = true\ngreylist_delay = \"2s\"\n")
	needAbuseWiring(t, d)
	try := func(d *daemon, from string) smtp.Reply {
		c := testutil.Dial(t, d.addrs["smtp"])
		c.ExpectCmd("EHLO client.example.org", 250, "")
		c.ExpectCmd("MAIL FROM:<"+from+">", 250, "")
		r := c.Cmd("RCPT TO:<bob@example.test>")
		c.Cmd("QUIT")
		return r
	}
	if r := try(d, "a@example.org"); r.Code != 451 || r.Enhanced != "4.7.1" || !strings.Contains(r.Text(), "Greylisted") {
		t.Fatalf("first attempt: %q", r.Error())
	}
	if r := try(d, "a@example.org"); r.Code != 451 {
		t.Fatalf("retry before the delay: %q", r.Error())
	}
	if r := try(d, "c@example.org"); r.Code != 451 {
		t.Fatalf("second sender's first attempt: %q", r.Error())
	}
	time.Sleep(2100 * time.Millisecond) // the greylisting delay itself
	if r := try(d, "a@example.org"); r.Code != 250 {
		t.Fatalf("retry after the delay: %q", r.Error())
	}
	d.stop()
	if _, err := os.Stat(filepath.Join(dir, "data", "greylist")); err != nil {
		t.Fatalf("no triplet file: %v", err)
	}
	d = startDaemon(t, dir, "\n[screen]\ngreylisting = true\ngreylist_delay = \"2s\"\n")
	for _, from := range []string{"a@example.org", "c@example.org"} {
		if r := try(d, from); r.Code != 250 {
			t.Fatalf("%s after a restart: %q (its triplet was forgotten)", from, r.Error())
		}
	}
	if r := try(d, "new@example.org"); r.Code != 451 {
		t.Fatalf("new triplet after the restart: %q", r.Error())
	}
}

// Forward-confirmed reverse DNS and strict HELO names, when asked for.
func TestFCrDNSAndStrictHelo(t *testing.T) {
	dnsSrv := dnstest.NewServer(t, dnstest.Zone{
		"127.0.0.1":       {PTR: []string{"mx.good.example."}},
		"mx.good.example": {A: []string{"127.0.0.1"}},
		"127.0.0.13":      {PTR: []string{"liar.example."}},
		"liar.example":    {A: []string{"192.0.2.1"}},
		"127.0.0.14":      {ServFail: true},
	})
	d := startDaemonDNS(t, t.TempDir(), "\n[screen]\nrequire_fcrdns = true\nstrict_helo = true\n", dnsSrv)
	needAbuseWiring(t, d)
	for src, want := range map[string]string{"127.0.0.1": "2.1.5", "127.0.0.13": "5.7.25", "127.0.0.11": "5.7.25", "127.0.0.14": "4.7.25"} {
		c, _ := dialFrom(t, src, d.addrs["smtp"])
		c.ExpectCmd("EHLO localhost", 504, "5.5.2")
		c.ExpectCmd("EHLO ["+src+"]", 250, "")
		c.ExpectCmd("EHLO client.example.org", 250, "")
		c.ExpectCmd("MAIL FROM:<a@example.org>", 250, "")
		if r := c.Cmd("RCPT TO:<bob@example.test>"); r.Enhanced != want {
			t.Fatalf("%s: %q, want %s", src, r.Error(), want)
		}
	}
}

// The abuse limits of [limits] reach the daemon: connection rate and
// recipients per connection.
func TestAbuseLimitsFromConfig(t *testing.T) {
	d := startDaemon(t, t.TempDir(), "\n[limits]\nconnection_rate = 3\nrecipients_per_session = 2\n")
	needAbuseWiring(t, d)
	c := testutil.Dial(t, d.addrs["smtp"])
	c.ExpectCmd("EHLO client.example.org", 250, "")
	c.ExpectCmd("MAIL FROM:<a@example.org>", 250, "")
	c.ExpectCmd("RCPT TO:<bob@example.test>", 250, "")
	c.ExpectCmd("RCPT TO:<carol@localhost>", 250, "")
	c.ExpectCmd("RCPT TO:<dave@localhost>", 452, "4.5.3")
	testutil.Dial(t, d.addrs["smtp"])
	testutil.Dial(t, d.addrs["smtp"])
	_, g := dialFrom(t, "127.0.0.1", d.addrs["smtp"])
	if g.Code != 421 || g.Enhanced != "4.7.0" {
		t.Fatalf("fourth connection in a minute: %q", g.Error())
	}
}

// ALPACA with TLS: a browser's TLS handshake (ALPN http/1.1 or h2) on the
// implicit-TLS port 465 or after STARTTLS on 25 fails with
// no_application_protocol, so a cross-protocol HTTPS request never
// reaches an SMTP session; a client offering "smtp", or no ALPN at all
// (what MTAs and mail clients send), is served as before.
func TestAttackALPACAStrictALPN(t *testing.T) {
	d := startDaemon(t, t.TempDir(), "")
	dialTLS := func(alpn []string) (*tls.Conn, error) {
		return tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", d.addrs["submissions"],
			&tls.Config{InsecureSkipVerify: true, NextProtos: alpn})
	}
	for _, alpn := range [][]string{{"http/1.1"}, {"h2", "http/1.1"}} {
		c, err := dialTLS(alpn)
		if err == nil {
			c.Close()
			t.Fatalf("465 with ALPN %v: handshake succeeded", alpn)
		}
		if !strings.Contains(err.Error(), "no application protocol") {
			t.Fatalf("465 with ALPN %v: %v, want no_application_protocol", alpn, err)
		}
	}
	for _, alpn := range [][]string{nil, {"smtp"}} {
		c, err := dialTLS(alpn)
		if err != nil {
			t.Fatalf("465 with ALPN %v: %v", alpn, err)
		}
		r, err := smtp.ReadReply(bufio.NewReader(c))
		c.Close()
		if err != nil || r.Code != 220 {
			t.Fatalf("465 with ALPN %v: greeting %q %v", alpn, r.Error(), err)
		}
	}

	// STARTTLS on 25: the same handshake fails; the session is over.
	c := testutil.Dial(t, d.addrs["smtp"])
	c.ExpectCmd("EHLO client.example.org", 250, "")
	c.ExpectCmd("STARTTLS", 220, "")
	tc := tls.Client(c.Conn, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err == nil || !strings.Contains(err.Error(), "no application protocol") {
		t.Fatalf("STARTTLS with ALPN http/1.1: %v, want no_application_protocol", err)
	}
}

// A message whose first line is folded (begins with a space or a tab)
// would continue the last header field posthorn puts in front of it: a
// sender could write into our Authentication-Results ("; dkim=pass") or
// Received. Refused 550 5.6.0 on every listener, nothing stored; a
// well-formed message right after it in the same session goes through.
func TestAttackLeadingFoldedLineIntoOurHeaders(t *testing.T) {
	d := startDaemon(t, t.TempDir(), "")
	c := testutil.Dial(t, d.addrs["smtp"])
	c.ExpectCmd("EHLO client.example.org", 250, "")
	for _, first := range []string{" ; dkim=pass header.d=bank.example", "\tdmarc=pass"} {
		c.ExpectCmd("MAIL FROM:<a@example.org>", 250, "")
		c.ExpectCmd("RCPT TO:<bob@example.test>", 250, "")
		c.ExpectCmd("DATA", 354, "")
		r := c.ExpectCmd(first+"\r\nFrom: a@example.org\r\nSubject: forged\r\n\r\nbody\r\n.", 550, "5.6.0")
		if !strings.Contains(r.Text(), "folded line") {
			t.Fatalf("reply %q does not say why", r.Text())
		}
	}
	c.ExpectCmd("MAIL FROM:<a@example.org>", 250, "")
	c.ExpectCmd("RCPT TO:<bob@example.test>", 250, "")
	c.ExpectCmd("DATA", 354, "")
	c.ExpectCmd("From: a@example.org\r\nSubject: fine\r\n\r\nbody\r\n.", 250, "")
	d.waitLog(`queue: message done`, 1)
	msgs := maildirFiles(t, filepath.Join(d.dir, "data", "mail", "example.test", "bob"))
	if len(msgs) != 1 || strings.Contains(msgs[0], "forged") || strings.Contains(msgs[0], "dkim=pass") {
		t.Fatalf("stored %d messages: %q", len(msgs), msgs)
	}
}
