package spool

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"testing"
)

// A Message serves its body from the file it opened, as Body would,
// checked the same way, to several readers at once; Finish then recycles
// that file, and the Message is closed.
func TestMessageReadsAndFinishesOnItsOpenFile(t *testing.T) {
	s := openTest(t, t.TempDir())
	body := []byte("Subject: x\r\n\r\n" + string(bytes.Repeat([]byte("line\r\n"), 2000)))
	id := commit(t, s, body, &Envelope{Recipients: []Recipient{{Addr: "a@x"}}, Prepend: "Received: by test\r\n"})
	want := readBody(t, s, id)
	m, err := s.Open(id)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if m.Envelope.ID != id || len(m.Envelope.Recipients) != 1 {
		t.Fatalf("envelope %+v", m.Envelope)
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			r, err := m.Body()
			if got := readAll(t, r, err); !bytes.Equal(got, want) {
				t.Errorf("read %d octets through the Message, want the %d Body reads", len(got), len(want))
			}
		})
	}
	wg.Wait()
	// Closing a reader left the file open.
	if r, err := m.Body(); err != nil || !bytes.Equal(readAll(t, r, err), want) {
		t.Fatal("the Message stopped reading after a reader was closed")
	}

	// A flipped body byte fails the check at the end, as with Body.
	f, _ := os.OpenFile(s.path(id), os.O_RDWR, 0)
	f.WriteAt([]byte("B"), headerSize+20)
	r, _ := m.Body()
	if _, err := io.ReadAll(r); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("corrupt body read with %v", err)
	}
	f.WriteAt(body[20:21], headerSize+20)
	f.Close()

	recycled := s.pool.recycledLen() + int(s.pool.reused.Load())
	if err := m.Finish(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Load after Finish: %v", err)
	}
	if n := s.pool.recycledLen() + int(s.pool.reused.Load()); n != recycled+1 {
		t.Fatalf("%d files recycled or reused after Finish, want %d", n, recycled+1)
	}
	if _, err := m.Body(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Body after Finish: %v", err)
	}
	if err := m.Finish(); !errors.Is(err, ErrClosed) {
		t.Fatalf("second Finish: %v", err)
	}
}

// Finishing a Message whose file an operator deleted meanwhile (`posthorn
// queue delete`) succeeds and brings nothing back.
func TestMessageFinishAfterRemove(t *testing.T) {
	s := openTest(t, t.TempDir())
	id := commit(t, s, []byte("Subject: x\r\n\r\nbody\r\n"), &Envelope{Recipients: []Recipient{{Addr: "a@x"}}})
	m, err := s.Open(id)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(id); err != nil {
		t.Fatal(err)
	}
	if err := m.Finish(); err != nil {
		t.Fatal(err)
	}
	if l, err := s.List(); err != nil || len(l) != 0 {
		t.Fatalf("List = %v, %v; want nothing", l, err)
	}
	if _, err := os.Stat(s.path(id)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s is back: %v", id, err)
	}
}

// TestOpenOfAFreshMessageIsTheOpenOfItsFile: the first Open after Commit
// (served from the file Commit kept open) gives the envelope, header and
// body that an Open reading the file gives, in a new file and in a reused
// one that held a longer message; anything that changes the file in
// between (a record, Remove) is seen; past freshMax waiting messages,
// Open reads the file; Close closes what is still waiting.
func TestOpenOfAFreshMessageIsTheOpenOfItsFile(t *testing.T) {
	s := openTest(t, t.TempDir())
	env := func() *Envelope {
		return &Envelope{From: "a@x", Recipients: []Recipient{{Addr: "b@y", Notify: "FAILURE"}, {Addr: "c@y"}},
			Prepend: "Received: by test\r\n", Body: "8BITMIME", ClientAddr: "127.0.0.1:1"}
	}
	// A reused file: a long message finished, its file recycled.
	long := commit(t, s, bytes.Repeat([]byte("old\r\n"), 5000), env())
	if m, err := s.Open(long); err != nil || m.Finish() != nil {
		t.Fatal("finish", err)
	}
	check := func(id string, body []byte) {
		t.Helper()
		fresh, err := s.Open(id)
		if err != nil {
			t.Fatal(err)
		}
		disk, err := s.open(id, os.O_RDWR)
		if err != nil {
			t.Fatal(err)
		}
		defer disk.Close()
		if fmt.Sprintf("%+v", *fresh.Envelope) != fmt.Sprintf("%+v", *disk.Envelope) {
			t.Fatalf("fresh envelope\n%+v\nread back\n%+v", *fresh.Envelope, *disk.Envelope)
		}
		if fmt.Sprintf("%+v", fresh.hdr) != fmt.Sprintf("%+v", disk.hdr) {
			t.Fatalf("fresh header %+v, read back %+v", fresh.hdr, disk.hdr)
		}
		r, err := fresh.Body()
		if got := readAll(t, r, err); !bytes.Equal(got, append([]byte("Received: by test\r\n"), body...)) {
			t.Fatalf("fresh body differs: %q", got[:min(len(got), 60)])
		}
		if err := fresh.Finish(); err != nil {
			t.Fatal(err)
		}
	}
	for _, body := range [][]byte{[]byte("Subject: short\r\n\r\nbody\r\n"), bytes.Repeat([]byte("x"), 70000)} {
		check(commit(t, s, body, env()), body)
	}

	// A record appended after Commit is in the envelope Open gives.
	id := commit(t, s, []byte("Subject: r\r\n\r\n"), env())
	if err := s.UpdateRecipients(id, RecipientUpdate{Index: 1, RecipientState: RecipientState{Status: Delivered}}); err != nil {
		t.Fatal(err)
	}
	m, err := s.Open(id)
	if err != nil {
		t.Fatal(err)
	}
	if m.Envelope.Recipients[1].Status != Delivered {
		t.Fatalf("Open after UpdateRecipients: recipient %+v", m.Envelope.Recipients[1])
	}
	m.Close()
	// Removed after Commit: gone.
	id = commit(t, s, []byte("Subject: gone\r\n\r\n"), env())
	if err := s.Remove(id); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Open(id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Open after Remove = %v, want ErrNotFound", err)
	}

	// More than freshMax waiting: every one opens, the overflow from disk.
	var ids []string
	for range freshMax + 10 {
		ids = append(ids, commit(t, s, []byte("Subject: many\r\n\r\n"), env()))
	}
	for _, id := range ids[:20] {
		m, err := s.Open(id)
		if err != nil || m.Envelope.ID != id {
			t.Fatalf("Open(%s) = %v", id, err)
		}
		m.Close()
	}
	// Close closes the rest.
	s.fresh.mu.Lock()
	var waiting []*Message
	for _, m := range s.fresh.m {
		waiting = append(waiting, m)
	}
	s.fresh.mu.Unlock()
	if len(waiting) == 0 {
		t.Fatal("nothing waiting for its first Open")
	}
	s.Close()
	for _, m := range waiting {
		if m.f != nil {
			t.Fatal("a waiting message's file is still open after Close")
		}
	}
}
