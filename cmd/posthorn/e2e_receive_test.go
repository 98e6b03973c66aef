package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	gosmtp "github.com/emersion/go-smtp"

	"github.com/posthorn/posthorn/internal/testutil"
)

const testBody = "From: Sender <sender@example.org>\r\nTo: bob@example.test\r\nSubject: byte exact\r\nMessage-ID: <1@example.org>\r\n\r\nLine one.\r\n..starts with a dot\r\n\r\n  trailing spaces  \r\n\tand a tab\r\n"

func TestPort25MessageLandsInMaildirByteExact(t *testing.T) {
	d := startDaemon(t, t.TempDir(), "")
	c := testutil.Dial(t, d.addrs["smtp"])
	c.ExpectCmd("EHLO client.example.org", 250, "")
	c.ExpectCmd("MAIL FROM:<sender@example.org>", 250, "2.1.0")
	c.ExpectCmd("RCPT TO:<bob@example.test>", 250, "2.1.5")
	c.ExpectCmd("DATA", 354, "")
	r := c.ExpectCmd(testBody+".", 250, "2.0.0")
	id := strings.TrimPrefix(r.Text(), "Ok: queued as ")
	c.ExpectCmd("QUIT", 221, "")
	d.waitLog(`msg=delivered id=`+id+` .*mailbox=bob@example.test`, 1)

	msgs := maildirFiles(t, filepath.Join(d.dir, "data", "mail", "example.test", "bob"))
	if len(msgs) != 1 {
		t.Fatalf("%d messages in the Maildir, want 1", len(msgs))
	}
	got := msgs[0]
	wantPrefix := "Return-Path: <sender@example.org>\r\nDelivered-To: bob@example.test\r\nReceived: from client.example.org ([127.0.0.1])\r\n\tby mx.example.test (posthorn) with ESMTP id " + id
	if !strings.HasPrefix(got, wantPrefix) {
		t.Fatalf("prepended headers wrong:\n%s", got)
	}
	// After our three header fields comes the message exactly as sent
	// (dot-unstuffed).
	i := strings.Index(got, "\r\nFrom: Sender")
	if i < 0 || got[i+2:] != strings.Replace(testBody, "\r\n..starts", "\r\n.starts", 1) {
		t.Fatalf("body not byte-exact:\n%q", got)
	}
}

func TestAliasesSubaddressesAndPostmaster(t *testing.T) {
	d := startDaemon(t, t.TempDir(), "")
	c := testutil.Dial(t, d.addrs["smtp"])
	c.ExpectCmd("EHLO client.example.org", 250, "")
	c.ExpectCmd("MAIL FROM:<sender@example.org>", 250, "")
	c.ExpectCmd("RCPT TO:<team@example.test>", 250, "")
	c.ExpectCmd("RCPT TO:<bob+lists@example.test>", 250, "")
	c.ExpectCmd("RCPT TO:<Postmaster>", 250, "")
	c.ExpectCmd("RCPT TO:<nobody@example.test>", 550, "5.1.1")
	c.ExpectCmd("RCPT TO:<friend@elsewhere.example>", 550, "5.7.1")
	c.ExpectCmd("DATA", 354, "")
	c.ExpectCmd("Subject: to many\r\n\r\nhi\r\n.", 250, "")
	d.waitLog(`msg=delivered .*mailbox=carol@localhost`, 1)
	// bob is reached three ways (alias, subaddress, postmaster): all three
	// recipients are delivered, and his Maildir gets one copy, as with
	// Postfix local(8)'s duplicate filter.
	d.waitLog(`msg=delivered .*mailbox=bob@example.test`, 3)
	if n := len(maildirFiles(t, filepath.Join(d.dir, "data", "mail", "example.test", "bob"))); n != 1 {
		t.Fatalf("bob has %d messages, want 1 (alias, subaddress and postmaster are one mailbox)", n)
	}
	if n := strings.Count(d.logText(), "mailbox=bob@example.test agent=maildir duplicate=true"); n != 2 {
		t.Fatalf("%d duplicate deliveries logged, want 2", n)
	}
	if n := len(maildirFiles(t, filepath.Join(d.dir, "data", "mail", "localhost", "carol"))); n != 1 {
		t.Fatalf("carol has %d messages, want 1", n)
	}
}

// dataDirCA returns a client TLS config trusting the self-signed
// certificate posthorn made in its data directory, for the name in it.
func dataDirCA(t *testing.T, d *daemon) *tls.Config {
	t.Helper()
	pems, _ := filepath.Glob(filepath.Join(d.dir, "data", "tls", "*cert.pem"))
	if len(pems) == 0 {
		t.Fatal("no self-signed certificate in the data dir")
	}
	b, _ := os.ReadFile(pems[0])
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(b)
	name := ""
	if blk, _ := pem.Decode(b); blk != nil {
		if c, err := x509.ParseCertificate(blk.Bytes); err == nil && len(c.DNSNames) > 0 {
			name = c.DNSNames[0]
		}
	}
	return &tls.Config{RootCAs: pool, ServerName: name}
}

// Real third-party client: go-smtp submits over STARTTLS on 587 and over
// implicit TLS on 465, as a user made with `posthorn user add` while the
// daemon runs.
func TestSubmissionWithGoSMTPClient(t *testing.T) {
	dir := t.TempDir()
	d := startDaemon(t, dir, "")
	if out, err := cli(t, "s3cret-pass\n", "user", "add", "-c", d.config, "alice@example.test"); err != nil {
		t.Fatalf("user add: %v\n%s", err, out)
	}
	cfg := dataDirCA(t, d)

	c, err := gosmtp.DialStartTLS(d.addrs["submission"], cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Auth(sasl.NewPlainClient("", "alice@example.test", "wrong")); err == nil || !strings.Contains(err.Error(), "535") {
		t.Fatalf("wrong password: %v", err)
	}
	if err := c.Auth(sasl.NewPlainClient("", "alice@example.test", "s3cret-pass")); err != nil {
		t.Fatalf("AUTH PLAIN: %v", err)
	}
	if err := c.SendMail("alice@example.test", []string{"bob@example.test", "friend@elsewhere.example"}, strings.NewReader("Subject: via 587\r\n\r\nhello\r\n")); err != nil {
		t.Fatalf("send on 587: %v", err)
	}
	c.Quit()

	c, err = gosmtp.DialTLS(d.addrs["submissions"], cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Auth(sasl.NewLoginClient("alice@example.test", "s3cret-pass")); err != nil {
		t.Fatalf("AUTH LOGIN on 465: %v", err)
	}
	if err := c.SendMail("alice@example.test", []string{"bob@example.test"}, strings.NewReader("Subject: via 465\r\n\r\nhello\r\n")); err != nil {
		t.Fatalf("send on 465: %v", err)
	}
	c.Quit()

	d.waitLog(`msg=delivered .*mailbox=bob@example.test`, 2)
	msgs := maildirFiles(t, filepath.Join(dir, "data", "mail", "example.test", "bob"))
	joined := strings.Join(msgs, "\n")
	for _, want := range []string{"with ESMTPSA id", "Subject: via 587", "Subject: via 465", "version=TLS1.3"} {
		if !strings.Contains(joined, want) {
			t.Errorf("delivered mail lacks %q:\n%s", want, joined)
		}
	}
	// The remote domain does not exist (the test DNS has no such name):
	// alice gets a bounce.
	d.waitLog(`rcpt=friend@elsewhere.example status=failed`, 1)
	d.waitLog(`msg=delivered .*mailbox=alice@example.test`, 1)
	bounce := strings.Join(maildirFiles(t, filepath.Join(dir, "data", "mail", "example.test", "alice")), "")
	for _, want := range []string{"Content-Type: multipart/report; report-type=delivery-status", "Final-Recipient: rfc822; friend@elsewhere.example", "Action: failed", "Status: 5.1.2"} {
		if !strings.Contains(bounce, want) {
			t.Errorf("bounce lacks %q:\n%s", want, bounce)
		}
	}
	if strings.Contains(d.logText(), "s3cret-pass") {
		t.Fatal("the password appears in the log")
	}
}

// Crash safety: 20 clients send concurrently, posthorn is SIGKILLed in the
// middle, restarted, and every message that got a 250 must end up in a
// Maildir.
func TestEveryAcknowledgedMessageSurvivesSIGKILL(t *testing.T) {
	dir := t.TempDir()
	d := startDaemon(t, dir, "")
	const clients, perClient = 20, 40
	var (
		mu    sync.Mutex
		acked []string
		wg    sync.WaitGroup
	)
	enough := make(chan struct{})
	var once sync.Once
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for j := 0; j < perClient; j++ {
				token := fmt.Sprintf("tok-%d-%d", i, j)
				c, err := gosmtp.Dial(d.addrs["smtp"])
				if err != nil {
					return // the daemon is gone
				}
				err = c.SendMail("load@example.org", []string{fmt.Sprintf("u%d@localhost", i%5)}, strings.NewReader("Subject: "+token+"\r\n\r\n"+token+"\r\n"))
				c.Close()
				if err != nil {
					return
				}
				mu.Lock()
				acked = append(acked, token)
				if len(acked) >= 150 {
					once.Do(func() { close(enough) })
				}
				mu.Unlock()
			}
		}(i)
	}
	select {
	case <-enough:
	case <-time.After(120 * time.Second):
		t.Fatal("load did not reach 150 messages")
	}
	d.kill()
	wg.Wait()
	mu.Lock()
	want := append([]string(nil), acked...)
	mu.Unlock()
	t.Logf("%d messages acknowledged before SIGKILL", len(want))

	startDaemon(t, dir, "") // restart: the queue resumes from the spool
	deadline := time.Now().Add(90 * time.Second)
	for {
		var all strings.Builder
		for u := 0; u < 5; u++ {
			for _, m := range maildirFiles(t, filepath.Join(dir, "data", "mail", "localhost", fmt.Sprintf("u%d", u))) {
				all.WriteString(m)
			}
		}
		var missing []string
		text := all.String()
		for _, tok := range want {
			if !strings.Contains(text, "Subject: "+tok+"\r\n") {
				missing = append(missing, tok)
			}
		}
		if len(missing) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d acknowledged messages lost, e.g. %v", len(missing), len(want), missing[:min(5, len(missing))])
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestSIGTERMDrainsSessionInProgress(t *testing.T) {
	dir := t.TempDir()
	d := startDaemon(t, dir, "")
	c := testutil.Dial(t, d.addrs["smtp"])
	c.ExpectCmd("EHLO client.example.org", 250, "")
	c.ExpectCmd("MAIL FROM:<sender@example.org>", 250, "")
	c.ExpectCmd("RCPT TO:<bob@example.test>", 250, "")
	c.ExpectCmd("DATA", 354, "")
	c.Send("Subject: drain\r\n\r\n")
	d.cmd.Process.Signal(syscall.SIGTERM)
	d.waitLog(`shutting down`, 1)
	c.ExpectCmd("still here\r\n.", 250, "2.0.0")
	c.Expect(421)
	select {
	case err := <-d.exited:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, d.logText())
		}
	case <-time.After(60 * time.Second):
		t.Fatal("posthorn did not exit after SIGTERM")
	}
	// Delivered before exit, or delivered after the next start.
	startDaemon(t, dir, "")
	deadline := time.Now().Add(60 * time.Second)
	for len(maildirFiles(t, filepath.Join(dir, "data", "mail", "example.test", "bob"))) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("drained message never delivered")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestBadConfigFailsWithFileAndLine(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "bad.toml")
	os.WriteFile(cfg, []byte("hostname = \"mx.example.test\"\n\n[limits]\nmessage_size = \"lots\"\n"), 0o600)
	out, err := cli(t, "", "check-config", "-c", cfg)
	if err == nil {
		t.Fatalf("check-config accepted a bad file: %s", out)
	}
	if !strings.Contains(out, "bad.toml:4") || !strings.Contains(out, "message_size") {
		t.Fatalf("error does not name file:line and key: %q", out)
	}
	out, err = cli(t, "", "serve", "-c", cfg)
	if err == nil || !strings.Contains(out, "bad.toml:4") {
		t.Fatalf("serve started on a bad config or did not say where: %v %q", err, out)
	}
}
