package message

import (
	"bytes"
	"strings"
	"testing"
)

func TestHeaderFilterDropsOnlyMatchingFields(t *testing.T) {
	in := "Received: from a\r\n\tby b\r\nAuthentication-Results: mx.example.test;\r\n spf=pass\r\nSubject: hi\r\nAuthentication-Results: other.example; dkim=pass\r\n\r\nAuthentication-Results: mx.example.test; in the body\r\n"
	want := "Received: from a\r\n\tby b\r\nSubject: hi\r\nAuthentication-Results: other.example; dkim=pass\r\n\r\nAuthentication-Results: mx.example.test; in the body\r\n"
	drop := func(name, value string) bool {
		return strings.EqualFold(name, "Authentication-Results") && strings.HasPrefix(value, "mx.example.test;")
	}
	// Every way of cutting the stream into writes gives the same result.
	for chunk := 1; chunk <= len(in); chunk++ {
		var out bytes.Buffer
		f := &HeaderFilter{W: &out, Drop: drop}
		for i := 0; i < len(in); i += chunk {
			f.Write([]byte(in[i:min(i+chunk, len(in))]))
		}
		f.Close()
		if out.String() != want {
			t.Fatalf("chunk %d: got %q", chunk, out.String())
		}
	}
}

func TestHeaderFilterMessageWithoutBody(t *testing.T) {
	var out bytes.Buffer
	f := &HeaderFilter{W: &out, Drop: func(string, string) bool { return false }}
	f.Write([]byte("Subject: only a header\r\nX-Last: no newline"))
	f.Close()
	if out.String() != "Subject: only a header\r\nX-Last: no newline" {
		t.Fatalf("got %q", out.String())
	}
}

func TestReadHeaderUnfoldsAndStopsAtBody(t *testing.T) {
	h, err := ReadHeader(strings.NewReader("From: A <a@example.org>\r\nSubject: one\r\n two\r\nTo: b@example.test\r\n\r\nFrom: body@example.net\r\n"), 1000)
	if err != nil {
		t.Fatal(err)
	}
	if got := h.Get("from"); len(got) != 1 || got[0] != "A <a@example.org>" {
		t.Fatalf("From: %q", got)
	}
	if got := h.Get("Subject"); got[0] != "one two" {
		t.Fatalf("Subject: %q", got)
	}
	if _, err := ReadHeader(strings.NewReader(strings.Repeat("X: y\r\n", 100)), 50); err != ErrHeaderTooLarge {
		t.Fatalf("bound: %v", err)
	}
	for _, in := range []string{"", "\r\n", "Subject: x", "no colon\r\n"} {
		if _, err := ReadHeader(strings.NewReader(in), 100); err != nil {
			t.Fatalf("%q: %v", in, err)
		}
	}
}
