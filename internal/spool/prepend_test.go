package spool

import (
	"context"
	"io"
	"testing"
)

func TestPrependAndWrittenReadBack(t *testing.T) {
	s := openTest(t, t.TempDir())
	w, err := s.Create()
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("Subject: x\r\n\r\nbody\r\n"))
	r, err := w.Written()
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(r)
	if string(got) != "Subject: x\r\n\r\nbody\r\n" {
		t.Fatalf("Written: %q", got)
	}
	w.Write([]byte("more\r\n")) // writing goes on after a read-back
	env := &Envelope{From: "a@example.org", Recipients: []Recipient{{Addr: "b@example.test"}}, Prepend: "Received: from x\r\n"}
	if err := w.Commit(context.Background(), env); err != nil {
		t.Fatal(err)
	}
	body, err := s.Body(env.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer body.Close()
	b, err := io.ReadAll(body)
	want := "Received: from x\r\nSubject: x\r\n\r\nbody\r\nmore\r\n"
	if err != nil || string(b) != want {
		t.Fatalf("Body: %q, %v", b, err)
	}
	// Rewind and read again, as a retried delivery does.
	if _, err := body.Seek(0, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	b, err = io.ReadAll(body)
	if err != nil || string(b) != want {
		t.Fatalf("after rewind: %q, %v", b, err)
	}
}
