package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Interop with real clients from Debian: swaks and Python's smtplib.
// .ci/run installs them; plain `go test` skips when they are missing.

func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s not installed (the CI script installs it: apt-get install swaks python3)", name)
	}
	return p
}

// interopDaemon starts posthorn with alice@example.test as a submission user.
func interopDaemon(t *testing.T) *daemon {
	t.Helper()
	d := startDaemon(t, t.TempDir(), "")
	if out, err := cli(t, "pw-alice-1\n", "user", "add", "-c", d.config, "alice@example.test"); err != nil {
		t.Fatalf("user add: %v\n%s", err, out)
	}
	return d
}

func bobHas(t *testing.T, d *daemon, subjects ...string) {
	t.Helper()
	d.waitLog(`msg=delivered .*mailbox=bob@example.test`, len(subjects))
	all := strings.Join(maildirFiles(t, filepath.Join(d.dir, "data", "mail", "example.test", "bob")), "\n")
	for _, s := range subjects {
		if !strings.Contains(all, "Subject: "+s+"\r\n") {
			t.Errorf("message %q not in bob's Maildir", s)
		}
	}
}

func TestInteropSwaks(t *testing.T) {
	swaks := needTool(t, "swaks")
	d := interopDaemon(t)
	run := func(wantOK bool, args ...string) string {
		t.Helper()
		out, err := exec.Command(swaks, append([]string{"--hide-all"}, args...)...).CombinedOutput()
		if wantOK && err != nil || !wantOK && err == nil {
			out2, _ := exec.Command(swaks, args...).CombinedOutput()
			t.Fatalf("swaks %v: err=%v\n%s", args, err, out2)
		}
		return string(out)
	}
	host := func(role string) string { return d.addrs[role] }
	run(true, "--server", host("smtp"), "--from", "someone@example.org", "--to", "bob@example.test", "--header", "Subject: swaks-25")
	run(true, "--server", host("submission"), "--tls", "--auth", "PLAIN", "--auth-user", "alice@example.test", "--auth-password", "pw-alice-1",
		"--from", "alice@example.test", "--to", "bob@example.test", "--header", "Subject: swaks-587")
	run(true, "--server", host("submissions"), "--tlsc", "--auth", "LOGIN", "--auth-user", "alice@example.test", "--auth-password", "pw-alice-1",
		"--from", "alice@example.test", "--to", "bob@example.test", "--header", "Subject: swaks-465")
	// Refusals a user of swaks would see.
	run(false, "--server", host("smtp"), "--from", "someone@example.org", "--to", "victim@elsewhere.example")
	run(false, "--server", host("submission"), "--auth", "PLAIN", "--auth-user", "alice@example.test", "--auth-password", "pw-alice-1",
		"--from", "alice@example.test", "--to", "bob@example.test") // no TLS: no AUTH
	run(false, "--server", host("submissions"), "--tlsc", "--auth", "PLAIN", "--auth-user", "alice@example.test", "--auth-password", "wrong",
		"--from", "alice@example.test", "--to", "bob@example.test")
	bobHas(t, d, "swaks-25", "swaks-587", "swaks-465")
}

const pySend = `
import smtplib, ssl, sys
mode, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
ctx = ssl.create_default_context(cafile=sys.argv[4])
ctx.check_hostname = False
msg = "From: alice@example.test\r\nTo: bob@example.test\r\nSubject: python-" + mode + "\r\n\r\nsent by smtplib\r\n"
if mode == "starttls":
    s = smtplib.SMTP(host, port, timeout=30)
    s.starttls(context=ctx)
else:
    s = smtplib.SMTP_SSL(host, port, context=ctx, timeout=30)
s.login("alice@example.test", "pw-alice-1")
s.sendmail("alice@example.test", ["bob@example.test"], msg)
s.quit()
`

func TestInteropPythonSmtplib(t *testing.T) {
	py := needTool(t, "python3")
	d := interopDaemon(t)
	script := filepath.Join(t.TempDir(), "send.py")
	os.WriteFile(script, []byte(pySend), 0o600)
	certs, _ := filepath.Glob(filepath.Join(d.dir, "data", "tls", "*cert.pem"))
	if len(certs) == 0 {
		t.Fatal("no self-signed certificate in the data dir")
	}
	for mode, role := range map[string]string{"starttls": "submission", "ssl": "submissions"} {
		h, p, _ := strings.Cut(d.addrs[role], ":")
		if out, err := exec.Command(py, script, mode, h, p, certs[0]).CombinedOutput(); err != nil {
			t.Fatalf("smtplib %s: %v\n%s", mode, err, out)
		}
	}
	bobHas(t, d, "python-starttls", "python-ssl")
}
