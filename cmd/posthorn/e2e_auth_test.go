package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/posthorn/posthorn/internal/dkim"
	"github.com/posthorn/posthorn/internal/dns/dnstest"
	"github.com/posthorn/posthorn/internal/testutil"
)

// DMARC end to end: the sender domains' records are served by the test's
// DNS server; the message comes from 127.0.0.1.
func TestDMARCRejectQuarantineAndPass(t *testing.T) {
	zone := dnstest.Zone{
		"strict.example":        {TXT: []string{"v=spf1 -all"}, A: []string{"192.0.2.1"}},
		"_dmarc.strict.example": {TXT: []string{"v=DMARC1; p=reject"}},
		"good.example":          {TXT: []string{"v=spf1 ip4:127.0.0.0/8 -all"}, A: []string{"192.0.2.2"}},
		"_dmarc.good.example":   {TXT: []string{"v=DMARC1; p=reject"}},
		"quar.example":          {TXT: []string{"v=spf1 -all"}, A: []string{"192.0.2.3"}},
		"_dmarc.quar.example":   {TXT: []string{"v=DMARC1; p=quarantine"}},
	}
	d := startDaemonDNS(t, t.TempDir(), "", dnstest.NewServer(t, zone))
	send := func(from string, code int, enhanced string) {
		t.Helper()
		c := testutil.Dial(t, d.addrs["smtp"])
		c.ExpectCmd("EHLO client.example.org", 250, "")
		c.ExpectCmd("MAIL FROM:<"+from+">", 250, "")
		c.ExpectCmd("RCPT TO:<bob@example.test>", 250, "")
		c.ExpectCmd("DATA", 354, "")
		// A forged result claiming our name must not survive.
		r := c.ExpectCmd("Authentication-Results: mx.example.test; dmarc=pass\r\nFrom: <"+from+">\r\nSubject: from "+from+"\r\n\r\nhi\r\n.", code, enhanced)
		if code == 550 && !strings.Contains(r.Text(), "DMARC") {
			t.Fatalf("refusal does not name DMARC: %q", r.Text())
		}
	}
	send("bad@strict.example", 550, "5.7.1")
	send("ok@good.example", 250, "2.0.0")
	send("meh@quar.example", 250, "2.0.0")
	d.waitLog(`msg=delivered .*mailbox=bob@example.test`, 2)

	inbox := strings.Join(maildirFiles(t, filepath.Join(d.dir, "data", "mail", "example.test", "bob")), "\n---\n")
	if !strings.Contains(inbox, "Subject: from ok@good.example") || strings.Contains(inbox, "strict.example") || strings.Contains(inbox, "quar.example") {
		t.Fatalf("inbox holds the wrong messages:\n%s", inbox)
	}
	ar := regexp.MustCompile(`(?s)Authentication-Results: mx\.example\.test;.*?\r\n[^ \t]`).FindAllString(inbox, -1)
	if len(ar) != 1 {
		t.Fatalf("want exactly one Authentication-Results of ours (the forged one removed), got %d:\n%s", len(ar), inbox)
	}
	for _, want := range []string{"spf=pass", "smtp.mailfrom=ok@good.example", "dkim=none", "dmarc=pass", "header.from=good.example"} {
		if !strings.Contains(ar[0], want) {
			t.Errorf("Authentication-Results lacks %q:\n%s", want, ar[0])
		}
	}
	junk := maildirFiles(t, filepath.Join(d.dir, "data", "mail", "example.test", "bob", ".Junk"))
	if len(junk) != 1 || !strings.Contains(junk[0], "dmarc=fail") {
		t.Fatalf("quarantined message not in .Junk: %q", junk)
	}
}

// Submitted mail is signed with every key of the From domain (ed25519 and
// RSA), and the signatures verify with the keys as `posthorn dns records`
// publishes them — in posthorn's verifier and in dkimpy.
func TestSubmittedMailIsDKIMSignedAndVerifies(t *testing.T) {
	dir := t.TempDir()
	keys := filepath.Join(dir, "keys")
	for _, k := range []struct{ algo, sel string }{{"ed25519", "ed1"}, {"rsa2048", "rsa1"}} {
		if out, err := cli(t, "", "dkim", "keygen", "--algo", k.algo, "--selector", k.sel, "--out", filepath.Join(keys, k.sel+".key"), "localhost"); err != nil {
			t.Fatalf("keygen: %v\n%s", err, out)
		}
	}
	// [[domain.dkim]] belongs to the last [[domain]] of the test config:
	// localhost.
	extra := "[[domain.dkim]]\nselector = \"ed1\"\nkey = " + quote(filepath.Join(keys, "ed1.key")) +
		"\n[[domain.dkim]]\nselector = \"rsa1\"\nkey = " + quote(filepath.Join(keys, "rsa1.key")) + "\n"
	d := startDaemon(t, dir, extra)
	records, err := cli(t, "", "dns", "records", "-c", d.config, "localhost")
	if err != nil {
		t.Fatalf("dns records: %v\n%s", err, records)
	}
	txt := dkimRecords(t, records)
	if len(txt) != 2 {
		t.Fatalf("dns records printed %d DKIM records, want 2:\n%s", len(txt), records)
	}

	if out, err := cli(t, "pw-carol-1\n", "user", "add", "-c", d.config, "carol@localhost"); err != nil {
		t.Fatalf("user add: %v\n%s", err, out)
	}
	c := testutil.DialTLS(t, d.addrs["submissions"], dataDirCA(t, d))
	c.ExpectCmd("EHLO client.example.org", 250, "")
	c.ExpectCmd("AUTH PLAIN "+b64("\x00carol@localhost\x00pw-carol-1"), 235, "")
	c.ExpectCmd("MAIL FROM:<carol@localhost>", 250, "")
	c.ExpectCmd("RCPT TO:<bob@example.test>", 250, "")
	c.ExpectCmd("DATA", 354, "")
	c.ExpectCmd("From: Carol <carol@localhost>\r\nTo: bob@example.test\r\nSubject: signed\r\n\r\nThis is signed.\r\n.", 250, "")
	d.waitLog(`msg=delivered .*mailbox=bob@example.test`, 1)
	msgs := maildirFiles(t, filepath.Join(dir, "data", "mail", "example.test", "bob"))
	msg := msgs[0]
	for _, want := range []string{"DKIM-Signature:", "Message-ID: <", "Date: "} {
		if !strings.Contains(msg, want) {
			t.Fatalf("submitted message lacks %q:\n%s", want, msg)
		}
	}

	zone := dnstest.Zone{}
	for name, v := range txt {
		zone[name] = dnstest.Records{TXT: []string{v}}
	}
	res, err := dkim.Verify(context.Background(), dnstest.NewResolver(zone), strings.NewReader(msg), nil)
	if err != nil || len(res) != 2 {
		t.Fatalf("verify: %v %+v", err, res)
	}
	for _, r := range res {
		if r.Status != dkim.StatusPass || r.Domain != "localhost" {
			t.Errorf("signature %s/%s: %s %s", r.Domain, r.Selector, r.Status, r.Reason)
		}
	}
	// A changed body fails.
	bad := strings.Replace(msg, "This is signed.", "This is changed.", 1)
	res, _ = dkim.Verify(context.Background(), dnstest.NewResolver(zone), strings.NewReader(bad), nil)
	for _, r := range res {
		if r.Status == dkim.StatusPass {
			t.Errorf("tampered body still passes %s", r.Selector)
		}
	}

	work := t.TempDir()
	t.Run("OpenDKIM", func(t *testing.T) { opendkimVerifies(t, work, msg, txt) })
	py := testutil.Python(t, "python3-dkim", "dkim")
	os.WriteFile(filepath.Join(work, "msg"), []byte(msg), 0o600)
	kj, _ := json.Marshal(txt)
	os.WriteFile(filepath.Join(work, "keys.json"), kj, 0o600)
	os.WriteFile(filepath.Join(work, "v.py"), []byte(dkimpyVerify), 0o600)
	out, err := exec.Command(py, filepath.Join(work, "v.py"), filepath.Join(work, "msg"), filepath.Join(work, "keys.json")).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "[true, true]" {
		t.Fatalf("dkimpy: %v %s", err, out)
	}
}

// opendkimVerifies runs `opendkim -t` (test mode) on the message with the
// keys given through TestPublicKeys. opendkim exits 0 even when a
// signature fails, so its words are read.
func opendkimVerifies(t *testing.T, work, msg string, txt map[string]string) {
	opendkim, err := exec.LookPath("opendkim")
	if err != nil {
		if _, err2 := os.Stat("/usr/sbin/opendkim"); err2 != nil {
			t.Skip("opendkim not installed (the CI script installs it)")
		}
		opendkim = "/usr/sbin/opendkim"
	}
	var keys strings.Builder
	for name, v := range txt {
		keys.WriteString(name + " " + v + "\n")
	}
	os.WriteFile(filepath.Join(work, "testkeys"), []byte(keys.String()), 0o600)
	conf := "Mode v\nTestPublicKeys " + filepath.Join(work, "testkeys") + "\nSyslog no\nAlwaysAddARHeader yes\n"
	os.WriteFile(filepath.Join(work, "opendkim.conf"), []byte(conf), 0o600)
	os.WriteFile(filepath.Join(work, "msg.eml"), []byte(msg), 0o600)
	out, err := exec.Command(opendkim, "-x", filepath.Join(work, "opendkim.conf"), "-vvv", "-t", filepath.Join(work, "msg.eml")).CombinedOutput()
	t.Logf("opendkim says:\n%s", out)
	if err != nil {
		t.Fatalf("opendkim: %v", err)
	}
	// -vvv shows the Authentication-Results opendkim would add.
	for _, sel := range []string{"ed1", "rsa1"} {
		if !regexp.MustCompile(`dkim=pass [^;]*header\.d=localhost [^;]*header\.s=` + sel + `\b`).Match(out) {
			t.Errorf("opendkim did not verify selector %s", sel)
		}
	}
	if strings.Contains(string(out), "dkim=fail") {
		t.Error("opendkim reports a failing signature")
	}
}

const dkimpyVerify = `
import dkim, json, sys
msg = open(sys.argv[1], 'rb').read()
keys = json.load(open(sys.argv[2]))
def dnsfunc(name, timeout=5):
    return keys.get(name.decode().rstrip('.'), '').encode()
d = dkim.DKIM(msg)
n = len([h for h in d.headers if h[0].lower() == b'dkim-signature'])
out = []
for i in range(n):
    try:
        out.append(bool(d.verify(idx=i, dnsfunc=dnsfunc)))
    except dkim.DKIMException as e:
        print(e, file=sys.stderr)
        out.append(False)
print(json.dumps(out))
`

// dkimRecords extracts name -> TXT value of the _domainkey records from
// zone-file text as `posthorn dns records` prints it.
func dkimRecords(t *testing.T, zone string) map[string]string {
	t.Helper()
	out := map[string]string{}
	rx := regexp.MustCompile(`(?s)(\S+\._domainkey\.\S+?)\.\s+\d+ IN TXT\s+(\([^)]*\)|"[^"]*")`)
	for _, m := range rx.FindAllStringSubmatch(zone, -1) {
		var v strings.Builder
		for _, s := range regexp.MustCompile(`"([^"]*)"`).FindAllStringSubmatch(m[2], -1) {
			v.WriteString(s[1])
		}
		out[m[1]] = v.String()
	}
	return out
}

func quote(s string) string { return "\"" + strings.ReplaceAll(s, `\`, `\\`) + "\"" }

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
