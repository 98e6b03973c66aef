package ctl

import (
	"io"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

func TestTextReaderLineEndingsAndDot(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      string
		dotEnds bool
		want    string
	}{
		{"LF", "a\nb\n", false, "a\r\nb\r\n"},
		{"CRLF kept", "a\r\nb\r\n", false, "a\r\nb\r\n"},
		{"lone CR", "a\rb", false, "a\r\nb\r\n"},
		{"CR CRLF", "a\r\r\nb", false, "a\r\n\r\nb\r\n"},
		{"last line ended", "a\nno newline", false, "a\r\nno newline\r\n"},
		{"trailing CR", "a\r", false, "a\r\n"},
		{"empty", "", false, ""},
		{"dot ends", "a\n.\nafter\n", true, "a\r\n"},
		{"dot CRLF ends", "a\r\n.\r\nafter\r\n", true, "a\r\n"},
		{"dot at EOF ends", "a\n.", true, "a\r\n"},
		{"dot first line", ".\nx", true, ""},
		{"dot with text stays", "a\n.b\n..\n", true, "a\r\n.b\r\n..\r\n"},
		{"dot inside a line", "a.\n", true, "a.\r\n"},
		{"-i keeps the dot", "a\n.\nafter\n", false, "a\r\n.\r\nafter\r\n"},
	} {
		for _, slow := range []bool{false, true} {
			var r io.Reader = strings.NewReader(tc.in)
			if slow {
				r = iotest.OneByteReader(r) // every state crosses a read boundary
			}
			got, err := io.ReadAll(newTextReader(r, tc.dotEnds))
			if err != nil || string(got) != tc.want {
				t.Errorf("%s (one byte reads %v): %q, %v; want %q", tc.name, slow, got, err, tc.want)
			}
		}
	}
}

func TestTextReaderPassesReadErrors(t *testing.T) {
	_, err := io.ReadAll(newTextReader(iotest.TimeoutReader(strings.NewReader("abc")), false))
	if err != iotest.ErrTimeout {
		t.Fatalf("err = %v", err)
	}
}

func readAll(t *testing.T, m *LocalMessage) string {
	t.Helper()
	b, err := io.ReadAll(m.Reader())
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestReadMessageRecipientsAndBcc(t *testing.T) {
	in := "From: Alice <alice@example.org>\n" +
		"To: Bob <bob@example.net>, carol@example.net\n" +
		"Cc: \"Dave, D.\" <dave@example.net>,\n\tbob@EXAMPLE.net\n" +
		"Bcc: secret@example.com\n" +
		"Subject: hello\n" +
		"\n" +
		"Body with To: in it\n.\nnot this\n"
	m, err := ReadMessage(strings.NewReader(in), true)
	if err != nil {
		t.Fatal(err)
	}
	rcpts, err := m.Recipients()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(rcpts, " "); got != "bob@example.net carol@example.net dave@example.net secret@example.com" {
		t.Fatalf("recipients %q", got)
	}
	m.RemoveBcc()
	want := "From: Alice <alice@example.org>\r\n" +
		"To: Bob <bob@example.net>, carol@example.net\r\n" +
		"Cc: \"Dave, D.\" <dave@example.net>,\r\n\tbob@EXAMPLE.net\r\n" +
		"Subject: hello\r\n" +
		"\r\n" +
		"Body with To: in it\r\n"
	if got := readAll(t, m); got != want {
		t.Fatalf("message:\n%q\nwant\n%q", got, want)
	}
}

func TestReadMessageShapes(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
		rcpts          string
	}{
		{"no header section", "just text\nmore\n", "\r\njust text\r\nmore\r\n", ""},
		{"mbox From line dropped", "From alice Mon Jun  1 12:00:00 2025\nTo: a@x.example\n\nhi\n", "To: a@x.example\r\n\r\nhi\r\n", "a@x.example"},
		{"headers only", "To: a@x.example\nSubject: s", "To: a@x.example\r\nSubject: s\r\n", "a@x.example"},
		{"Resent- fields win", "To: old@x.example\nResent-To: new@x.example\nResent-Bcc: hidden@x.example\n\nb\n", "To: old@x.example\r\nResent-To: new@x.example\r\n\r\nb\r\n", "new@x.example hidden@x.example"},
		{"group syntax", "To: undisclosed-recipients:;\nBcc: a@x.example\n\nb\n", "To: undisclosed-recipients:;\r\n\r\nb\r\n", "a@x.example"},
		{"encoded name", "To: =?UTF-8?Q?J=C3=BCrgen?= <j@x.example>\n\nb\n", "To: =?UTF-8?Q?J=C3=BCrgen?= <j@x.example>\r\n\r\nb\r\n", "j@x.example"},
		{"empty field", "To:\nCc: a@x.example\n\nb\n", "To:\r\nCc: a@x.example\r\n\r\nb\r\n", "a@x.example"},
	} {
		m, err := ReadMessage(strings.NewReader(tc.in), false)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		rcpts, err := m.Recipients()
		if err != nil || strings.Join(rcpts, " ") != tc.rcpts {
			t.Errorf("%s: recipients %q, %v; want %q", tc.name, rcpts, err, tc.rcpts)
		}
		m.RemoveBcc()
		if got := readAll(t, m); got != tc.want {
			t.Errorf("%s: message %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestReadMessageRefusesBadAddressesAndHugeHeaders(t *testing.T) {
	m, err := ReadMessage(strings.NewReader("To: <unterminated@x.example\n\nb\n"), false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Recipients(); err == nil || !strings.Contains(err.Error(), "To: field") {
		t.Fatalf("Recipients of a broken To: %v", err)
	}
	huge := "X-Big: " + strings.Repeat("a", MaxHeaderSize) + "\n\nb\n"
	if _, err := ReadMessage(strings.NewReader(huge), false); err == nil {
		t.Fatal("a header section over the limit was read")
	}
}

func TestFromField(t *testing.T) {
	if got := FromField("Jürgen Müller", "juergen@mx.example"); got != "From: =?utf-8?q?J=C3=BCrgen_M=C3=BCller?= <juergen@mx.example>\r\n" {
		t.Fatalf("%q", got)
	}
	if got := FromField("", "a@x.example"); got != "From: <a@x.example>\r\n" {
		t.Fatalf("%q", got)
	}
	if got := FromField("Cron Daemon", "root@x.example"); got != "From: \"Cron Daemon\" <root@x.example>\r\n" {
		t.Fatalf("%q", got)
	}
}

func TestLocalReceived(t *testing.T) {
	got := string(LocalReceived("mx.example.com", "0abc", 1000, time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)))
	want := "Received: by mx.example.com (posthorn, from userid 1000)\r\n\tid 0abc; Sun, 01 Jun 2025 12:00:00 +0000\r\n"
	if got != want {
		t.Fatalf("%q", got)
	}
}
