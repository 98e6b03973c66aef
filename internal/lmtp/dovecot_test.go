package lmtp

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/posthorn/posthorn/internal/queue"
	"github.com/posthorn/posthorn/internal/testutil"
)

// TestDovecotLMTP delivers to a real Dovecot (Debian: dovecot-core,
// dovecot-lmtpd) started with a throwaway configuration: one recipient
// that exists and one that does not, in one transaction.
func TestDovecotLMTP(t *testing.T) {
	dc := testutil.StartDovecot(t, "alice@example.com")
	sock, mail := dc.Socket, dc.MailDir
	d := New(Options{Hostname: "mx.example.com", Logger: testutil.Logger(t)})
	body := "From: a@example.org\r\nTo: alice@example.com\r\nSubject: via LMTP\r\n\r\nHello Dovecot.\r\n.a line with a leading dot\r\n"
	env := envelope("alice@example.com", "nobody@example.com")
	env.Size = int64(len(body))
	tgt := Target{Network: "unix", Address: sock}
	out := d.Deliver(context.Background(), tgt, env, bodyOf(body), []string{"alice@example.com", "nobody@example.com"})
	if out[0].Status != queue.Delivered || out[1].Status != queue.Failed || !strings.Contains(out[1].Detail, "550 5.1.1") {
		t.Fatalf("outcomes %+v\n%s", out, dc.Log())
	}
	files, _ := filepath.Glob(filepath.Join(mail, "example.com", "alice", "new", "*"))
	if len(files) != 1 {
		t.Fatalf("%d files in alice's new/, want 1", len(files))
	}
	got, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	// Dovecot stores LF line endings and adds Return-Path and Delivered-To.
	g := strings.ReplaceAll(string(got), "\r\n", "\n")
	if !strings.Contains(g, "Return-Path: <a@example.org>\n") || !strings.Contains(g, "Delivered-To: alice@example.com\n") ||
		!strings.HasSuffix(g, strings.ReplaceAll(body, "\r\n", "\n")) {
		t.Errorf("stored message:\n%s", got)
	}
}

func bodyOf(s string) func() (io.ReadCloser, error) {
	return func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(s)), nil }
}
