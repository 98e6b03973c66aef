package lmtp

import (
	"bufio"
	"context"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/posthorn/posthorn/internal/outbound"
	"github.com/posthorn/posthorn/internal/queue"
	"github.com/posthorn/posthorn/internal/spool"
	"github.com/posthorn/posthorn/internal/testutil"
)

// script is a scripted LMTP server: the reply to each RCPT and the reply
// for each accepted recipient after the data, by local part.
type script struct {
	rcpt  map[string]string // default 250
	final map[string]string // default 250
	lhlo  string            // replaces the LHLO reply

	mu    sync.Mutex
	lines []string
	body  string
}

func (s *script) serve(t *testing.T, ln net.Listener) {
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go s.session(c)
		}
	}()
}

func (s *script) session(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(c)
	w := func(l string) { io.WriteString(c, l+"\r\n") }
	w("220 lmtp.test LMTP ready")
	var accepted []string
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		s.mu.Lock()
		s.lines = append(s.lines, line)
		s.mu.Unlock()
		verb, arg, _ := strings.Cut(line, " ")
		switch verb {
		case "LHLO":
			if s.lhlo != "" {
				w(s.lhlo)
				continue
			}
			w("250-lmtp.test")
			w("250-PIPELINING")
			w("250-8BITMIME")
			w("250-ENHANCEDSTATUSCODES")
			w("250 SIZE 100000")
		case "MAIL":
			accepted = nil
			w("250 2.1.0 OK")
		case "RCPT":
			addr := strings.Trim(strings.TrimPrefix(arg, "TO:"), "<>")
			local, _, _ := strings.Cut(addr, "@")
			r := "250 2.1.5 OK"
			if x, ok := s.rcpt[local]; ok {
				r = x
			}
			if strings.HasPrefix(r, "2") {
				accepted = append(accepted, local)
			}
			w(r)
		case "DATA":
			w("354 OK")
			var b strings.Builder
			for {
				l, err := br.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
				b.WriteString(strings.TrimPrefix(l, "."))
			}
			s.mu.Lock()
			s.body = b.String()
			s.mu.Unlock()
			// RFC 2033 4.2: one reply per accepted recipient, in order,
			// written together.
			var all strings.Builder
			for _, local := range accepted {
				r := "250 2.0.0 <" + local + "> saved"
				if x, ok := s.final[local]; ok {
					r = x
				}
				all.WriteString(r + "\r\n")
			}
			io.WriteString(c, all.String())
		case "RSET":
			w("250 2.0.0 OK")
		case "QUIT":
			w("221 2.0.0 bye")
			return
		default:
			w("500 5.5.2 what?")
		}
	}
}

func (s *script) seen() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.lines...)
}

const msg = "From: a@example.org\r\nSubject: hi\r\n\r\nHello.\r\n.dot\r\n"

func envelope(rcpts ...string) *spool.Envelope {
	e := &spool.Envelope{ID: "LMTPTEST", From: "a@example.org", Size: int64(len(msg))}
	for _, r := range rcpts {
		e.Recipients = append(e.Recipients, spool.Recipient{Addr: r})
	}
	return e
}

func body() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(msg)), nil }

func TestPerRecipientRepliesAfterData(t *testing.T) {
	s := &script{
		rcpt:  map[string]string{"nobody": "550 5.1.1 <nobody@example.com> User doesn't exist"},
		final: map[string]string{"full": "452 4.2.2 <full> Mailbox is full", "huge": "552 5.2.2 <huge> Quota exceeded (mailbox for user is full)"},
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.serve(t, ln)
	d := New(Options{Hostname: "mx.example.com", Logger: testutil.Logger(t)})
	rcpts := []string{"alice@example.com", "nobody@example.com", "full@example.com", "huge@example.com", "bob@example.com"}
	tgt, err := ParseTarget("lmtp:tcp:" + ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	out := d.Deliver(context.Background(), tgt, envelope(rcpts...), body, rcpts)
	want := []queue.Status{queue.Delivered, queue.Failed, queue.Deferred, queue.Failed, queue.Delivered}
	for i := range want {
		if out[i].Status != want[i] {
			t.Errorf("%s: %v %q, want %v", rcpts[i], out[i].Status, out[i].Detail, want[i])
		}
	}
	if want := "lmtp:tcp:" + ln.Addr().String() + ": 452 4.2.2 <full> Mailbox is full"; out[2].Detail != want {
		t.Errorf("detail %q, want %q", out[2].Detail, want)
	}
	if want := "250 2.0.0 <bob> saved"; !strings.HasSuffix(out[4].Detail, want) {
		t.Errorf("bob got %q: replies out of step", out[4].Detail)
	}
	lines := s.seen()
	if lines[0] != "LHLO mx.example.com" || lines[len(lines)-1] != "QUIT" {
		t.Errorf("dialog %q", lines)
	}
	s.mu.Lock()
	if s.body != msg {
		t.Errorf("body %q", s.body)
	}
	s.mu.Unlock()
}

func TestUnixSocketAndMailbox(t *testing.T) {
	s := &script{}
	path := filepath.Join(t.TempDir(), "lmtp")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	s.serve(t, ln)
	d := New(Options{Hostname: "mx.example.com"})
	o := d.DeliverMailboxes(context.Background(), envelope("Alice+tag@Example.com"), body, "lmtp:unix:"+path, []string{"alice@example.com"})[0]
	if o.Status != queue.Delivered {
		t.Fatalf("%+v", o)
	}
	found := false
	for _, l := range s.seen() {
		found = found || l == "RCPT TO:<alice@example.com>"
	}
	if !found {
		t.Errorf("dialog %q", s.seen())
	}
}

func TestServerTroubleDefers(t *testing.T) {
	d := New(Options{Hostname: "mx.example.com", Timeouts: outbound.Timeouts{Connect: 5 * time.Second}})
	// Nobody listens on the socket.
	o := d.DeliverMailboxes(context.Background(), envelope("a@example.com"), body, "lmtp:unix:"+filepath.Join(t.TempDir(), "none"), []string{"a@example.com"})[0]
	if o.Status != queue.Deferred || !strings.HasPrefix(o.Detail, "4.4.1 ") {
		t.Errorf("no server: %+v", o)
	}
	// LHLO refused.
	s := &script{lhlo: "554 5.3.0 go away"}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.serve(t, ln)
	o = d.DeliverMailboxes(context.Background(), envelope("a@example.com"), body, "lmtp:tcp:"+ln.Addr().String(), []string{"a@example.com"})[0]
	if o.Status != queue.Deferred || !strings.HasSuffix(o.Detail, ": 554 5.3.0 go away") {
		t.Errorf("LHLO refused: %+v", o)
	}
	if o := d.DeliverMailboxes(context.Background(), envelope("a@example.com"), body, "maildir", []string{"a@example.com"})[0]; o.Status != queue.Deferred {
		t.Errorf("bad target: %+v", o)
	}
}

func TestParseTarget(t *testing.T) {
	good := map[string]Target{
		"lmtp:unix:/run/dovecot/lmtp":  {"unix", "/run/dovecot/lmtp"},
		"lmtp:tcp:127.0.0.1:24":        {"tcp", "127.0.0.1:24"},
		"lmtp:tcp:[::1]:24":            {"tcp", "[::1]:24"},
		"lmtp:tcp:imap.example.com:24": {"tcp", "imap.example.com:24"},
	}
	for in, want := range good {
		if got, err := ParseTarget(in); err != nil || got != want || got.String() != in {
			t.Errorf("ParseTarget(%q) = %+v, %v", in, got, err)
		}
	}
	for _, in := range []string{"", "maildir", "lmtp:", "lmtp:unix:", "lmtp:unix:rel", "lmtp:tcp:host", "lmtp:tcp::24", "lmtp:udp:1.2.3.4:24", "lmtp:tcp:h:0"} {
		if _, err := ParseTarget(in); err == nil {
			t.Errorf("ParseTarget(%q) succeeded", in)
		}
	}
}
