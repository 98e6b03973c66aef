package smtpserver

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/posthorn/posthorn/internal/policy"
	"github.com/posthorn/posthorn/internal/smtp"
	"github.com/posthorn/posthorn/internal/spool"
	"github.com/posthorn/posthorn/internal/testutil"
)

// lockedBuffer collects log output from session goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// FuzzSession drives a whole session over net.Pipe with arbitrary client
// bytes. The session must never panic, every byte it writes must be
// well-formed replies, and it must end when the input ends.
func FuzzSession(f *testing.F) {
	seeds := []string{
		"EHLO a.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\nSubject: x\r\n\r\nhi\r\n.\r\nQUIT\r\n",
		"HELO a\r\nMAIL FROM:<>\r\nRCPT TO:<bob@example.test> NOTIFY=SUCCESS ORCPT=rfc822;x+40y\r\nBDAT 5 LAST\r\nhelloQUIT\r\n",
		"EHLO a\r\nMAIL FROM:<a@b> BODY=8BITMIME SMTPUTF8\r\nRCPT TO:<ü@example.test>\r\nDATA\r\na\nb\r\n.\r\nRSET\r\n",
		"EHLO a\r\nSTARTTLS\r\nRSET\r\n",
		"GET / HTTP/1.1\r\n\r\n",
		"EHLO a\r\nAUTH PLAIN AGEAYg==\r\nAUTH LOGIN\r\n*\r\n",
		"EHLO a\r\nMAIL FROM:<a@b>\r\nRCPT TO:<alice@example.test>\r\nBDAT 3\r\nabcDATA\r\nBDAT x\r\n",
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	dir := f.TempDir()
	sp, err := spool.Open(spool.Options{Dir: dir})
	if err != nil {
		f.Fatal(err)
	}
	cert := testutil.NewCert(f)
	var logs lockedBuffer
	srv := New(Options{
		Hostname: "mx.example.test",
		Spool:    sp,
		Policy: policy.New(policy.Options{
			LocalDomain:    func(d string) bool { return d == "example.test" },
			LocalRecipient: func(a string) (bool, error) { return strings.HasPrefix(a, "alice@"), nil },
		}),
		Auth:   users{"a": "b"},
		TLS:    &tls.Config{Certificates: []tls.Certificate{cert.Server}},
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
		Limits: Limits{MessageSize: 1 << 16, CommandTimeout: 5 * time.Second, DataTimeout: 5 * time.Second},
	})
	f.Fuzz(func(t *testing.T, in []byte) {
		client, server := net.Pipe()
		srv.mu.Lock()
		sess := newSession(srv, server, RoleSubmission, "fuzz", netip.MustParseAddr("127.0.0.1"))
		srv.mu.Unlock()
		done := make(chan struct{})
		go func() { sess.run(); close(done) }()
		var out bytes.Buffer
		readDone := make(chan struct{})
		go func() { io.Copy(&out, client); close(readDone) }()
		client.SetWriteDeadline(time.Now().Add(5 * time.Second))
		client.Write(in)
		client.Close()
		<-done
		<-readDone
		if strings.Contains(logs.String(), "panic") {
			t.Fatalf("session panicked:\n%s", logs.String())
		}
		br := bufio.NewReader(&out)
		for {
			r, err := smtp.ReadReply(br)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("malformed reply bytes: %v\n%q", err, out.String())
			}
			if r.Code != 220 && r.Code != 221 && r.Code != 250 && r.Code != 334 && r.Code != 354 && r.Code != 235 && r.Code != 252 && r.Code != 214 && r.Code/100 != 4 && r.Code/100 != 5 {
				t.Fatalf("unexpected reply %q", r.Error())
			}
		}
	})
}
