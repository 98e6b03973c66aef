package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/posthorn/posthorn/internal/certs"
	"github.com/posthorn/posthorn/internal/dns/dnstest"
	"github.com/posthorn/posthorn/internal/testutil"
)

// Interop with a real Postfix from Debian, both ways, on loopback. Each
// test starts a throwaway Postfix of its own: config_directory,
// queue_directory, data_directory, mailboxes and log all live in the
// test's temporary directory (postfix -c DIR), it listens on one
// 127.0.0.x address only, never asks DNS, and is stopped when the test
// ends, whatever happens. The system Postfix (/etc/postfix,
// /var/spool/postfix) is neither read for mail nor written.
//
// The CI script installs postfix; plain `go test` skips without it.

const (
	postfixBin      = "/usr/sbin/postfix"
	postfixSendmail = "/usr/sbin/sendmail"
	postfixIP       = "127.0.0.6" // the Postfix under test
	posthornPFIP    = "127.0.0.7" // posthorn receiving from it

	eightBit = "Grüße aus Köln, naïve café ☃" // UTF-8 in a body sent as 8BITMIME
	dotLine  = ".a line that starts with a dot"
)

// needPostfix skips unless Postfix is installed and we may start its
// master (which must run as root).
func needPostfix(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(postfixBin); err != nil {
		t.Skipf("%s not installed (the CI script installs it: apt-get install postfix)", postfixBin)
	}
	if os.Geteuid() != 0 {
		t.Skip("starting a Postfix master needs root")
	}
	if _, err := user.Lookup("postfix"); err != nil {
		t.Skipf("no postfix user: %v", err)
	}
}

// postfix is one throwaway Postfix instance.
type postfix struct {
	t      *testing.T
	conf   string // config_directory
	spool  string // queue_directory
	vmail  string // virtual_mailbox_base
	log    string // maillog_file
	listen string // its smtpd, ip:port
	cmd    *exec.Cmd
	exited chan struct{}
}

// startPostfix starts a Postfix whose smtpd listens on listen, that
// delivers pf.example (bob@ and from@) to Maildirs under its vmail
// directory, routes what mainExtra's transport_maps names, and refuses
// every other destination without a DNS query.
func startPostfix(t *testing.T, listen, mainExtra string) *postfix {
	t.Helper()
	pu, err := user.Lookup("postfix")
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(pu.Uid)
	gid, _ := strconv.Atoi(pu.Gid)

	root := t.TempDir()
	// Postfix daemons drop to the postfix user (and the virtual agent
	// to the mailbox owner): they must be able to walk down to their
	// directories. t.TempDir makes both levels 0700.
	for _, d := range []string{filepath.Dir(root), root} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	p := &postfix{
		t:      t,
		conf:   filepath.Join(root, "etc"),
		spool:  filepath.Join(root, "spool"),
		vmail:  filepath.Join(root, "vmail"),
		log:    filepath.Join(root, "maillog"),
		listen: listen,
		exited: make(chan struct{}),
	}
	data := filepath.Join(root, "data")
	for _, d := range []string{p.conf, p.spool, data, p.vmail} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{data, p.vmail} {
		if err := os.Chown(d, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	certPEM, keyPEM, err := certs.SelfSigned("mx.pf.example")
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, b []byte, mode os.FileMode) {
		if err := os.WriteFile(filepath.Join(p.conf, name), b, mode); err != nil {
			t.Fatal(err)
		}
	}
	write("cert.pem", certPEM, 0o644)
	write("key.pem", keyPEM, 0o600)

	// chroot off everywhere: the queue is in a temporary directory.
	write("master.cf", []byte(listen+` inet n - n - - smtpd
pickup    unix  n - n 60 1 pickup
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
tlsmgr    unix  - - n 1000? 1 tlsmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
smtp      unix  - - n - - smtp
relay     unix  - - n - - smtp
showq     unix  n - n - - showq
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
virtual   unix  - n n - - virtual
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
`), 0o644)
	write("main.cf", []byte(fmt.Sprintf(`compatibility_level = 3.6
queue_directory = %[1]s
data_directory = %[2]s
mail_owner = postfix
maillog_file = %[3]s
maillog_file_prefixes = %[4]s
myhostname = mx.pf.example
mydomain = pf.example
myorigin = pf.example
mydestination =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
alias_maps =
alias_database =
biff = no

# No DNS at all: peers are IP literals, nothing else is routed.
smtpd_peername_lookup = no
smtp_dns_support_level = disabled
smtp_host_lookup = native
default_transport = error:5.1.2 this test Postfix routes nothing else
relay_transport = error:5.1.2 this test Postfix routes nothing else

# Retry quickly if a first attempt fails.
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s

virtual_mailbox_domains = pf.example
virtual_mailbox_base = %[5]s
virtual_mailbox_maps = inline:{ bob@pf.example=pf.example/bob/, from@pf.example=pf.example/from/ }
virtual_uid_maps = static:%[6]d
virtual_gid_maps = static:%[7]d

smtpd_tls_cert_file = %[8]s
smtpd_tls_key_file = %[9]s
smtpd_tls_security_level = may
smtpd_tls_loglevel = 1
smtpd_tls_received_header = yes
smtp_tls_security_level = may
smtp_tls_loglevel = 1
%[10]s
`, p.spool, data, p.log, root, p.vmail, uid, gid,
		filepath.Join(p.conf, "cert.pem"), filepath.Join(p.conf, "key.pem"), mainExtra)), 0o644)

	if out, err := p.run("check"); err != nil {
		t.Fatalf("postfix check: %v\n%s\nmaillog:\n%s", err, out, p.maillog())
	}

	// start-fg keeps the master a child of ours (postfix-script runs
	// "master -s" without detaching), in a process group of its own.
	out, err := os.Create(filepath.Join(root, "start-fg.out"))
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(postfixBin, "-c", p.conf, "start-fg")
	p.cmd.Stdout, p.cmd.Stderr = out, out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		out.Close()
		t.Fatal(err)
	}
	go func() {
		p.cmd.Wait()
		out.Close()
		close(p.exited)
	}()
	t.Cleanup(p.stop)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("Postfix maillog:\n%s", p.maillog())
		}
	})

	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", listen, time.Second)
		if err == nil {
			c.Close()
			break
		}
		select {
		case <-p.exited:
			b, _ := os.ReadFile(filepath.Join(root, "start-fg.out"))
			t.Fatalf("postfix start-fg exited: %s\nmaillog:\n%s", b, p.maillog())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("Postfix does not listen on %s: %v\nmaillog:\n%s", listen, err, p.maillog())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return p
}

// run runs the postfix command on this instance, bounded.
func (p *postfix) run(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, postfixBin, append([]string{"-c", p.conf}, args...)...).CombinedOutput()
	return string(out), err
}

// stop stops the master with "postfix stop"; if it has not gone within
// a bound, it and everything it started are killed by process group.
func (p *postfix) stop() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	select {
	case <-p.exited:
		return
	default:
	}
	masterPid := p.masterPid()
	if out, err := p.run("stop"); err != nil {
		p.t.Logf("postfix stop: %v\n%s", err, out)
	}
	// The master (a session leader: its pid is its process group) tells
	// its children to go and exits without waiting for them; wait for
	// them too, so that none still works in the directory the test is
	// about to remove.
	gone := func() bool {
		select {
		case <-p.exited:
		default:
			return false
		}
		return masterPid == 0 || len(liveInGroup(masterPid)) == 0
	}
	for deadline := time.Now().Add(30 * time.Second); !gone() && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	if gone() {
		return
	}
	if masterPid == 0 { // stopped before it wrote its pid file
		masterPid = p.masterPid()
	}
	p.t.Errorf("Postfix did not stop within 30s (processes %v left): killing its process groups", liveInGroup(masterPid))
	if masterPid > 0 {
		syscall.Kill(-masterPid, syscall.SIGKILL)
	}
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	for deadline := time.Now().Add(10 * time.Second); !gone() && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	if !gone() {
		p.t.Errorf("Postfix processes still running after SIGKILL: start-fg pid %d, group %d: %v", p.cmd.Process.Pid, masterPid, liveInGroup(masterPid))
	}
}

// masterPid is the master's pid from its pid file, or 0.
func (p *postfix) masterPid() int {
	b, err := os.ReadFile(filepath.Join(p.spool, "pid", "master.pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// liveInGroup lists the processes of a process group that have not
// exited (zombies waiting for init to reap them do not count).
func liveInGroup(pgid int) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp ...; comm may hold spaces.
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		if len(f) < 3 || f[0] == "Z" || f[0] == "X" {
			continue
		}
		if g, _ := strconv.Atoi(f[2]); g == pgid {
			out = append(out, pid)
		}
	}
	return out
}

func (p *postfix) maillog() string {
	b, _ := os.ReadFile(p.log)
	return string(b)
}

// waitMaillog waits until Postfix's log has a line matching re.
func (p *postfix) waitMaillog(re string) string {
	p.t.Helper()
	rx := regexp.MustCompile(re)
	var hit string
	waitFor(p.t, "Postfix log line matching "+re, func() bool {
		hit = rx.FindString(p.maillog())
		return hit != ""
	})
	return hit
}

// mailbox returns the messages in a pf.example Maildir's new/.
func (p *postfix) mailbox(local string) []string {
	return maildirFiles(p.t, filepath.Join(p.vmail, "pf.example", local))
}

// headerIndex is the position of the first header line starting with
// prefix and containing sub, or -1.
func headerIndex(msg, prefix, sub string) int {
	off := 0
	for _, l := range strings.SplitAfter(msg, "\n") {
		if strings.TrimRight(l, "\r\n") == "" {
			break // end of the header
		}
		if strings.HasPrefix(l, prefix) {
			// The field with its continuation lines.
			end := off + len(l)
			for _, c := range strings.SplitAfter(msg[end:], "\n") {
				if c == "" || (c[0] != ' ' && c[0] != '\t') {
					break
				}
				end += len(c)
			}
			if strings.Contains(msg[off:end], sub) {
				return off
			}
		}
		off += len(l)
	}
	return -1
}

// TestPostfixDeliversToPosthorn: a real Postfix takes mail from its own
// sendmail and over SMTP, and relays it for b.example to posthorn on
// 127.0.0.7 over STARTTLS; it lands in posthorn's Maildir with Postfix's
// Received header under posthorn's ESMTPS one.
func TestPostfixDeliversToPosthorn(t *testing.T) {
	needPostfix(t)
	portB := sharedPort(t, posthornPFIP)
	portPF := sharedPort(t, postfixIP)
	dnsSrv := dnstest.NewServer(t, dnstest.Zone{})
	dirB := t.TempDir()
	b := startWithConfig(t, dirB, instanceConfig(dirB, "mx.b.example", posthornPFIP, portB, 25, dnsSrv.Addr(),
		"[[domain]]\nname = \"b.example\"\nmailboxes = [\"bob\"]\n"), dnsSrv)
	pf := startPostfix(t, fmt.Sprintf("%s:%d", postfixIP, portPF),
		fmt.Sprintf("transport_maps = inline:{ b.example=smtp:[%s]:%d }", posthornPFIP, portB))

	// 1. Postfix's own sendmail(1): maildrop, pickup, cleanup, qmgr, smtp.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sm := exec.CommandContext(ctx, postfixSendmail, "-C", pf.conf, "-f", "from@pf.example", "bob@b.example")
	sm.Stdin = strings.NewReader("From: from@pf.example\nTo: bob@b.example\nSubject: from postfix sendmail\nMessage-ID: <pf-sendmail@pf.example>\n\nhello posthorn, from Postfix's sendmail\n")
	if out, err := sm.CombinedOutput(); err != nil {
		t.Fatalf("postfix sendmail: %v\n%s\nmaillog:\n%s", err, out, pf.maillog())
	}

	// 2. SMTP into Postfix's smtpd from a trusted network.
	c := testutil.Dial(t, pf.listen)
	c.ExpectCmd("EHLO app.pf.example", 250, "")
	c.ExpectCmd("MAIL FROM:<from@pf.example> BODY=8BITMIME", 250, "")
	c.ExpectCmd("RCPT TO:<bob@b.example>", 250, "")
	c.ExpectCmd("DATA", 354, "")
	c.ExpectCmd("From: from@pf.example\r\nTo: bob@b.example\r\nSubject: from postfix smtpd\r\nMessage-ID: <pf-smtpd@pf.example>\r\n"+
		"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"+
		"hello posthorn, through Postfix's smtpd\r\n"+eightBit+"\r\n."+dotLine+"\r\n.", 250, "")
	c.ExpectCmd("QUIT", 221, "")

	b.waitLog(`msg=delivered .*mailbox=bob@b.example`, 2)
	got := maildirFiles(t, filepath.Join(dirB, "data", "mail", "b.example", "bob"))
	if len(got) != 2 {
		t.Fatalf("%d messages in bob's Maildir, want 2", len(got))
	}
	seen := map[string]bool{}
	for _, m := range got {
		subj := ""
		for _, s := range []string{"from postfix sendmail", "from postfix smtpd"} {
			if strings.Contains(m, "Subject: "+s) {
				subj = s
			}
		}
		if subj == "" {
			t.Errorf("unexpected message in bob's Maildir:\n%s", m)
			continue
		}
		seen[subj] = true
		t.Logf("in posthorn's Maildir:\n%s", m)
		ours := headerIndex(m, "Received: ", "by mx.b.example (posthorn) with ESMTPS")
		theirs := headerIndex(m, "Received: ", "by mx.pf.example (Postfix")
		if ours < 0 {
			t.Errorf("%s: no posthorn Received header saying ESMTPS (Postfix used STARTTLS):\n%s", subj, m)
		}
		if theirs < 0 {
			t.Errorf("%s: no Received header by Postfix:\n%s", subj, m)
		}
		if ours >= 0 && theirs >= 0 && ours > theirs {
			t.Errorf("%s: posthorn's Received header is not above Postfix's:\n%s", subj, m)
		}
		if headerIndex(m, "Received: ", "from mx.pf.example") != ours {
			t.Errorf("%s: posthorn's Received header does not name Postfix's EHLO mx.pf.example:\n%s", subj, m)
		}
		if !strings.Contains(m, "hello posthorn") {
			t.Errorf("%s: body lost:\n%s", subj, m)
		}
		// Postfix downgrades 8-bit bodies to quoted-printable when the
		// next hop does not announce 8BITMIME: verbatim means it did.
		if subj == "from postfix smtpd" && (!strings.Contains(m, "\r\n"+eightBit+"\r\n"+dotLine+"\r\n") || !strings.Contains(m, "Content-Transfer-Encoding: 8bit\r\n")) {
			t.Errorf("%s: the 8-bit body or the line with a leading dot did not arrive verbatim:\n%s", subj, m)
		}
	}
	if len(seen) != 2 {
		t.Errorf("messages seen: %v, want both", seen)
	}
	// Postfix's side of the story: TLS to posthorn, then 250.
	pf.waitMaillog(`TLS connection established to ` + regexp.QuoteMeta(posthornPFIP) + `\[` + regexp.QuoteMeta(posthornPFIP) + `\]:` + strconv.Itoa(portB) + `: TLSv1\.[23]`)
	sent := regexp.MustCompile(`to=<bob@b\.example>, relay=` + regexp.QuoteMeta(posthornPFIP) + `\[` + regexp.QuoteMeta(posthornPFIP) + `\]:` + strconv.Itoa(portB) + `, .*status=sent \(250 `)
	waitFor(t, "Postfix to log both messages as sent", func() bool { return len(sent.FindAllString(pf.maillog(), -1)) == 2 })
}

// TestPosthornDeliversToPostfix: posthorn (a.example on 127.0.0.1) takes
// mail for pf.example, finds its MX in the test DNS, and delivers over
// STARTTLS to a real Postfix on 127.0.0.6, whose virtual delivery agent
// puts it in a Maildir.
func TestPosthornDeliversToPostfix(t *testing.T) {
	needPostfix(t)
	port := sharedPort(t, postfixIP)
	pf := startPostfix(t, fmt.Sprintf("%s:%d", postfixIP, port), "")
	a := worldA(t, port, dnstest.Zone{
		"pf.example":    {MX: mxs("mx.pf.example")},
		"mx.pf.example": {A: []string{postfixIP}},
	}, "1h")
	sendFromA(t, a, "posthorn to postfix", "bob@pf.example")
	// And an 8-bit one with a line that starts with a dot.
	c := testutil.Dial(t, a.addrs["smtp"])
	c.ExpectCmd("EHLO app.a.example", 250, "")
	c.ExpectCmd("MAIL FROM:<sender@a.example> BODY=8BITMIME", 250, "")
	c.ExpectCmd("RCPT TO:<bob@pf.example>", 250, "")
	c.ExpectCmd("DATA", 354, "")
	c.ExpectCmd("From: sender@a.example\r\nSubject: 8bit to postfix\r\nMessage-ID: <8bit@a.example>\r\n"+
		"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"+
		eightBit+"\r\n."+dotLine+"\r\n.", 250, "")
	c.ExpectCmd("QUIT", 221, "")

	a.waitLog(`msg="TLS established" .*server=\S*`+regexp.QuoteMeta(postfixIP), 1)
	a.waitLog(`msg="remote delivery" .*rcpt=bob@pf.example status=delivered .*tls=true`, 2)
	var got []string
	waitFor(t, "both messages in Postfix's Maildir for bob@pf.example", func() bool {
		got = pf.mailbox("bob")
		return len(got) >= 2
	})
	if len(got) != 2 {
		t.Fatalf("%d messages in bob@pf.example's Maildir, want 2", len(got))
	}
	var m, m8 string
	for _, g := range got {
		if strings.Contains(g, "Subject: 8bit to postfix") {
			m8 = g
		} else {
			m = g
		}
	}
	if m8 == "" || m == "" {
		t.Fatalf("messages in bob@pf.example's Maildir:\n%s", strings.Join(got, "\n----\n"))
	}
	t.Logf("in Postfix's Maildir:\n%s", m8)
	// Postfix stores LF line endings; the body must be byte for byte
	// what was submitted (8BITMIME passed on, dot-stuffing undone once).
	if !strings.Contains(m8, "\n\n"+eightBit+"\n"+dotLine+"\n") || !strings.Contains(m8, "Content-Transfer-Encoding: 8bit\n") {
		t.Errorf("the 8-bit body or the line with a leading dot did not arrive verbatim:\n%s", m8)
	}
	t.Logf("in Postfix's Maildir:\n%s", m)
	theirs := headerIndex(m, "Received: ", "by mx.pf.example (Postfix) with ESMTPS")
	ours := headerIndex(m, "Received: ", "by mx.a.example (posthorn)")
	if theirs < 0 {
		t.Errorf("no Received header by Postfix saying ESMTPS:\n%s", m)
	} else if headerIndex(m, "Received: ", "(using TLSv1.") != theirs {
		t.Errorf("Postfix's Received header does not record the TLS session:\n%s", m)
	}
	if headerIndex(m, "Received: ", "from mx.a.example") != theirs {
		t.Errorf("Postfix's Received header does not name posthorn's EHLO mx.a.example:\n%s", m)
	}
	if ours < 0 {
		t.Errorf("no Received header by posthorn A:\n%s", m)
	}
	if ours >= 0 && theirs >= 0 && theirs > ours {
		t.Errorf("Postfix's Received header is not above posthorn's:\n%s", m)
	}
	for _, want := range []string{"Subject: posthorn to postfix", "Message-ID: <posthorn-to-postfix@a.example>", "Return-Path: <sender@a.example>", "Delivered-To: bob@pf.example", "\nbody\n"} {
		if !strings.Contains(m, want) {
			t.Errorf("Postfix's copy lacks %q:\n%s", want, m)
		}
	}
	if strings.Contains(m, "\r") {
		t.Errorf("Postfix's copy has CR characters (posthorn sent bare CR or doubled CRLF):\n%q", m)
	}
	pf.waitMaillog(`TLS connection established from \S*\[127\.0\.0\.1\]: TLSv1\.[23]`)
	pf.waitMaillog(`to=<bob@pf\.example>, relay=virtual, .*status=sent \(delivered to maildir\)`)

	// A third message while a connection waits in posthorn's pool: it
	// goes over that connection, whose RSET check travels in the same
	// write as MAIL, RCPT and the message in BDAT LAST (Postfix offers
	// CHUNKING; RFC 2920, RFC 3030). Postfix takes the group without
	// complaint and counts the RSET when the idle connection is closed
	// (after 5 s).
	sendFromA(t, a, "posthorn to postfix again", "bob@pf.example")
	a.waitLog(`msg="remote delivery" .*rcpt=bob@pf.example status=delivered .*in_reply_to="BDAT LAST" .*tls=true`, 3)
	pf.waitMaillog(`disconnect from \S+ .*mail=[2-9] rcpt=[2-9] bdat=[2-9] rset=[1-9] quit=1`)
	if log := pf.maillog(); strings.Contains(log, "improper command pipelining") {
		t.Errorf("Postfix saw improper pipelining:\n%s", log)
	}
}
