package delivery

import (
	"bufio"
	"context"
	"io"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/posthorn/posthorn/internal/directory"
	"github.com/posthorn/posthorn/internal/lmtp"
	"github.com/posthorn/posthorn/internal/queue"
	"github.com/posthorn/posthorn/internal/spool"
)

// fakeLMTP is an LMTP server on a unix socket that records each
// transaction's recipients and refuses those it is told to.
type fakeLMTP struct {
	mu     sync.Mutex
	txns   [][]string
	refuse map[string]string // rcpt -> reply at RCPT
}

func startFakeLMTP(t *testing.T, refuse map[string]string) (string, *fakeLMTP) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "lmtp")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	f := &fakeLMTP{refuse: refuse}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go f.serve(c)
		}
	}()
	return "lmtp:unix:" + sock, f
}

func (f *fakeLMTP) serve(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	io.WriteString(c, "220 fake LMTP\r\n")
	var rcpts []string
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		verb := strings.ToUpper(strings.Fields(line + " x")[0])
		switch verb {
		case "LHLO":
			io.WriteString(c, "250-fake\r\n250-PIPELINING\r\n250 ENHANCEDSTATUSCODES\r\n")
		case "MAIL":
			rcpts = nil
			io.WriteString(c, "250 2.1.0 ok\r\n")
		case "RCPT":
			addr := strings.Trim(line[strings.IndexByte(line, ':')+1:], "<> ")
			if r, ok := f.refuse[addr]; ok {
				io.WriteString(c, r+"\r\n")
				continue
			}
			rcpts = append(rcpts, addr)
			io.WriteString(c, "250 2.1.5 ok\r\n")
		case "DATA":
			io.WriteString(c, "354 go on\r\n")
			for {
				l, err := br.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
			}
			f.mu.Lock()
			f.txns = append(f.txns, rcpts)
			f.mu.Unlock()
			for range rcpts {
				io.WriteString(c, "250 2.0.0 delivered\r\n")
			}
		case "RSET":
			rcpts = nil
			io.WriteString(c, "250 2.0.0 ok\r\n")
		case "QUIT":
			io.WriteString(c, "221 2.0.0 bye\r\n")
			return
		default:
			io.WriteString(c, "500 5.5.1 what\r\n")
		}
	}
}

// All LMTP mailboxes of a message go to their target in one transaction,
// each mailbox once even when several recipients reach it (an alias and
// its member); a recipient is delivered only when each of its mailboxes
// took the message, and gets the server's refusal otherwise.
func TestLMTPMailboxesShareOneTransaction(t *testing.T) {
	target, f := startFakeLMTP(t, map[string]string{"c@dove.example": "550 5.1.1 no such user"})
	dir, err := directory.New(directory.Options{
		Domains: []directory.Domain{{Name: "dove.example", Mailboxes: []string{"a", "b", "c"}, Delivery: target}},
		Aliases: map[string][]string{"team@dove.example": {"a@dove.example", "b@dove.example"}, "mixed@dove.example": {"b@dove.example", "c@dove.example"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	r := New(Options{Directory: dir, MailRoot: t.TempDir(), LMTP: lmtp.New(lmtp.Options{Hostname: "mx.test"})})
	env := &spool.Envelope{ID: "T1", From: "s@example.org", Size: 20}
	for _, a := range []string{"a@dove.example", "team@dove.example", "c@dove.example", "mixed@dove.example"} {
		env.Recipients = append(env.Recipients, spool.Recipient{Addr: a})
	}
	body := func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader("Subject: x\r\n\r\nx\r\n")), nil }
	out := r.Deliver(context.Background(), env, body, []int{0, 1, 2, 3})

	if len(f.txns) != 1 {
		t.Fatalf("%d LMTP transactions, want 1: %q", len(f.txns), f.txns)
	}
	if got := f.txns[0]; !slices.Equal(got, []string{"a@dove.example", "b@dove.example"}) {
		t.Fatalf("transaction delivered to %q, want a and b once each", got)
	}
	want := []queue.Status{queue.Delivered, queue.Delivered, queue.Failed, queue.Failed}
	for i, o := range out {
		if o.Status != want[i] {
			t.Errorf("%s: %v %q, want %v", env.Recipients[i].Addr, o.Status, o.Detail, want[i])
		}
	}
	if !strings.Contains(out[2].Detail, "550 5.1.1") {
		t.Errorf("c's outcome does not carry the server's refusal: %q", out[2].Detail)
	}
}

// A Maildir reached by two recipients of one message (a user and an
// alias that includes the user) gets one copy.
func TestMaildirGetsOneCopyPerMessage(t *testing.T) {
	dir, err := directory.New(directory.Options{
		Domains: []directory.Domain{{Name: "example.test", Mailboxes: []string{"bob", "carol"}}},
		Aliases: map[string][]string{"team@example.test": {"bob@example.test", "carol@example.test"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	r := New(Options{Directory: dir, MailRoot: root})
	env := &spool.Envelope{ID: "T2", From: "s@example.org", Size: 20,
		Recipients: []spool.Recipient{{Addr: "bob@example.test"}, {Addr: "team@example.test"}}}
	body := func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader("Subject: x\r\n\r\nx\r\n")), nil }
	for i, o := range r.Deliver(context.Background(), env, body, []int{0, 1}) {
		if o.Status != queue.Delivered {
			t.Fatalf("recipient %d: %v %q", i, o.Status, o.Detail)
		}
	}
	for user, want := range map[string]int{"bob": 1, "carol": 1} {
		files, _ := filepath.Glob(filepath.Join(root, "example.test", user, "new", "*"))
		if len(files) != want {
			t.Errorf("%s has %d copies, want %d", user, len(files), want)
		}
	}
}
