package smtpserver

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/posthorn/posthorn/internal/policy"
	"github.com/posthorn/posthorn/internal/smtp"
	"github.com/posthorn/posthorn/internal/testutil"
)

// refusedAtConnect dials and returns what the server says before closing.
func refusedAtConnect(t *testing.T, addr string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	b, _ := io.ReadAll(c)
	return string(b)
}

func TestConnectionRateRefused421(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.Admission.ConnectionRate = 3 })
	for range 3 {
		c := testutil.Dial(t, h.addr[RoleSMTP])
		c.ExpectCmd("QUIT", 221, "")
	}
	if got := refusedAtConnect(t, h.addr[RoleSMTP]); !strings.HasPrefix(got, "421 4.7.0 ") || !strings.Contains(got, "in the last minute") {
		t.Fatalf("fourth connection in a minute got %q", got)
	}
}

func TestConnectionRateExemptsTrustedNetworks(t *testing.T) {
	h := newHarness(t, func(o *Options) {
		o.Admission.ConnectionRate = 1
		o.Policy = policy.New(policy.Options{TrustedNetworks: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	})
	for range 5 {
		c := testutil.Dial(t, h.addr[RoleSMTP])
		c.ExpectCmd("QUIT", 221, "")
	}
}

func TestConnectionsPerIPv6Slash64(t *testing.T) {
	s := New(Options{Admission: Admission{ConnectionsPerNet: 2}, Policy: policy.New(policy.Options{})})
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range []string{"2001:db8:1:2::1", "2001:db8:1:2:ffff::9"} {
		if why := s.admit(netip.MustParseAddr(a)); why != "" {
			t.Fatalf("%s refused: %s", a, why)
		}
	}
	if why := s.admit(netip.MustParseAddr("2001:db8:1:2::77")); !strings.Contains(why, "your network") {
		t.Fatalf("third connection from the /64 admitted (%q)", why)
	}
	if why := s.admit(netip.MustParseAddr("2001:db8:1:3::1")); why != "" {
		t.Fatalf("another /64 refused: %s", why)
	}
	for _, a := range []string{"192.0.2.1", "192.0.2.1", "192.0.2.1"} {
		if why := s.admit(netip.MustParseAddr(a)); why != "" {
			t.Fatalf("IPv4 counted by the /64 limit: %s", why)
		}
	}
	s.released(netip.MustParseAddr("2001:db8:1:2::1"))
	if why := s.admit(netip.MustParseAddr("2001:db8:1:2::77")); why != "" {
		t.Fatalf("slot not given back: %s", why)
	}
}

func TestMessageRatePerClient(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.Admission.MessageRate = 2 })
	c := testutil.Dial(t, h.addr[RoleSMTP])
	c.ExpectCmd("EHLO client.example.org", 250, "")
	for range 2 {
		c.ExpectCmd("MAIL FROM:<a@example.org>", 250, "")
		c.ExpectCmd("RSET", 250, "")
	}
	r := c.ExpectCmd("MAIL FROM:<a@example.org>", 450, "4.7.1")
	if !strings.Contains(r.Text(), "Too many messages") {
		t.Fatalf("reply %q does not say why", r.Text())
	}
}

func TestRecipientsPerSession(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.Admission.RecipientsPerSession = 3 })
	c := testutil.Dial(t, h.addr[RoleSMTP])
	c.ExpectCmd("EHLO client.example.org", 250, "")
	c.ExpectCmd("MAIL FROM:<a@example.org>", 250, "")
	c.ExpectCmd("RCPT TO:<alice@example.test>", 250, "")
	c.ExpectCmd("RCPT TO:<bob@example.test>", 250, "")
	c.ExpectCmd("DATA", 354, "")
	c.ExpectCmd("Subject: x\r\n\r\nx\r\n.", 250, "")
	c.ExpectCmd("MAIL FROM:<a@example.org>", 250, "")
	c.ExpectCmd("RCPT TO:<alice@example.test>", 250, "")
	c.ExpectCmd("RCPT TO:<bob@example.test>", 452, "4.5.3")
}

func TestTarpitDelaysErrorsAfterSoftLimit(t *testing.T) {
	h := newHarness(t, func(o *Options) {
		o.Admission.SoftErrorLimit = 2
		o.Admission.ErrorDelay = 150 * time.Millisecond
	})
	c := testutil.Dial(t, h.addr[RoleSMTP])
	start := time.Now()
	for range 2 {
		c.ExpectCmd("XYZZY", 500, "5.5.2")
	}
	early := time.Since(start)
	start = time.Now()
	c.ExpectCmd("XYZZY", 500, "5.5.2") // 1 over: 150ms
	c.ExpectCmd("XYZZY", 500, "5.5.2") // 2 over: 300ms
	if d := time.Since(start); d < 450*time.Millisecond {
		t.Fatalf("errors over the soft limit answered in %v (the first two took %v); want at least 450ms of delay", d, early)
	}
	c.ExpectCmd("NOOP", 250, "") // a good command is not delayed, and the session goes on
}

func TestMinimumDataRate(t *testing.T) {
	h := newHarness(t, func(o *Options) {
		o.Limits.DataTimeout = 800 * time.Millisecond
		o.Admission.MinDataRate = 1000
	})
	c := testutil.Dial(t, h.addr[RoleSMTP])
	c.ExpectCmd("EHLO client.example.org", 250, "")
	c.ExpectCmd("MAIL FROM:<a@example.org>", 250, "")
	c.ExpectCmd("RCPT TO:<alice@example.test>", 250, "")
	c.ExpectCmd("DATA", 354, "")
	// Ten octets every 200ms: each read comes well within the data
	// timeout, but the transfer is far slower than 1000 octets/s.
	done := make(chan smtp.Reply, 1)
	go func() {
		r, _ := smtp.ReadReply(c.BR)
		done <- r
	}()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case r := <-done:
			if r.Code != 421 || r.Enhanced != "4.4.2" || !strings.Contains(r.Text(), "data rate too low") {
				t.Fatalf("slow client got %q", r.Error())
			}
			if h.queuedCount() != 0 {
				t.Fatal("a message was queued")
			}
			return
		case <-deadline:
			t.Fatal("slow DATA never cut off")
		case <-time.After(200 * time.Millisecond):
			c.Conn.Write([]byte("xxxxxxxx\r\n"))
		}
	}
}

func TestMessageMemoryBound(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.Admission.MaxDataMemory = TransferMemory })
	start := func() *testutil.Conn {
		c := testutil.Dial(t, h.addr[RoleSMTP])
		c.ExpectCmd("EHLO client.example.org", 250, "")
		c.ExpectCmd("MAIL FROM:<a@example.org>", 250, "")
		c.ExpectCmd("RCPT TO:<alice@example.test>", 250, "")
		return c
	}
	a, b := start(), start()
	a.ExpectCmd("DATA", 354, "")
	r := b.ExpectCmd("DATA", 452, "4.3.1")
	if !strings.Contains(r.Text(), "Insufficient system resources") {
		t.Fatalf("reply %q does not say why", r.Text())
	}
	a.ExpectCmd("Subject: a\r\n\r\na\r\n.", 250, "")
	// The refusal kept b's transaction: DATA may be tried again.
	b.ExpectCmd("DATA", 354, "")
	b.ExpectCmd("Subject: b\r\n\r\nb\r\n.", 250, "")
}

func TestStorageFullIs452(t *testing.T) {
	err := fmt.Errorf("spool: x: %w", &os.PathError{Op: "write", Path: "/x", Err: syscall.ENOSPC})
	if r := storageReply(err); r.Code != 452 || r.Enhanced != "4.3.1" || !strings.Contains(r.Text(), "Insufficient system storage") {
		t.Fatalf("disk full answered %q", r.Error())
	}
	if r := storageReply(io.ErrShortWrite); r.Code != 451 || r.Enhanced != "4.3.0" {
		t.Fatalf("other failure answered %q", r.Error())
	}
}

// screenFor returns a Screen refusing as told.
func screenFor(connect, helo, rcpt error) Screen {
	return func(ip netip.Addr, log *slog.Logger) Screening {
		return Screening{
			Connect: func(context.Context) error { return connect },
			Helo: func(_ context.Context, name string) error {
				if name == "bad.example.org" {
					return helo
				}
				return nil
			},
			Rcpt: func(_ context.Context, from, to string) error {
				if strings.HasPrefix(to, "bob@") {
					return rcpt
				}
				return nil
			},
		}
	}
}

func TestScreenRefusedAtConnectServesOnlyQuit(t *testing.T) {
	h := newHarness(t, func(o *Options) {
		o.Screen = screenFor(smtp.R(554, "5.7.1", "Service unavailable; client [127.0.0.1] blocked using bl.example: see https://bl.example/"), nil, nil)
	})
	c, err := net.Dial("tcp", h.addr[RoleSMTP])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	g, err := smtp.ReadReply(br)
	if err != nil || g.Code != 554 || g.Enhanced != "5.7.1" || !strings.Contains(g.Text(), "bl.example") {
		t.Fatalf("greeting %q %v", g.Error(), err)
	}
	for _, cmd := range []string{"EHLO client.example.org", "MAIL FROM:<a@example.org>"} {
		io.WriteString(c, cmd+"\r\n")
		if r, _ := smtp.ReadReply(br); r.Code != 503 || r.Enhanced != "5.7.1" {
			t.Fatalf("%s after a 554 greeting: %q", cmd, r.Error())
		}
	}
	io.WriteString(c, "QUIT\r\n")
	if r, _ := smtp.ReadReply(br); r.Code != 221 {
		t.Fatalf("QUIT: %q", r.Error())
	}
	// Submission is never screened.
	s := testutil.Dial(t, h.addr[RoleSubmission])
	s.ExpectCmd("EHLO client.example.org", 250, "")
}

func TestScreenTemporaryAtConnectIs421(t *testing.T) {
	h := newHarness(t, func(o *Options) {
		o.Screen = screenFor(smtp.R(450, "4.7.25", "Cannot check the reverse DNS of your address right now"), nil, nil)
	})
	if got := refusedAtConnect(t, h.addr[RoleSMTP]); !strings.HasPrefix(got, "421 4.7.25 ") {
		t.Fatalf("got %q", got)
	}
}

func TestScreenAtHeloAndRcpt(t *testing.T) {
	h := newHarness(t, func(o *Options) {
		o.Screen = screenFor(nil, smtp.R(504, "5.5.2", "need a fully qualified host name"), smtp.R(451, "4.7.1", "Greylisted: please try again in 300 seconds"))
	})
	c := testutil.Dial(t, h.addr[RoleSMTP])
	c.ExpectCmd("EHLO bad.example.org", 504, "5.5.2")
	c.ExpectCmd("EHLO good.example.org", 250, "")
	c.ExpectCmd("MAIL FROM:<a@example.org>", 250, "")
	c.ExpectCmd("RCPT TO:<alice@example.test>", 250, "")
	c.ExpectCmd("RCPT TO:<bob@example.test>", 451, "4.7.1")
	c.ExpectCmd("RCPT TO:<nobody@example.test>", 550, "5.1.1") // the directory answers first
}

// MAIL is refused 452 4.3.1 while the spool's file system has less free
// than Limits.MinFreeSpace, or than 1.5 times the declared SIZE, so that
// a client hears it before sending the data (Postfix's queue_minfree).
// The thresholds are set around the real free space of the test's disk.
func TestMailRefusedWhenTheSpoolDiskIsNearlyFull(t *testing.T) {
	var free int64
	h := newHarness(t, func(o *Options) {
		f, err := o.Spool.FreeSpace()
		if err != nil || f <= 0 {
			t.Skipf("free space of the spool's file system: %d, %v", f, err)
		}
		free = f
		o.Limits.MinFreeSpace = 2 * f // more than there is
		o.Limits.MessageSize = 1 << 62
	})
	c := testutil.Dial(t, h.addr[RoleSMTP])
	c.ExpectCmd("EHLO client.example.org", 250, "")
	r := c.ExpectCmd("MAIL FROM:<a@example.org>", 452, "4.3.1")
	if !strings.Contains(r.Text(), "Insufficient system storage") {
		t.Fatalf("reply %q does not say why", r.Text())
	}
	// Not a protocol error: the session goes on.
	c.ExpectCmd("NOOP", 250, "")

	h2 := newHarness(t, func(o *Options) {
		o.Limits.MinFreeSpace = 1 // any disk has that
		o.Limits.MessageSize = 1 << 62
	})
	c2 := testutil.Dial(t, h2.addr[RoleSMTP])
	c2.ExpectCmd("EHLO client.example.org", 250, "")
	c2.ExpectCmd(fmt.Sprintf("MAIL FROM:<a@example.org> SIZE=%d", free), 452, "4.3.1") // 1.5 × SIZE is not there
	c2.ExpectCmd("MAIL FROM:<a@example.org> SIZE=1000", 250, "")
	c2.ExpectCmd("RCPT TO:<alice@example.test>", 250, "")
	c2.ExpectCmd("DATA", 354, "")
	c2.ExpectCmd("Subject: x\r\n\r\nx\r\n.", 250, "")
}
