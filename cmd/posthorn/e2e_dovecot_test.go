package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/posthorn/posthorn/internal/testutil"
)

// A domain delivered over LMTP to a real Dovecot: mail received on port
// 25 ends up in Dovecot's Maildir, and an address Dovecot does not know
// is refused.
func TestLMTPDeliveryToDovecot(t *testing.T) {
	dc := testutil.StartDovecot(t, "carol@dove.example")
	extra := "[[domain]]\nname = \"dove.example\"\ndelivery = \"lmtp:unix:" + dc.Socket + "\"\nmailboxes = [\"carol\"]\n"
	d := startDaemon(t, t.TempDir(), extra)
	c := testutil.Dial(t, d.addrs["smtp"])
	c.ExpectCmd("EHLO client.example.org", 250, "")
	c.ExpectCmd("MAIL FROM:<sender@example.org>", 250, "")
	c.ExpectCmd("RCPT TO:<carol@dove.example>", 250, "")
	c.ExpectCmd("DATA", 354, "")
	c.ExpectCmd("From: sender@example.org\r\nSubject: to dovecot\r\n\r\nHello Dovecot.\r\n..dot\r\n.", 250, "")
	d.waitLog(`msg=delivered .*mailbox=carol@dove.example agent=lmtp:unix:`, 1)
	files, _ := filepath.Glob(filepath.Join(dc.MailDir, "dove.example", "carol", "new", "*"))
	if len(files) != 1 {
		t.Fatalf("%d messages in Dovecot's Maildir, want 1\n%s", len(files), dc.Log())
	}
	got := strings.ReplaceAll(readFile(t, files[0]), "\r\n", "\n")
	for _, want := range []string{"Return-Path: <sender@example.org>\n", "Delivered-To: carol@dove.example\n", "by mx.example.test (posthorn)", "Subject: to dovecot\n\nHello Dovecot.\n.dot\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("Dovecot's copy lacks %q:\n%s", want, got)
		}
	}
}

// A message to several Dovecot users, one of them also through an alias
// of both, reaches each mailbox exactly once, in one LMTP transaction.
func TestLMTPSeveralRecipientsToDovecot(t *testing.T) {
	dc := testutil.StartDovecot(t, "carol@dove.example", "dave@dove.example")
	extra := "[[domain]]\nname = \"dove.example\"\ndelivery = \"lmtp:unix:" + dc.Socket + "\"\nmailboxes = [\"carol\", \"dave\"]\n"
	d := startDaemon(t, t.TempDir(), extra)
	cfg := strings.Replace(readFile(t, d.config), "[aliases]\n", "[aliases]\n\"both@dove.example\" = [\"carol@dove.example\", \"dave@dove.example\"]\n", 1)
	d.cmd.Process.Kill()
	<-d.exited
	d = startWithConfig(t, d.dir, cfg, d.dns)
	c := testutil.Dial(t, d.addrs["smtp"])
	c.ExpectCmd("EHLO client.example.org", 250, "")
	c.ExpectCmd("MAIL FROM:<sender@example.org>", 250, "")
	c.ExpectCmd("RCPT TO:<carol@dove.example>", 250, "")
	c.ExpectCmd("RCPT TO:<both@dove.example>", 250, "")
	c.ExpectCmd("DATA", 354, "")
	c.ExpectCmd("From: sender@example.org\r\nSubject: to two\r\n\r\nHello both.\r\n.", 250, "")
	d.waitLog(`queue: message done`, 1)
	for _, user := range []string{"carol", "dave"} {
		files, _ := filepath.Glob(filepath.Join(dc.MailDir, "dove.example", user, "new", "*"))
		if len(files) != 1 {
			t.Errorf("%s has %d copies, want 1\n%s", user, len(files), dc.Log())
		}
	}
	if n := strings.Count(d.logText(), `msg="lmtp delivery"`); n != 2 {
		t.Errorf("%d LMTP recipient lines, want 2 (one transaction, carol and dave once each)", n)
	}
}
