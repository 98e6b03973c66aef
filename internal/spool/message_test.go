package spool

import (
	"bytes"
	"errors"
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
