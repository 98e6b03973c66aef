package outbound

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/posthorn/posthorn/internal/smtp"
)

// FuzzReadReply checks the reply parser the client relies on
// (internal/smtp.ReadReply) and the EHLO keyword parser on any bytes.
func FuzzReadReply(f *testing.F) {
	for _, s := range []string{
		"250 ok\r\n",
		"250-mx.example.net\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250-AUTH=LOGIN PLAIN\r\n250 8BITMIME\r\n",
		"550-5.1.1 first\r\n550 5.1.1 second\r\n",
		"550-5.1.1 first\r\n551 changed\r\n",
		"220 ready\r\n250 injected\r\n",
		"2500\r\n", "25\r\n", "250", "250-\n250 \n", "999 x\r\n", "250-SIZE -1\r\n250 SIZE 99999999999999999999\r\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		br := bufio.NewReader(strings.NewReader(in))
		for range 10 {
			r, err := smtp.ReadReply(br)
			if err != nil {
				return
			}
			if r.Code < 100 || r.Code > 599 || len(r.Lines) == 0 {
				t.Fatalf("reply %+v from %q", r, in)
			}
			for _, l := range r.Lines {
				// A CR inside a line is kept by ReadReply (seed
				// 337ff1cd8e35cddd); details must not carry it.
				if strings.Contains(l, "\n") {
					t.Fatalf("line with LF %q", l)
				}
			}
			if strings.ContainsAny(ReplyLine(r), "\r\n\x00") {
				t.Fatalf("detail with control characters: %q", ReplyLine(r))
			}
			if r.Enhanced != "" && (!smtp.IsEnhancedCode(r.Enhanced) || r.Enhanced[0] != byte('0'+r.Code/100)) {
				t.Fatalf("enhanced code %q with reply code %d", r.Enhanced, r.Code)
			}
			ext := parseExtensions(r)
			if ext.MaxSize < 0 {
				t.Fatalf("negative SIZE from %q", in)
			}
		}
	})
}

// FuzzClient runs a whole client transaction against a server that
// sends arbitrary bytes: the client must neither panic nor hang, and may
// only call a recipient delivered after a 2xx to the end of data (the
// final dot, or BDAT LAST when the server offers CHUNKING). With
// reused, the transaction starts with the pooled connection's RSET check
// (ResetFirst): a stale connection (ErrStale) leaves every recipient
// without a reply, so that it can be tried again elsewhere.
func FuzzClient(f *testing.F) {
	for _, s := range []string{
		"220 hi\r\n250-x\r\n250 PIPELINING\r\n250 ok\r\n250 ok\r\n550 no\r\n354 go\r\n250 done\r\n",
		"220 hi\r\n250 x\r\n250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n250 done\r\n",
		"220 hi\r\n500 no\r\n250 helo\r\n250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n421 bye\r\n",
		"220 hi\r\n250-x\r\n250 PIPELINING\r\n550 no\r\n503 a\r\n503 b\r\n250 reset\r\n",
		"554 go away\r\n",
		"220 hi\r\n250-x\r\n250 PIPELINING\r\n250 ok\r\n250 ok",
		"220 hi\r\n250-x\r\n250 PIPELINING\r\n250 reset\r\n250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n250 done\r\n",
		"220 hi\r\n250-x\r\n250 PIPELINING\r\n421 idle\r\n250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n",
		"220 hi\r\n250-x\r\n250 PIPELINING\r\n250 ok\r\n550 no\r\n550 no\r\n354 go\r\n250 empty\r\n",
		"220 hi\r\n250-x\r\n250-PIPELINING\r\n250 CHUNKING\r\n250 ok\r\n250 ok\r\n550 no\r\n250 taken\r\n",
		"220 hi\r\n250-x\r\n250-PIPELINING\r\n250 CHUNKING\r\n250 reset\r\n553 no\r\n503 a\r\n503 b\r\n503 c\r\n250 reset\r\n",
		"220 hi\r\n250-x\r\n250-CHUNKING\r\n250 PIPELINING\r\n250 ok\r\n550 no\r\n550 no\r\n554 nobody\r\n",
	} {
		f.Add(s, false, false)
		f.Add(s, true, false)
		f.Add(s, false, true)
	}
	f.Fuzz(func(t *testing.T, script string, lmtp, reused bool) {
		cli, srv := net.Pipe()
		defer cli.Close()
		go func() {
			defer srv.Close()
			go io.Copy(io.Discard, srv)
			io.WriteString(srv, script)
		}()
		ctx := context.Background()
		o := ClientOptions{Hostname: "fuzz.example", LMTP: lmtp, Timeouts: Timeouts{
			Greeting: time.Second, Command: time.Second, Mail: time.Second, Rcpt: time.Second,
			DataInit: time.Second, DataBlock: time.Second, DataFinal: time.Second}}
		c, err := NewClient(ctx, cli, o)
		if err != nil {
			return
		}
		if err := c.Hello(ctx); err != nil {
			return
		}
		if reused {
			if err := c.ResetFirst(ctx); err != nil {
				return
			}
		}
		res, err := c.Send(ctx, &Message{From: "a@example.org", Rcpts: []Rcpt{{Addr: "b@example.net"}, {Addr: "c@example.net"}},
			Body: strings.NewReader("Subject: x\r\n\r\nhi\r\n")})
		if len(res) != 2 {
			t.Fatalf("%d responses", len(res))
		}
		for _, r := range res {
			if r.Reply.Code/100 == 2 && !r.Final() && (err == nil || r.Command != "RCPT TO") {
				t.Fatalf("2xx %+v", r)
			}
			if errors.Is(err, ErrStale) && r.Reply.Code != 0 {
				t.Fatalf("stale connection (%v), yet a reply for a recipient: %+v", err, r)
			}
		}
		c.Close()
	})
}
