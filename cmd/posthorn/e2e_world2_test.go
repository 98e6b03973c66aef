package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/posthorn/posthorn/internal/dns/dnstest"
	"github.com/posthorn/posthorn/internal/testutil"
)

// Crash during delivery: deliveries are in flight (the remote server has
// the data but has not answered) when posthorn is SIGKILLed. After the
// restart every recipient is delivered: at least once, never lost.
func TestSIGKILLDuringDeliveryLosesNoRecipient(t *testing.T) {
	port := sharedPort(t, "127.0.0.3")
	f := newFakeMX(t, fmt.Sprintf("127.0.0.3:%d", port), func(string, int) string { return "250 2.1.5 ok" })
	hold := make(chan struct{})
	f.hold = hold
	zone := dnstest.Zone{"c.example": {MX: mxs("mx.c.example")}, "mx.c.example": {A: []string{"127.0.0.3"}}}
	a := worldA(t, port, zone, "1h")
	const n = 8
	for i := 0; i < n; i++ {
		sendFromA(t, a, fmt.Sprintf("inflight %d", i), fmt.Sprintf("r%d@c.example", i))
	}
	waitFor(t, "deliveries in flight", func() bool { return len(f.received()) >= 3 })
	a.kill()
	f.mu.Lock()
	f.hold = nil
	f.mu.Unlock()
	close(hold)

	// Restart on the same data directory (with a new DNS server).
	dnsSrv := dnstest.NewServer(t, zone)
	cfg := strings.Replace(readFile(t, a.config), a.dns.Addr(), dnsSrv.Addr(), 1)
	a2 := startWithConfig(t, a.dir, cfg, dnsSrv)
	for i := 0; i < n; i++ {
		rcpt := fmt.Sprintf("r%d@c.example", i)
		waitFor(t, rcpt+" delivered", func() bool { return f.count(rcpt) >= 1 })
	}
	a2.waitLog(`queue: message done`, 1)
	dups := 0
	for i := 0; i < n; i++ {
		dups += f.count(fmt.Sprintf("r%d@c.example", i)) - 1
	}
	t.Logf("%d recipients, all delivered; %d duplicates (deliveries in flight at the kill)", n, dups)
}

// sendmail -t from a shell: one recipient local, one at a remote domain.
func TestSendmailReachesLocalAndRemote(t *testing.T) {
	port := sharedPort(t, "127.0.0.3")
	f := newFakeMX(t, fmt.Sprintf("127.0.0.3:%d", port), func(string, int) string { return "250 2.1.5 ok" })
	a := worldA(t, port, dnstest.Zone{"c.example": {MX: mxs("mx.c.example")}, "mx.c.example": {A: []string{"127.0.0.3"}}}, "1h")
	msg := "To: sender@a.example\nCc: friend@c.example\nBcc: hidden@c.example\nSubject: from cron\n\nThe job ran.\n"
	if out, err := cli(t, msg, "sendmail", "-C", a.config, "-t", "-oi"); err != nil {
		t.Fatalf("sendmail -t: %v\n%s", err, out)
	}
	a.waitLog(`msg=delivered .*mailbox=sender@a.example`, 1)
	waitFor(t, "remote copies", func() bool { return f.count("friend@c.example") == 1 && f.count("hidden@c.example") == 1 })
	local := maildirFiles(t, filepath.Join(a.dir, "data", "mail", "a.example", "sender"))[0]
	for _, want := range []string{"Subject: from cron\r\n", "The job ran.\r\n", "Message-ID: <", "Date: ", "From: "} {
		if !strings.Contains(local, want) {
			t.Errorf("local copy lacks %q:\n%s", want, local)
		}
	}
	for _, m := range append(f.received(), local) {
		if strings.Contains(m, "hidden@") {
			t.Fatalf("Bcc visible in a delivered copy:\n%s", m)
		}
	}
}

// Forwarding keeps SPF passing: an alias of A forwards to B; A rewrites
// the envelope sender with SRS, and B's SPF check of A's domain passes.
// A bounce of the forwarded copy to the SRS address returns to the
// original sender.
func TestForwardingWithSRSPassesSPFAndBouncesReturn(t *testing.T) {
	port := sharedPort(t, "127.0.0.2", "127.0.0.3")
	zone := dnstest.Zone{
		"b.example":       {MX: mxs("mx.b.example")},
		"mx.b.example":    {A: []string{"127.0.0.2"}},
		"a.example":       {TXT: []string{"v=spf1 ip4:127.0.0.1 -all"}},
		"orig.example":    {TXT: []string{"v=spf1 ip4:192.0.2.1 -all"}, MX: mxs("mx.orig.example")},
		"mx.orig.example": {A: []string{"127.0.0.3"}},
	}
	dnsSrv := dnstest.NewServer(t, zone)
	orig := newFakeMX(t, fmt.Sprintf("127.0.0.3:%d", port), func(string, int) string { return "250 2.1.5 ok" })
	dirA, dirB := t.TempDir(), t.TempDir()
	// A seals what it forwards with ARC, with its DKIM key.
	key := filepath.Join(dirA, "a.ed1.key")
	if out, err := cli(t, "", "dkim", "keygen", "--out", key, "a.example"); err != nil {
		t.Fatalf("keygen: %v\n%s", err, out)
	}
	b := startWithConfig(t, dirB, instanceConfig(dirB, "mx.b.example", "127.0.0.2", port, 25, dnsSrv.Addr(), "[[domain]]\nname = \"b.example\"\nmailboxes = [\"bob\"]\n"), dnsSrv)
	a := startWithConfig(t, dirA, instanceConfig(dirA, "mx.a.example", "127.0.0.1", 0, port, dnsSrv.Addr(),
		"[[domain]]\nname = \"a.example\"\nmailboxes = [\"x\"]\n[[domain.dkim]]\nselector = \"ed1\"\nkey = "+quote(key)+"\n\n[aliases]\n\"fwd@a.example\" = [\"bob@b.example\", \"nobody@b.example\"]\n"), dnsSrv)
	records, err := cli(t, "", "dns", "records", "-c", a.config, "a.example")
	if err != nil {
		t.Fatalf("dns records: %v\n%s", err, records)
	}
	for name, v := range dkimRecords(t, records) {
		zone[name] = dnstest.Records{TXT: []string{v}}
	}
	dnsSrv.SetZone(zone)

	c := testutil.Dial(t, a.addrs["smtp"])
	c.ExpectCmd("EHLO mail.orig.example", 250, "")
	c.ExpectCmd("MAIL FROM:<someone@orig.example>", 250, "")
	c.ExpectCmd("RCPT TO:<fwd@a.example>", 250, "")
	c.ExpectCmd("DATA", 354, "")
	c.ExpectCmd("From: someone@orig.example\r\nTo: fwd@a.example\r\nSubject: forward me\r\n\r\nhi\r\n.", 250, "")

	b.waitLog(`msg=delivered .*mailbox=bob@b.example`, 1)
	got := maildirFiles(t, filepath.Join(dirB, "data", "mail", "b.example", "bob"))[0]
	if !regexp.MustCompile(`Return-Path: <SRS0=[^=]+=[^=]+=orig\.example=someone@a\.example>`).MatchString(got) {
		t.Fatalf("forwarded copy has no SRS0 envelope sender:\n%s", got)
	}
	if !regexp.MustCompile(`spf=pass smtp\.mailfrom=SRS0=`).MatchString(got) {
		t.Fatalf("B's SPF check of the SRS sender did not pass:\n%s", got)
	}
	// A's ARC set carries A's results (spf=fail for orig.example from
	// A's client) to B, and B validates the chain.
	seal := regexp.MustCompile(`(?s)ARC-Seal: (.*?)\r\n[^ \t]`).FindStringSubmatch(got)
	if seal == nil || !strings.Contains(seal[1], "cv=none") || !strings.Contains(seal[1], "d=a.example") || !strings.Contains(seal[1], "s=ed1") ||
		!strings.Contains(got, "ARC-Authentication-Results: i=1; mx.a.example;") || !strings.Contains(got, "arc=pass smtp.remote-ip=127.0.0.1") {
		t.Fatalf("forwarded copy not ARC-sealed by A and validated by B:\n%s", got)
	}
	// nobody@b.example was refused by B (550 5.1.1): A bounces to the SRS
	// address, which A reverses and sends back to someone@orig.example.
	a.waitLog(`msg="returned to the original sender" .*to=someone@orig.example`, 1)
	waitFor(t, "the bounce at the original sender", func() bool { return orig.count("someone@orig.example") == 1 })
	dsnText := orig.received()[0]
	if !strings.Contains(dsnText, "nobody@b.example") || !strings.Contains(dsnText, "report-type=delivery-status") {
		t.Fatalf("original sender got something else:\n%s", dsnText)
	}
	// A forged SRS address is refused at RCPT.
	c2 := testutil.Dial(t, a.addrs["smtp"])
	c2.ExpectCmd("EHLO mx.b.example", 250, "")
	c2.ExpectCmd("MAIL FROM:<>", 250, "")
	c2.ExpectCmd("RCPT TO:<SRS0=AAAAA=AA=orig.example=someone@a.example>", 550, "5.7.1")
}

// posthorn queue against the running daemon.
func TestQueueCommands(t *testing.T) {
	port := sharedPort(t, "127.0.0.4")
	a := worldA(t, port, dnstest.Zone{"down.example": {MX: mxs("mx.down.example")}, "mx.down.example": {A: []string{"127.0.0.4"}}}, "1h")
	sendFromA(t, a, "stuck", "x@down.example")
	a.waitLog(`rcpt=x@down.example status=deferred`, 1)
	out, err := cli(t, "", "queue", "list", "-c", a.config)
	if err != nil || !strings.Contains(out, "sender@a.example") || !strings.Contains(out, "x@down.example") {
		t.Fatalf("queue list: %v\n%s", err, out)
	}
	js, err := cli(t, "", "queue", "list", "--json", "-c", a.config)
	var list []map[string]any
	if err != nil || json.Unmarshal([]byte(js), &list) != nil || len(list) != 1 {
		var wrapped map[string]any
		if json.Unmarshal([]byte(js), &wrapped) != nil {
			t.Fatalf("queue list --json: %v\n%s", err, js)
		}
	}
	id := regexp.MustCompile(`"id":\s*"([a-z0-9]+)"`).FindStringSubmatch(js)
	if id == nil {
		t.Fatalf("no id in --json output:\n%s", js)
	}
	for _, args := range [][]string{{"hold", id[1]}, {"release", id[1]}, {"retry", id[1]}, {"trace", id[1]}, {"show", id[1]}} {
		out, err := cli(t, "", append([]string{"queue"}, append(args, "-c", a.config)...)...)
		if err != nil {
			t.Fatalf("queue %v: %v\n%s", args, err, out)
		}
		if args[0] == "trace" && !strings.Contains(out, "deferred") {
			t.Errorf("trace shows no attempt:\n%s", out)
		}
	}
	if out, err := cli(t, "", "queue", "delete", id[1], "-c", a.config); err != nil {
		t.Fatalf("queue delete: %v\n%s", err, out)
	}
	out, _ = cli(t, "", "queue", "list", "-c", a.config)
	if strings.Contains(out, id[1]) {
		t.Fatalf("deleted message still listed:\n%s", out)
	}
	if out, err := cli(t, "", "queue", "list", "-c", filepath.Join(t.TempDir(), "none.toml")); err == nil {
		t.Fatalf("queue list without a daemon succeeded:\n%s", out)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// NOTIFY=SUCCESS on a local delivery brings a success report; NOTIFY=DELAY
// on a message stuck in the queue brings one delay warning.
func TestSuccessAndDelayNotifications(t *testing.T) {
	port := sharedPort(t, "127.0.0.4")
	a := worldA(t, port, dnstest.Zone{"down.example": {MX: mxs("mx.down.example")}, "mx.down.example": {A: []string{"127.0.0.4"}}}, "1h")
	a.cmd.Process.Kill() // restart with a short delay warning
	<-a.exited
	cfg := strings.Replace(readFile(t, a.config), "[queue]\n", "[queue]\ndelay_warning = \"1s\"\n", 1)
	a = startWithConfig(t, a.dir, cfg, a.dns)

	c := testutil.Dial(t, a.addrs["smtp"])
	c.ExpectCmd("EHLO app.a.example", 250, "")
	c.ExpectCmd("MAIL FROM:<sender@a.example> RET=HDRS ENVID=env+2D1", 250, "")
	c.ExpectCmd("RCPT TO:<sender@a.example> NOTIFY=SUCCESS ORCPT=rfc822;sender+40a.example", 250, "")
	c.ExpectCmd("RCPT TO:<x@down.example> NOTIFY=DELAY,FAILURE", 250, "")
	c.ExpectCmd("DATA", 354, "")
	c.ExpectCmd("From: sender@a.example\r\nSubject: notify me\r\n\r\nbody\r\n.", 250, "")

	a.waitLog(`msg="report queued" kind=success`, 1)
	a.waitLog(`msg="report queued" kind=delay`, 1)
	a.waitLog(`msg=delivered .*mailbox=sender@a.example`, 3) // the message and two reports
	var success, delay string
	for _, m := range bounces(t, a) {
		switch {
		case strings.Contains(m, "Action: delivered"):
			success = m
		case strings.Contains(m, "Action: delayed"):
			delay = m
		}
	}
	for _, want := range []string{"Final-Recipient: rfc822; sender@a.example", "Original-Recipient: rfc822;sender@a.example", "Original-Envelope-Id: env-1", "Status: 2."} {
		if !strings.Contains(success, want) {
			t.Errorf("success report lacks %q:\n%s", want, success)
		}
	}
	for _, want := range []string{"Final-Recipient: rfc822; x@down.example", "Status: 4.", "Will-Retry-Until:"} {
		if !strings.Contains(delay, want) {
			t.Errorf("delay report lacks %q:\n%s", want, delay)
		}
	}
	if strings.Count(a.logText(), `kind=delay`) != 1 {
		t.Errorf("more than one delay warning:\n%s", a.logText())
	}
}

// Smarthost mode: all remote mail goes to the configured relay, whatever
// the recipient domain's MX says, with AUTH over STARTTLS.
func TestSmarthostTakesAllRemoteMail(t *testing.T) {
	port := sharedPort(t, "127.0.0.2")
	dnsSrv := dnstest.NewServer(t, dnstest.Zone{})
	relayDir, dirA := t.TempDir(), t.TempDir()
	relay := startWithConfig(t, relayDir, instanceConfig(relayDir, "relay.example", "127.0.0.2", port, 25, dnsSrv.Addr(),
		"[[domain]]\nname = \"relay.example\"\n"), dnsSrv)
	if out, err := cli(t, "relay-pw\n", "user", "add", "-c", relay.config, "a@relay.example"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	pw := filepath.Join(dirA, "smarthost.pw")
	os.WriteFile(pw, []byte("relay-pw\n"), 0o600)
	// The relay takes submissions on 587; A uses it as its smarthost.
	sub := relay.addrs["submission"]
	a := startWithConfig(t, dirA, instanceConfig(dirA, "mx.a.example", "127.0.0.1", 0, port, dnsSrv.Addr(),
		"[[domain]]\nname = \"a.example\"\nmailboxes = [\"sender\"]\n\n[relay]\ntrusted_networks = [\"127.0.0.0/8\"]\nsmarthost = \"["+strings.Split(sub, ":")[0]+"]:"+strings.Split(sub, ":")[1]+
			"\"\nsmarthost_tls = \"required\"\nsmarthost_user = \"a@relay.example\"\nsmarthost_password_file = "+quote(pw)+"\n"), dnsSrv)
	c := testutil.Dial(t, a.addrs["smtp"])
	c.ExpectCmd("EHLO app.a.example", 250, "")
	c.ExpectCmd("MAIL FROM:<a@relay.example>", 250, "")
	c.ExpectCmd("RCPT TO:<someone@far.example>", 250, "")
	c.ExpectCmd("DATA", 354, "")
	c.ExpectCmd("From: a@relay.example\r\nSubject: via smarthost\r\n\r\nx\r\n.", 250, "")
	a.waitLog(`msg="remote delivery" .*rcpt=someone@far.example status=delivered`, 1)
	// The relay authenticated A's user over TLS and took the message for
	// a domain it then tries to deliver (and bounces: far.example has no
	// DNS here).
	relay.waitLog(`msg="message accepted" .*rcpts=1 .*role=submission tls="TLS 1.3" user=a@relay.example`, 1)
}

// NOTIFY=SUCCESS for a recipient handed to a server without DSN support
// (which drops NOTIFY) brings a "relayed" report (RFC 3461 5.2.2); the
// recipient without NOTIFY=SUCCESS brings none.
func TestRelayedReportForNextHopWithoutDSN(t *testing.T) {
	port := sharedPort(t, "127.0.0.3")
	f := newFakeMX(t, fmt.Sprintf("127.0.0.3:%d", port), func(string, int) string { return "250 2.1.5 ok" })
	a := worldA(t, port, dnstest.Zone{"c.example": {MX: mxs("mx.c.example")}, "mx.c.example": {A: []string{"127.0.0.3"}}}, "1h")
	c := testutil.Dial(t, a.addrs["smtp"])
	c.ExpectCmd("EHLO app.a.example", 250, "")
	c.ExpectCmd("MAIL FROM:<sender@a.example> ENVID=relay+2D1", 250, "")
	c.ExpectCmd("RCPT TO:<u@c.example> NOTIFY=SUCCESS,FAILURE", 250, "")
	c.ExpectCmd("RCPT TO:<v@c.example>", 250, "")
	c.ExpectCmd("DATA", 354, "")
	c.ExpectCmd("From: sender@a.example\r\nSubject: relay me\r\n\r\nbody\r\n.", 250, "")
	c.ExpectCmd("QUIT", 221, "")

	a.waitLog(`msg="report queued" kind=success`, 1)
	a.waitLog(`msg=delivered .*mailbox=sender@a.example`, 1)
	if f.count("u@c.example") != 1 || f.count("v@c.example") != 1 {
		t.Fatalf("delivered u %d, v %d times", f.count("u@c.example"), f.count("v@c.example"))
	}
	reports := bounces(t, a)
	if len(reports) != 1 {
		t.Fatalf("%d reports in sender's mailbox, want 1", len(reports))
	}
	for _, want := range []string{"Final-Recipient: rfc822; u@c.example", "Action: relayed", "Status: 2.0.0", "Original-Envelope-Id: relay-1", "does not send delivery reports"} {
		if !strings.Contains(reports[0], want) {
			t.Errorf("report lacks %q:\n%s", want, reports[0])
		}
	}
	if strings.Contains(reports[0], "v@c.example") {
		t.Errorf("report names v@c.example, which asked for nothing:\n%s", reports[0])
	}
}
