package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/posthorn/posthorn/internal/ctl"
	"github.com/posthorn/posthorn/internal/submission"
)

func TestParseSendmailArgs(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want sendmailArgs
	}{
		{[]string{"bob@example.net"}, sendmailArgs{mode: "m", rcpts: []string{"bob@example.net"}}},
		{[]string{"-t", "-i"}, sendmailArgs{mode: "m", extract: true, ignoreDots: true}},
		{[]string{"-ti"}, sendmailArgs{mode: "m", extract: true, ignoreDots: true}},
		{[]string{"-oi", "-f", "alice@example.org", "bob@example.net"}, sendmailArgs{mode: "m", ignoreDots: true, from: "alice@example.org", rcpts: []string{"bob@example.net"}}},
		{[]string{"-falice@example.org", "bob@example.net"}, sendmailArgs{mode: "m", from: "alice@example.org", rcpts: []string{"bob@example.net"}}},
		{[]string{"-f", "<alice@example.org>", "bob"}, sendmailArgs{mode: "m", from: "alice@example.org", rcpts: []string{"bob"}}},
		{[]string{"-r", "alice@example.org", "bob"}, sendmailArgs{mode: "m", from: "alice@example.org", rcpts: []string{"bob"}}},
		{[]string{"-f", "<>", "bob"}, sendmailArgs{mode: "m", nullSender: true, rcpts: []string{"bob"}}},
		{[]string{"-F", "Cron Daemon", "root"}, sendmailArgs{mode: "m", fullName: "Cron Daemon", rcpts: []string{"root"}}},
		{[]string{"-FCron Daemon", "root"}, sendmailArgs{mode: "m", fullName: "Cron Daemon", rcpts: []string{"root"}}},
		// PHP's mail() appends its extra parameters after the defaults.
		{[]string{"-t", "-i", "-fwebmaster@example.org"}, sendmailArgs{mode: "m", extract: true, ignoreDots: true, from: "webmaster@example.org"}},
		// Options after recipients, as GNU getopt allows.
		{[]string{"bob@example.net", "-oi", "-v"}, sendmailArgs{mode: "m", ignoreDots: true, verbose: true, rcpts: []string{"bob@example.net"}}},
		{[]string{"-t", "extra@example.net"}, sendmailArgs{mode: "m", extract: true, rcpts: []string{"extra@example.net"}}},
		{[]string{"--", "-odd@example.net"}, sendmailArgs{mode: "m", rcpts: []string{"-odd@example.net"}}},
		{[]string{"-oem", "-odb", "-oQ/var/spool", "-O", "DeliveryMode=b", "-bm", "-U", "-m", "-n", "-G", "-B", "8BITMIME", "-N", "never", "-R", "hdrs", "-V", "env1", "-L", "x", "-h", "3", "-X", "/tmp/log", "r"},
			sendmailArgs{mode: "m", rcpts: []string{"r"}}},
		{[]string{"-O", "IgnoreDots=true", "r"}, sendmailArgs{mode: "m", ignoreDots: true, rcpts: []string{"r"}}},
		{[]string{"-C", "/etc/x.toml", "r"}, sendmailArgs{mode: "m", config: "/etc/x.toml", rcpts: []string{"r"}}},
		{[]string{"-bp"}, sendmailArgs{mode: "p"}},
		{[]string{"-q"}, sendmailArgs{mode: "q"}},
		{[]string{"-bi"}, sendmailArgs{mode: "i"}},
		{[]string{"-"}, sendmailArgs{mode: "m", rcpts: []string{"-"}}},
	} {
		got, err := parseSendmailArgs(tc.args)
		if err != nil {
			t.Errorf("%q: %v", tc.args, err)
			continue
		}
		if !reflect.DeepEqual(*got, tc.want) {
			t.Errorf("%q:\n got %+v\nwant %+v", tc.args, *got, tc.want)
		}
	}
	for _, bad := range [][]string{{"-f"}, {"-Z"}, {"-bs"}, {"-bd"}, {"-q1h"}, {"-t", "-F"}} {
		if _, err := parseSendmailArgs(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestRecipientArgs(t *testing.T) {
	got, err := recipientArgs([]string{"a@x.example, b@x.example", `"Doe, J." <j@x.example>`, "root", ""})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"a@x.example", "b@x.example", "j@x.example", "root"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	if _, err := recipientArgs([]string{"Broken <a@x"}); err == nil {
		t.Fatal("broken address accepted")
	}
}

func TestSendmailTakesRecipientsFromHeadersAndRemovesBcc(t *testing.T) {
	d := startCtlDaemon(t, "")
	msg := "From: Alice <alice@example.org>\nTo: bob@example.net\nCc: carol@example.net\nBcc: secret@example.com\nSubject: hi\n\nline\n.\nstill the body with -i\n"
	stderr, code := d.sendmail(msg, "-t", "-i", "extra@example.net")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	s := <-d.subs
	if got := strings.Join(s.Recipients, " "); got != "extra@example.net bob@example.net carol@example.net secret@example.com" {
		t.Fatalf("recipients %q", got)
	}
	want := "From: Alice <alice@example.org>\r\nTo: bob@example.net\r\nCc: carol@example.net\r\nSubject: hi\r\n\r\nline\r\n.\r\nstill the body with -i\r\n"
	if s.body != want {
		t.Fatalf("stored\n%q\nwant\n%q", s.body, want)
	}
	if s.From != "" || s.NullSender || s.UID != os.Getuid() {
		t.Fatalf("sender %q null %v uid %d: the daemon must choose", s.From, s.NullSender, s.UID)
	}
}

func TestSendmailDotEndsWithoutDashI(t *testing.T) {
	d := startCtlDaemon(t, "")
	stderr, code := d.sendmail("Subject: x\n\nbefore\n.\nafter\n", "-f", "alice@example.org", "-F", "Alice", "bob@example.net")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	s := <-d.subs
	if s.body != "Subject: x\r\n\r\nbefore\r\n" || s.From != "alice@example.org" || s.FullName != "Alice" {
		t.Fatalf("%+v %q", s.Submission, s.body)
	}
	stderr, code = d.sendmail("Subject: y\n\nb\n", "-v", "-f", "<>", "bob@example.net")
	s = <-d.subs
	if code != 0 || !s.NullSender || !strings.Contains(stderr, "queued as "+s.id) {
		t.Fatalf("-f <> -v: exit %d %q %+v", code, stderr, s.Submission)
	}
}

func TestSendmailExitCodes(t *testing.T) {
	d := startCtlDaemon(t, "[limits]\nmessage_size = \"1KB\"\n")
	for _, tc := range []struct {
		name  string
		stdin string
		args  []string
		code  int
		words string
	}{
		{"no recipients", "x\n", nil, exUsage, "no recipients"},
		{"-t without addresses", "Subject: x\n\ny\n", []string{"-t"}, exUsage, "no To, Cc or Bcc"},
		{"bad header address", "To: <broken\n\nx\n", []string{"-t"}, exDataErr, "To: field"},
		{"bad option", "x\n", []string{"-Z", "a@x.example"}, exUsage, "unknown option -Z"},
		{"too large", strings.Repeat("x", 2000) + "\n", []string{"a@x.example"}, exDataErr, "too large"},
		{"unparsable address", "x\n", []string{"Broken <a@x"}, exUsage, "bad recipient"},
		{"address with a space", "x\n", []string{"a b@x.example"}, exNoUser, "bad address"},
		{"address the daemon refuses", "x\n", []string{"a\x01@x.example"}, exNoUser, "bad address"},
	} {
		stderr, code := d.sendmail(tc.stdin, tc.args...)
		if code != tc.code || !strings.Contains(stderr, tc.words) || !strings.HasPrefix(stderr, "sendmail: ") {
			t.Errorf("%s: exit %d, stderr %q; want %d and %q", tc.name, code, stderr, tc.code, tc.words)
		}
	}
}

func TestSendmailWithoutDaemonTempfails(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "posthorn.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("data_dir = %q\n", dir)), 0o600)
	var o, e bytes.Buffer
	code := runSendmail(context.Background(), []string{"-C", cfg, "bob@example.net"}, strings.NewReader("Subject: x\n\nhi\n"), &o, &e)
	if code != exTempFail || !strings.Contains(e.String(), "cannot reach the daemon at "+filepath.Join(dir, "submit.sock")) {
		t.Fatalf("exit %d, stderr %q", code, e.String())
	}
}

func TestSendmailBpListsTheQueue(t *testing.T) {
	d := startCtlDaemon(t, "")
	d.enqueue("alice@example.org", "bob@example.net")
	var o, e bytes.Buffer
	code := runSendmail(context.Background(), []string{"-bp", "-C", d.config}, strings.NewReader(""), &o, &e)
	if code != 0 || !strings.Contains(o.String(), "alice@example.org") || !strings.Contains(o.String(), "  bob@example.net") {
		t.Fatalf("-bp: exit %d\n%s%s", code, o.String(), e.String())
	}
}

func TestLocalSubmitAddsReceivedFromDateAndMessageID(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	queued := make(chan string, 10)
	d := startCtlDaemonWith(t, "", func(d *ctlDaemon) ctl.SubmitFunc {
		prep := submission.New(submission.Options{Hostname: "mx.example.test", Now: func() time.Time { return now }})
		return newLocalSubmit(localSubmitOptions{
			Hostname: "mx.example.test", Origin: "example.test", Spool: d.sp,
			Queued: func(id string) { queued <- id }, Prepare: prep.Prepare, Now: func() time.Time { return now },
		})
	})
	me, err := user.Current()
	if err != nil {
		t.Skip(err)
	}
	stderr, code := d.sendmail("Subject: cron job\n\nÄrger im Büro\n", "-F", "Cron Daemon", "root", "bob@example.net")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	id := <-queued
	env, err := d.sp.Load(id)
	if err != nil {
		t.Fatal(err)
	}
	if env.From != me.Username+"@example.test" || env.Recipients[0].Addr != "root@example.test" || env.Recipients[1].Addr != "bob@example.net" ||
		env.Body != "8BITMIME" || env.SMTPUTF8 || env.Listener != "local" {
		t.Fatalf("envelope %+v", env)
	}
	rc, err := d.sp.Body(id)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	got := string(b)
	wantStart := fmt.Sprintf("Received: by mx.example.test (posthorn, from userid %d)\r\n\tid %s; Sun, 01 Jun 2025 12:00:00 +0000\r\nDate: Sun, 01 Jun 2025 12:00:00 +0000\r\nMessage-ID: <", os.Getuid(), id)
	wantEnd := "@mx.example.test>\r\nFrom: \"Cron Daemon\" <" + me.Username + "@example.test>\r\nSubject: cron job\r\n\r\nÄrger im Büro\r\n"
	if !strings.HasPrefix(got, wantStart) || !strings.HasSuffix(got, wantEnd) {
		t.Fatalf("stored message:\n%s", got)
	}

	// -f and a From: of its own: nothing but Received, Date and Message-ID added.
	_, code = d.sendmail("From: Alice <alice@example.org>\nSubject: x\n\nhi\n", "-f", "alice@example.org", "-F", "ignored", "bob@example.net")
	id = <-queued
	rc, _ = d.sp.Body(id)
	b, _ = io.ReadAll(rc)
	rc.Close()
	if code != 0 || strings.Count(string(b), "From:") != 1 || strings.Contains(string(b), "ignored") {
		t.Fatalf("exit %d, stored:\n%s", code, b)
	}
	// The daemon's own address check.
	stderr, code = d.sendmail("x\n", "bob@@example.net")
	if code != exNoUser || !strings.Contains(stderr, "recipient <bob@@example.net>") {
		t.Fatalf("bad recipient: exit %d %q", code, stderr)
	}
}

// A message given to sendmail whose first line is folded would continue
// the fields posthorn puts in front of it (Received, Date, From). The
// sendmail command, as Postfix's, takes a first line that is not a header
// field as the start of the body: the text lands after the empty line,
// never in a header field.
func TestLocalSubmitLeadingFoldedLineStaysBody(t *testing.T) {
	queued := make(chan string, 10)
	d := startCtlDaemonWith(t, "", func(d *ctlDaemon) ctl.SubmitFunc {
		return newLocalSubmit(localSubmitOptions{Hostname: "mx.example.test", Origin: "example.test", Spool: d.sp, Queued: func(id string) { queued <- id }})
	})
	if _, err := user.Current(); err != nil {
		t.Skip(err)
	}
	if stderr, code := d.sendmail(" ; dkim=pass\nSubject: x\n\ny\n", "bob@example.net"); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	rc, err := d.sp.Body(<-queued)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	hdr, body, _ := strings.Cut(string(b), "\r\n\r\n")
	if strings.Contains(hdr, "dkim=pass") || !strings.HasPrefix(body, " ; dkim=pass\r\n") {
		t.Fatalf("stored message:\n%s", b)
	}
}
