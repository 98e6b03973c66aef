package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/posthorn/posthorn/internal/dns/dnstest"
	"github.com/posthorn/posthorn/internal/smtp"
	"github.com/posthorn/posthorn/internal/testutil"
)

// The reliability suite: faults injected into a real daemon, each test
// bounded in count and time, each reporting a row of the table
// test/reliability/run.sh prints (fault, behaviour, acknowledged, lost,
// the command that reproduces it).

// report logs one row of the reliability table.
func report(t *testing.T, fault, behaviour string, acked, lost int) {
	t.Helper()
	t.Logf("RELIABILITY|%s|%s|%d|%d|go test ./cmd/posthorn -run '^%s$' -v", fault, behaviour, acked, lost, t.Name())
	if lost != 0 {
		t.Errorf("%d acknowledged messages lost", lost)
	}
}

// envInt reads a bound from the environment, with a smaller default
// under -short.
func envInt(name string, def, short int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	if testing.Short() {
		return short
	}
	return def
}

// needAbuseWiring skips tests of features that exist only once serve.go
// calls newAbuse.
func needAbuseWiring(t *testing.T, d *daemon) {
	t.Helper()
	if !strings.Contains(d.logText(), `msg="abuse limits"`) {
		t.Skip("newAbuse is not wired into serve.go (and deliveryTimeouts into remote.go) yet")
	}
}

// sendRaw sends one message over a fresh connection and returns the reply
// to the end of data (Code 0 when the connection failed before it).
func sendRaw(addr, from, rcpt, body string, local net.Addr) (smtp.Reply, error) {
	dl := net.Dialer{Timeout: 5 * time.Second, LocalAddr: local}
	c, err := dl.Dial("tcp", addr)
	if err != nil {
		return smtp.Reply{}, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(c)
	if r, err := smtp.ReadReply(br); err != nil || r.Code != 220 {
		return r, fmt.Errorf("greeting %q: %v", r.Error(), err)
	}
	for _, cmd := range []string{"EHLO load.example.org", "MAIL FROM:<" + from + ">", "RCPT TO:<" + rcpt + ">", "DATA"} {
		if _, err := io.WriteString(c, cmd+"\r\n"); err != nil {
			return smtp.Reply{}, err
		}
		r, err := smtp.ReadReply(br)
		if err != nil {
			return smtp.Reply{}, err
		}
		if r.Code >= 400 {
			return r, nil
		}
	}
	if _, err := io.WriteString(c, body+".\r\n"); err != nil {
		return smtp.Reply{}, err
	}
	r, err := smtp.ReadReply(br)
	if err != nil {
		return smtp.Reply{}, err
	}
	io.WriteString(c, "QUIT\r\n")
	return r, nil
}

// mailText returns every message in the Maildirs under root.
func mailText(t *testing.T, root string) string {
	var b strings.Builder
	filepath.Walk(root, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() && filepath.Base(filepath.Dir(p)) == "new" {
			data, _ := os.ReadFile(p)
			b.Write(data)
			b.WriteString("\x00")
		}
		return nil
	})
	return b.String()
}

// waitTokens waits until every token is in the Maildirs under root and
// returns the tokens missing at the bound, and how many appear twice.
func waitTokens(t *testing.T, root string, tokens []string, bound time.Duration) (missing []string, dups int) {
	deadline := time.Now().Add(bound)
	for {
		text := mailText(t, root)
		missing, dups = nil, 0
		for _, tok := range tokens {
			switch n := strings.Count(text, "Subject: "+tok+"\r\n"); {
			case n == 0:
				missing = append(missing, tok)
			case n > 1:
				dups++
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			return missing, dups
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// SIGKILL of the daemon under 50-session load, many times: every message
// acknowledged with 250 is in a Maildir in the end.
func TestReliabilitySIGKILLUnderLoad(t *testing.T) {
	cycles := envInt("RELIABILITY_CYCLES", 20, 3)
	const sessions = 50
	dir := t.TempDir()
	extra := "\n[limits]\nconnections_per_ip = 200\n\n[queue]\nfirst_retry = \"1s\"\nmax_retry = \"2s\"\n"
	var acked []string
	var mu sync.Mutex
	for cycle := range cycles {
		d := startDaemon(t, dir, extra)
		addr := d.addrs["smtp"]
		var (
			wg     sync.WaitGroup
			n      atomic.Int64
			stop   atomic.Bool
			enough = make(chan struct{})
			once   sync.Once
		)
		for s := range sessions {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := 0; !stop.Load() && j < 200; j++ {
					tok := fmt.Sprintf("k%d-s%d-m%d", cycle, s, j)
					r, err := sendRaw(addr, "load@example.org", fmt.Sprintf("u%d@localhost", s%10), "Subject: "+tok+"\r\n\r\n"+tok+"\r\n", nil)
					if err != nil {
						return // killed
					}
					if r.Code == 250 {
						mu.Lock()
						acked = append(acked, tok)
						mu.Unlock()
						if n.Add(1) >= 2*sessions {
							once.Do(func() { close(enough) })
						}
					}
				}
			}()
		}
		select {
		case <-enough:
		case <-time.After(30 * time.Second):
		}
		d.kill()
		stop.Store(true)
		wg.Wait()
	}
	d := startDaemon(t, dir, extra)
	_ = d
	missing, dups := waitTokens(t, filepath.Join(dir, "data", "mail"), acked, 180*time.Second)
	report(t, fmt.Sprintf("SIGKILL under %d-session load, %d cycles", sessions, cycles),
		fmt.Sprintf("restarted each time; the queue resumed from the spool; %d duplicates (deliveries in flight)", dups), len(acked), len(missing))
	if len(missing) > 0 {
		t.Fatalf("lost e.g. %v", missing[:min(5, len(missing))])
	}
}

// The data directory on a small tmpfs that fills up: clients get 452
// 4.3.1, never 250 for a message that was not stored; when space returns,
// service resumes and everything acknowledged is delivered.
func TestReliabilityDiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	dir := t.TempDir()
	mnt := filepath.Join(dir, "data")
	os.MkdirAll(mnt, 0o700)
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs (%v: %s): run as root with CAP_SYS_ADMIN", err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() { exec.Command("umount", "-l", mnt).Run() })
	// message_size 1 MB: MAIL needs 1.5 MB free (min_free_space's
	// default), so the refusal comes at MAIL, before the data is sent.
	d := startDaemon(t, dir, "\n[queue]\nfirst_retry = \"1s\"\nmax_retry = \"2s\"\n[limits]\nmessage_size = \"1MB\"\n")
	addr := d.addrs["smtp"]

	// Fill the disk, leaving about 200 KB.
	filler := filepath.Join(mnt, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 64<<10)
	for {
		var st syscall.Statfs_t
		syscall.Statfs(mnt, &st)
		if int64(st.Bavail)*int64(st.Bsize) < 256<<10 {
			break
		}
		if _, err := f.Write(chunk); err != nil {
			break
		}
	}
	f.Close()

	body := strings.Repeat("0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz\r\n", 700) // ~50 KB
	var acked, refused []string
	codes := map[string]int{}
	for i := range 20 {
		tok := fmt.Sprintf("full%d", i)
		r, err := sendRaw(addr, "a@example.org", "bob@example.test", "Subject: "+tok+"\r\n\r\n"+body, nil)
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		codes[fmt.Sprintf("%d %s", r.Code, r.Enhanced)]++
		switch {
		case r.Code == 250:
			acked = append(acked, tok)
		case r.Code == 452 && r.Enhanced == "4.3.1":
			refused = append(refused, tok)
		default:
			t.Fatalf("message %d on a full disk: %q; want 250 or 452 4.3.1", i, r.Error())
		}
	}
	if len(refused) == 0 {
		t.Fatalf("the disk never filled: %v", codes)
	}
	os.Remove(filler) // space returns
	for i := range 5 {
		tok := fmt.Sprintf("after%d", i)
		r, err := sendRaw(addr, "a@example.org", "bob@example.test", "Subject: "+tok+"\r\n\r\n"+body, nil)
		if err != nil || r.Code != 250 {
			t.Fatalf("after space returned: %q %v", r.Error(), err)
		}
		acked = append(acked, tok)
	}
	missing, _ := waitTokens(t, filepath.Join(mnt, "mail"), acked, 120*time.Second)
	text := mailText(t, filepath.Join(mnt, "mail"))
	for _, tok := range refused {
		if strings.Contains(text, "Subject: "+tok+"\r\n") {
			t.Errorf("%s was refused with 452 but delivered anyway", tok)
		}
	}
	report(t, "data dir on a 4 MB tmpfs fills up", fmt.Sprintf("replies %v; service resumed when space returned", codes), len(acked), len(missing))
}

// worldWithDNS is worldA with the DNS server in the test's hands.
// delivery is added to its [delivery] table, rest to the end.
func worldWithDNS(t *testing.T, port int, zone dnstest.Zone, delivery, rest string) (*daemon, *dnstest.Server) {
	t.Helper()
	dnsSrv := dnstest.NewServer(t, zone)
	dir := t.TempDir()
	cfg := instanceConfig(dir, "mx.a.example", "127.0.0.1", 0, port, dnsSrv.Addr(), "[[domain]]\nname = \"a.example\"\nmailboxes = [\"sender\"]\n\n[relay]\ntrusted_networks = [\"127.0.0.0/8\"]\n"+rest)
	cfg = strings.Replace(cfg, "[delivery]\n", "[delivery]\n"+delivery, 1)
	return startWithConfig(t, dir, cfg, dnsSrv), dnsSrv
}

// The DNS server stops answering: mail is deferred, not lost, and goes
// out when DNS answers again.
func TestReliabilityDNSStopsAnswering(t *testing.T) {
	port := sharedPort(t, "127.0.0.3")
	f := newFakeMX(t, fmt.Sprintf("127.0.0.3:%d", port), func(string, int) string { return "250 2.1.5 ok" })
	good := dnstest.Zone{"c.example": {MX: mxs("mx.c.example")}, "mx.c.example": {A: []string{"127.0.0.3"}}, "a.example": {TXT: []string{"v=spf1 ip4:127.0.0.1 -all"}}}
	a, dnsSrv := worldWithDNS(t, port, dnstest.Zone{
		"c.example": {Timeout: true}, "mx.c.example": {Timeout: true}, "a.example": {Timeout: true}, "example.org": {Timeout: true},
	}, "", "")
	sendFromA(t, a, "dns down", "u@c.example")
	// A message from outside to a local user while DNS is dead: its SPF
	// check cannot be made; it is taken (temperror) or deferred, not lost.
	r, err := sendRaw(a.addrs["smtp"], "x@example.org", "sender@a.example", "Subject: inbound while dns down\r\n\r\nx\r\n", &net.TCPAddr{IP: net.ParseIP("127.0.0.9")})
	if err != nil {
		t.Fatal(err)
	}
	acked := 1
	if r.Code == 250 {
		acked++
	} else if r.Code < 400 || r.Code >= 500 {
		t.Fatalf("inbound with DNS down: %q, want 250 or 4xx", r.Error())
	}
	a.waitLog(`rcpt=u@c.example status=deferred`, 1)
	dnsSrv.SetZone(good)
	a.waitLog(`msg="remote delivery" .*rcpt=u@c.example status=delivered`, 1)
	lost := 0
	if f.count("u@c.example") != 1 {
		lost = 1
	}
	if acked == 2 {
		if _, err := waitTokensErr(t, a, "inbound while dns down"); err != nil {
			lost++
		}
	}
	report(t, "DNS server stops answering", fmt.Sprintf("outbound deferred, delivered once DNS answered; inbound answered %d %s", r.Code, r.Enhanced), acked, lost)
}

func waitTokensErr(t *testing.T, a *daemon, subject string) (string, error) {
	missing, _ := waitTokens(t, filepath.Join(a.dir, "data", "mail"), []string{subject}, 60*time.Second)
	if len(missing) > 0 {
		return "", errors.New("missing")
	}
	return subject, nil
}

// A remote MX resets the connection in the middle of DATA: the delivery is
// deferred and made again, once.
func TestReliabilityRemoteResetsMidDATA(t *testing.T) {
	port := sharedPort(t, "127.0.0.3")
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.3:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var conns, resets, delivered atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n := conns.Add(1)
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(60 * time.Second))
				br := bufio.NewReader(c)
				io.WriteString(c, "220 flaky.example ESMTP\r\n")
				for {
					line, err := br.ReadString('\n')
					if err != nil {
						return
					}
					switch strings.ToUpper(strings.Fields(line + " x")[0]) {
					case "EHLO":
						io.WriteString(c, "250-flaky.example\r\n250 8BITMIME\r\n")
					case "DATA":
						io.WriteString(c, "354 go on\r\n")
						if n == 1 {
							io.ReadFull(br, make([]byte, 10000)) // part of the body
							c.(*net.TCPConn).SetLinger(0)        // RST
							resets.Add(1)
							return
						}
						var raw []byte
						for !strings.HasSuffix(string(raw), "\r\n.\r\n") {
							b, err := br.ReadByte()
							if err != nil {
								return
							}
							raw = append(raw, b)
						}
						delivered.Add(1)
						io.WriteString(c, "250 2.0.0 stored\r\n")
					case "QUIT":
						io.WriteString(c, "221 bye\r\n")
						return
					default:
						io.WriteString(c, "250 ok\r\n")
					}
				}
			}()
		}
	}()
	a, _ := worldWithDNS(t, port, dnstest.Zone{"c.example": {MX: mxs("mx.c.example")}, "mx.c.example": {A: []string{"127.0.0.3"}}, "a.example": {TXT: []string{"v=spf1 ip4:127.0.0.1 -all"}}}, "", "")
	big := strings.Repeat("line of the body that is long enough to need several packets\r\n", 2000)
	r, err := sendRaw(a.addrs["smtp"], "sender@a.example", "u@c.example", "Subject: reset\r\n\r\n"+big, nil)
	if err != nil || r.Code != 250 {
		t.Fatalf("%q %v", r.Error(), err)
	}
	a.waitLog(`rcpt=u@c.example status=deferred`, 1)
	a.waitLog(`msg="remote delivery" .*rcpt=u@c.example status=delivered`, 1)
	lost := 0
	if delivered.Load() != 1 {
		lost = 1
	}
	report(t, "remote MX resets the connection mid-DATA", fmt.Sprintf("deferred after %d reset, then delivered %d time(s)", resets.Load(), delivered.Load()), 1, lost)
}

// A client disconnects in the middle of DATA or BDAT: nothing partial is
// queued or delivered.
func TestReliabilityClientDisconnectsMidDATA(t *testing.T) {
	d := startDaemon(t, t.TempDir(), "")
	for _, mode := range []string{"DATA", "BDAT", "DATA-RST"} {
		c := testutil.Dial(t, d.addrs["smtp"])
		c.ExpectCmd("EHLO client.example.org", 250, "")
		c.ExpectCmd("MAIL FROM:<a@example.org>", 250, "")
		c.ExpectCmd("RCPT TO:<bob@example.test>", 250, "")
		switch mode {
		case "BDAT":
			c.Send("BDAT 100000 LAST\r\nSubject: partial " + mode + "\r\n\r\nhalf a message")
		default:
			c.ExpectCmd("DATA", 354, "")
			c.Send("Subject: partial " + mode + "\r\n\r\nhalf a message\r\n")
		}
		if mode == "DATA-RST" {
			c.Conn.(*net.TCPConn).SetLinger(0)
		}
		c.Conn.Close()
	}
	d.waitLog(`message not received: connection lost during (DATA|BDAT)`, 3)
	// A complete message after them is the only one stored.
	r, err := sendRaw(d.addrs["smtp"], "a@example.org", "bob@example.test", "Subject: complete\r\n\r\nall of it\r\n", nil)
	if err != nil || r.Code != 250 {
		t.Fatalf("%q %v", r.Error(), err)
	}
	d.waitLog(`msg=delivered .*mailbox=bob@example.test`, 1)
	d.waitLog(`queue: message done`, 1)
	text := mailText(t, filepath.Join(d.dir, "data", "mail"))
	out, _ := cli(t, "", "queue", "list", "-c", d.config)
	if strings.Contains(text, "partial") || strings.Count(text, "\x00") != 1 {
		t.Fatalf("partial message delivered:\n%s", text)
	}
	// Files in the queue directory whose header is not zero are
	// messages; the others are the spool's spare files.
	spooled, _ := filepath.Glob(filepath.Join(d.dir, "data", "spool", "queue", "*"))
	withHeader := 0
	for _, f := range spooled {
		if b, err := os.ReadFile(f); err == nil && len(bytes.Trim(b[:min(len(b), 8)], "\x00")) > 0 {
			withHeader++
		}
	}
	if withHeader != 0 {
		t.Fatalf("%d queue files with a header left after the dropped transactions", withHeader)
	}
	report(t, "client disconnects mid-DATA/mid-BDAT (FIN and RST)", fmt.Sprintf("transaction dropped, nothing queued (queue list: %q; no queue file with a header, %d spare files)", strings.TrimSpace(out), len(spooled)), 1, 0)
}

// A remote server stalls: the configured timeouts fire, the message is
// deferred and goes out once the server answers. A client that stalls is
// cut off by the command and data timeouts.
func TestReliabilityRemoteStalls(t *testing.T) {
	port := sharedPort(t, "127.0.0.3")
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.3:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var stall atomic.Bool
	stall.Store(true)
	var delivered atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(60 * time.Second))
				br := bufio.NewReader(c)
				io.WriteString(c, "220 slow.example ESMTP\r\n")
				for {
					line, err := br.ReadString('\n')
					if err != nil {
						return
					}
					if stall.Load() {
						io.Copy(io.Discard, br) // never answer
						return
					}
					switch strings.ToUpper(strings.Fields(line + " x")[0]) {
					case "DATA":
						io.WriteString(c, "354 go on\r\n")
						var raw []byte
						for !strings.HasSuffix(string(raw), "\r\n.\r\n") {
							b, err := br.ReadByte()
							if err != nil {
								return
							}
							raw = append(raw, b)
						}
						delivered.Add(1)
						io.WriteString(c, "250 2.0.0 stored\r\n")
					case "QUIT":
						io.WriteString(c, "221 bye\r\n")
						return
					default:
						io.WriteString(c, "250 ok\r\n")
					}
				}
			}()
		}
	}()
	a, _ := worldWithDNS(t, port, dnstest.Zone{"c.example": {MX: mxs("mx.c.example")}, "mx.c.example": {A: []string{"127.0.0.3"}}, "a.example": {TXT: []string{"v=spf1 ip4:127.0.0.1 -all"}}},
		"timeout = \"2s\"\n", "\n[limits]\ncommand_timeout = \"2s\"\ndata_timeout = \"2s\"\n")
	needAbuseWiring(t, a)
	sendFromA(t, a, "stalled", "u@c.example")
	a.waitLog(`rcpt=u@c.example status=deferred`, 1)
	stall.Store(false)
	a.waitLog(`msg="remote delivery" .*rcpt=u@c.example status=delivered`, 1)

	// Inbound: a client that says nothing, and one that stops in DATA.
	idle := testutil.Dial(t, a.addrs["smtp"])
	if r := idle.Read(); r.Code != 421 || r.Enhanced != "4.4.2" {
		t.Fatalf("idle client: %q", r.Error())
	}
	c := testutil.Dial(t, a.addrs["smtp"])
	c.ExpectCmd("EHLO client.example.org", 250, "")
	c.ExpectCmd("MAIL FROM:<x@example.org>", 250, "")
	c.ExpectCmd("RCPT TO:<sender@a.example>", 250, "")
	c.ExpectCmd("DATA", 354, "")
	c.Send("Subject: stalled client\r\n\r\npart")
	if r := c.Read(); r.Code != 421 || r.Enhanced != "4.4.2" {
		t.Fatalf("client stalled in DATA: %q", r.Error())
	}
	a.waitLog(`timeout; closing`, 2)
	if strings.Contains(mailText(t, filepath.Join(a.dir, "data", "mail")), "stalled client") {
		t.Fatal("the message of the client that stalled in DATA was delivered")
	}
	lost := 0
	if delivered.Load() != 1 {
		lost = 1
	}
	report(t, "remote MX stalls; clients stall", "delivery timed out after 2s and was deferred, then delivered once; idle and stalled-in-DATA clients got 421 4.4.2 after 2s, nothing queued", 1, lost)
}

// 10,000 idle connections from many loopback addresses: the per-IP cap
// holds, the daemon answers a new client at once, and the memory each
// idle session costs is measured.
func TestReliabilityIdleConnections(t *testing.T) {
	n := envInt("RELIABILITY_IDLE", 10000, 1000)
	const perIP = 20
	var lim syscall.Rlimit
	syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
	if need := uint64(n + 1000); lim.Cur < need { // each process: the test holds the clients, the daemon the sessions
		lim.Cur = max(need, lim.Cur)
		if lim.Max < lim.Cur {
			lim.Max = lim.Cur
		}
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			t.Skipf("need %d file descriptors (ulimit -n), have %d: %v", need, lim.Cur, err)
		}
	}
	d := startDaemon(t, t.TempDir(), fmt.Sprintf("\n[limits]\nconnections = %d\nconnections_per_ip = %d\n", n+100, perIP))
	addr := d.addrs["smtp"]
	rss0 := rssKB(d.cmd.Process.Pid)

	var (
		mu    sync.Mutex
		conns []net.Conn
		fails atomic.Int64
		wg    sync.WaitGroup
		next  atomic.Int64
	)
	deadline := time.Now().Add(120 * time.Second)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || time.Now().After(deadline) {
					return
				}
				ip := srcIP(i / perIP)
				dl := net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: ip}}
				c, err := dl.Dial("tcp", addr)
				if err != nil {
					fails.Add(1)
					continue
				}
				c.SetReadDeadline(time.Now().Add(30 * time.Second))
				line, err := bufio.NewReader(c).ReadString('\n')
				if err != nil || !strings.HasPrefix(line, "220 ") {
					fails.Add(1)
					c.Close()
					continue
				}
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	if len(conns) < n*99/100 {
		t.Fatalf("only %d of %d idle connections admitted (%d failed)", len(conns), n, fails.Load())
	}
	time.Sleep(time.Second) // let the sessions settle into their reads
	rss1 := rssKB(d.cmd.Process.Pid)

	// The cap: one more from an address that has its 20.
	extra, err := (&net.Dialer{LocalAddr: &net.TCPAddr{IP: srcIP(0)}}).Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	extra.SetDeadline(time.Now().Add(30 * time.Second))
	b, _ := io.ReadAll(extra)
	extra.Close()
	if !strings.HasPrefix(string(b), "421 4.7.0") {
		t.Fatalf("connection %d from one address got %q", perIP+1, b)
	}
	// A new client is served.
	start := time.Now()
	r, err := sendRaw(addr, "a@example.org", "bob@example.test", "Subject: while 10k idle\r\n\r\nx\r\n", &net.TCPAddr{IP: net.ParseIP("127.0.0.1")})
	took := time.Since(start)
	if err != nil || r.Code != 250 {
		t.Fatalf("new client while %d idle: %q %v", len(conns), r.Error(), err)
	}
	perSession := 0
	if rss1 > rss0 {
		perSession = (rss1 - rss0) * 1024 / len(conns)
	}
	report(t, fmt.Sprintf("%d idle connections from %d loopback addresses", len(conns), (len(conns)+perIP-1)/perIP),
		fmt.Sprintf("connection %d from one address refused 421 4.7.0; a new client's whole message took %v; daemon RSS %d MB -> %d MB, about %d KB per idle session",
			perIP+1, took.Round(time.Millisecond), rss0/1024, rss1/1024, perSession/1024), 1, 0)
}

// srcIP is the i-th source address: 127.1.0.1, 127.1.0.2, ...
func srcIP(i int) net.IP {
	return net.IPv4(127, 1, byte(i/250), byte(i%250+1))
}

// rssKB returns a process's resident set in KB, from /proc.
func rssKB(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	m := regexp.MustCompile(`VmRSS:\s+(\d+) kB`).FindSubmatch(b)
	if m == nil {
		return 0
	}
	v, _ := strconv.Atoi(string(m[1]))
	return v
}

// limits.line_length reaches the DATA reader: a 1,500-octet line is
// refused by default (RFC 5321's 1000) and accepted with line_length 2000,
// for the senders that break the rule.
func TestLineLengthIsConfigurable(t *testing.T) {
	long := "Subject: long\r\n\r\n" + strings.Repeat("x", 1500) + "\r\n"
	def := startDaemon(t, t.TempDir(), "")
	r, err := sendRaw(def.addrs["smtp"], "a@example.org", "bob@example.test", long, nil)
	t.Logf("default limit: %s", r.Error())
	if err != nil || r.Code != 500 && r.Code != 550 && r.Code != 552 && r.Code != 554 {
		t.Fatalf("1500-octet line with the default limit: %q %v; want refused", r.Error(), err)
	}
	raised := startDaemon(t, t.TempDir(), "\n[limits]\nline_length = 2000\n")
	r, err = sendRaw(raised.addrs["smtp"], "a@example.org", "bob@example.test", long, nil)
	if err != nil || r.Code != 250 {
		t.Fatalf("1500-octet line with line_length 2000: %q %v", r.Error(), err)
	}
}
