package spool

import (
	"bytes"
	"errors"
	"io"
	"os"
	"runtime"
	"syscall"
	"testing"
	"time"
)

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

// TestFinishRecyclesTheFileAsASpare: a finished message's file is emptied,
// renamed to a fresh id and handed out again by Create, so a busy spool
// stops creating (and deleting) a file per message; what Create hands out
// is empty and the finished id is gone.
func TestFinishRecyclesTheFileAsASpare(t *testing.T) {
	s := openTest(t, t.TempDir())
	env := func() *Envelope { return &Envelope{Recipients: []Recipient{{Addr: "a@x"}}} }
	ids := make([]string, 0, maxSpares)
	inodes := map[uint64]string{}
	for range 3 * minSpares {
		id := commit(t, s, bytes.Repeat([]byte("body\r\n"), 1000), env())
		inodes[inode(t, s.path(id))] = id
		ids = append(ids, id)
	}
	for _, id := range ids {
		if err := s.Finish(id); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Load(id); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Load(%s) after Finish: %v", id, err)
		}
		if _, err := os.Lstat(s.path(id)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("finished %s still has its name: %v", id, err)
		}
	}
	// Use up the spares made before the recycling; then the filler's
	// next batches come from the recycled files.
	deadline := time.Now().Add(10 * time.Second)
	for s.pool.reused.Load() == 0 && time.Now().Before(deadline) {
		w, err := s.Create()
		if err != nil {
			t.Fatal(err)
		}
		w.Abort()
	}
	if s.pool.reused.Load() == 0 {
		t.Fatal("no recycled file was handed out")
	}
	// A recycled file is empty when handed out, and commits like any.
	for range 2 * maxSpares {
		w, err := s.Create()
		if err != nil {
			t.Fatal(err)
		}
		if old, ok := inodes[inode(t, s.path(w.ID()))]; ok {
			fi, _ := w.f.Stat()
			if fi.Size() != 0 {
				t.Fatalf("recycled file of %s handed out as %s with %d bytes", old, w.ID(), fi.Size())
			}
			if w.ID() == old {
				t.Fatalf("recycled file kept its id %s", old)
			}
			w.Write([]byte("second life\r\n"))
			if err := w.Commit(t.Context(), env()); err != nil {
				t.Fatal(err)
			}
			b := string(readBody(t, s, w.ID()))
			if b != "second life\r\n" {
				t.Fatalf("recycled file holds %q", b)
			}
			return
		}
		w.Abort()
	}
	t.Fatal("no recycled file came back through Create")
}

// TestRecycledFilesAreRemovedAtRecovery: files recycled but not yet handed
// out (their new names not durable yet, their content empty) are no
// messages: a restart removes them and quarantines nothing.
func TestRecycledFilesAreRemovedAtRecovery(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for range 5 {
		ids = append(ids, commit(t, s, []byte("m\r\n"), &Envelope{Recipients: []Recipient{{Addr: "a@x"}}}))
	}
	keep := ids[0]
	// Let the pool go quiet, so that the filler takes none of them.
	for !(len(s.pool.spares) > int(s.pool.target.Load())/2 && len(s.pool.kick) == 0) {
		runtime.Gosched()
	}
	for _, id := range ids[1:] {
		if err := s.Finish(id); err != nil {
			t.Fatal(err)
		}
	}
	s.pool.mu.Lock()
	n := len(s.pool.recycled)
	s.pool.mu.Unlock()
	if n+int(s.pool.reused.Load()) != 4 || n == 0 {
		t.Fatalf("%d files waiting to be reused and %d reused, want 4 waiting", n, s.pool.reused.Load())
	}
	// A crash, not a Close: the recycled files stay on disk.
	s.pool.mu.Lock()
	recycled := s.pool.recycled
	s.pool.recycled = nil
	s.pool.mu.Unlock()
	s.Close()
	for _, sp := range recycled {
		sp.f.Close()
		if fi, err := os.Stat(s.path(sp.id)); err != nil || fi.Size() != 0 {
			t.Fatalf("recycled %s before the restart: %v, %v", sp.id, fi, err)
		}
	}
	s = openTest(t, dir)
	for _, sp := range recycled {
		if _, err := os.Lstat(s.path(sp.id)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("recycled %s survived recovery: %v", sp.id, err)
		}
	}
	l, err := s.List()
	if err != nil || len(l) != 1 || l[0].ID != keep {
		t.Fatalf("List after restart = %v, %v; want only %s", l, err, keep)
	}
	entries, _ := os.ReadDir(s.corrupt)
	if len(entries) != 0 {
		t.Fatalf("%d files quarantined", len(entries))
	}
}

// TestBodyOfReadsWhatBodyReads: BodyOf, which skips re-reading the
// envelope, serves the same bytes as Body, checks the body the same way,
// and knows a finished message is gone.
func TestBodyOfReadsWhatBodyReads(t *testing.T) {
	s := openTest(t, t.TempDir())
	id := commit(t, s, []byte("Subject: x\r\n\r\nbody\r\n"), &Envelope{Recipients: []Recipient{{Addr: "a@x"}}, Prepend: "Received: by test\r\n"})
	got := readBodyOf(t, s, id)
	if !bytes.Equal(got, readBody(t, s, id)) || !bytes.HasPrefix(got, []byte("Received: by test\r\n")) {
		t.Fatalf("BodyOf read %q", got)
	}
	env, err := s.Load(id)
	if err != nil {
		t.Fatal(err)
	}
	// A flipped body byte fails the check at the end, as with Body.
	f, _ := os.OpenFile(s.path(id), os.O_RDWR, 0)
	f.WriteAt([]byte("B"), headerSize+14)
	f.Close()
	r, _ := s.BodyOf(env)
	if _, err := io.ReadAll(r); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("corrupt body read with %v", err)
	}
	r.Close()
	if err := s.Finish(id); err != nil {
		t.Fatal(err)
	}
	if _, err := s.BodyOf(env); !errors.Is(err, ErrNotFound) {
		t.Fatalf("BodyOf after Finish: %v", err)
	}
}

// A Load racing Finish (an operator's `posthorn queue show` while the
// queue finishes the message) sees the message or ErrNotFound, never a
// corrupt file, and nothing is quarantined.
func TestLoadRacingFinishQuarantinesNothing(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for range 100 {
		ids = append(ids, commit(t, s, bytes.Repeat([]byte("x"), 10000), &Envelope{Recipients: []Recipient{{Addr: "a@x"}}}))
	}
	s.Close()
	s = openTest(t, dir) // found at Open: the first Load verifies the body
	for _, id := range ids {
		done := make(chan error, 1)
		go func() { done <- s.Finish(id) }()
		for range 3 {
			if _, err := s.Load(id); err != nil && !errors.Is(err, ErrNotFound) {
				t.Fatalf("Load(%s) racing Finish: %v", id, err)
			}
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if entries, _ := os.ReadDir(s.corrupt); len(entries) != 0 {
		t.Fatalf("%d files quarantined", len(entries))
	}
}
