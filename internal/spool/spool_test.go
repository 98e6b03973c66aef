package spool

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"
)

func openTest(t testing.TB, dir string) *Spool {
	t.Helper()
	s, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func commit(t testing.TB, s *Spool, body []byte, env *Envelope) string {
	t.Helper()
	w, err := s.Create()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(body); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(context.Background(), env); err != nil {
		t.Fatal(err)
	}
	return w.ID()
}

func readBody(t *testing.T, s *Spool, id string) []byte {
	t.Helper()
	r, err := s.Body(id)
	return readAll(t, r, err)
}

// readBodyOf loads id and reads its message through BodyOf.
func readBodyOf(t *testing.T, s *Spool, id string) []byte {
	t.Helper()
	env, err := s.Load(id)
	if err != nil {
		t.Fatal(err)
	}
	r, err := s.BodyOf(env)
	return readAll(t, r, err)
}

// readAll reads r, just opened with err, to the end and closes it.
func readAll(t *testing.T, r io.ReadCloser, err error) []byte {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCommitStoresEnvelopeAndBodyExactly(t *testing.T) {
	s := openTest(t, t.TempDir())
	body := []byte("Received: from x\r\n\r\nline\r\n\x00\xff binary\r\n.\r\n")
	arrival := time.Date(2025, 3, 1, 12, 0, 0, 123, time.UTC)
	env := &Envelope{
		From: "a\r\nRCPT TO:<evil>\x00@example.com",
		Recipients: []Recipient{
			{Addr: "b@example.org", ORcpt: "rfc822;b@example.org", Notify: "FAILURE,DELAY"},
			{Addr: "c\n@example.org"},
		},
		Arrival: arrival, SMTPUTF8: true, Body: "8BITMIME", EnvID: "x\ry", Ret: "HDRS",
		RequireTLS: true, ClientAddr: "127.0.0.1:1234", Helo: "client\r\n.example",
		AuthUser: "alice", Listener: "submission",
	}
	w, err := s.Create()
	if err != nil {
		t.Fatal(err)
	}
	id := w.ID()
	if !validID(id) {
		t.Fatalf("id %q is not a valid id", id)
	}
	// Streamed in pieces, as the SMTP server writes.
	for _, chunk := range bytes.SplitAfter(body, []byte("\n")) {
		if _, err := w.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Commit(context.Background(), env); err != nil {
		t.Fatal(err)
	}
	if env.ID != id || env.Size != int64(len(body)) {
		t.Fatalf("Commit set ID=%q Size=%d, want %q %d", env.ID, env.Size, id, len(body))
	}
	w.Abort() // no-op after Commit

	s.Close()
	s = openTest(t, filepath.Dir(s.dir))
	got, err := s.Load(id)
	if err != nil {
		t.Fatal(err)
	}
	if got.From != env.From || got.Helo != env.Helo || got.EnvID != env.EnvID ||
		got.Recipients[1].Addr != "c\n@example.org" || got.Recipients[0].Notify != "FAILURE,DELAY" ||
		!got.Arrival.Equal(arrival) || !got.RequireTLS || got.Body != "8BITMIME" || got.Size != int64(len(body)) {
		t.Fatalf("loaded envelope differs:\n got %+v\nwant %+v", got, env)
	}
	if b := readBody(t, s, id); !bytes.Equal(b, body) {
		t.Fatalf("body = %q, want %q", b, body)
	}
	list, err := s.List()
	if err != nil || len(list) != 1 || list[0].ID != id {
		t.Fatalf("List = %v, %v", list, err)
	}
}

func TestIDsAreUniqueFilenameSafeAndOrderedByTime(t *testing.T) {
	var g idGen
	g.init()
	seen := map[string]bool{}
	t0 := time.Now()
	for i := range 10000 {
		id := g.next(t0.Add(time.Duration(i/100) * time.Millisecond))
		if !validID(id) || seen[id] {
			t.Fatalf("id %q invalid or repeated", id)
		}
		seen[id] = true
	}
	a, b := g.next(t0), g.next(t0.Add(time.Millisecond))
	if a >= b {
		t.Fatalf("later id %q does not sort after %q", b, a)
	}
	for _, bad := range []string{"", "../../etc/passwd", "0123456789abcdeW", "0123456789abcdef.tmp"} {
		if validID(bad) {
			t.Errorf("validID(%q) = true", bad)
		}
	}
}

func TestAbortAndFailedCommitLeaveNothing(t *testing.T) {
	s := openTest(t, t.TempDir())
	w, _ := s.Create()
	w.Write([]byte("x"))
	w.Abort()
	w2, _ := s.Create()
	w2.Write([]byte("y"))
	if err := w2.Commit(context.Background(), &Envelope{}); err == nil {
		t.Fatal("Commit without recipients succeeded")
	}
	w3, _ := s.Create()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := w3.Commit(ctx, &Envelope{Recipients: []Recipient{{Addr: "a@b"}}}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Commit with cancelled ctx = %v", err)
	}
	if _, err := w.Write([]byte("more")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Write after Abort = %v", err)
	}
	for _, w := range []*Writer{w, w2, w3} {
		if _, err := os.Lstat(s.path(w.ID())); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("file of an aborted or failed message still there: %v", err)
		}
	}
	// Close leaves the spares, which hold no message, for the next Open.
	s.Close()
	entries, _ := os.ReadDir(s.dir)
	for _, e := range entries {
		if !holdsNoMessage(t, s.path(e.Name())) {
			t.Fatalf("queue dir holds %s, not a spare", e.Name())
		}
	}
}

func TestRecoveryRemovesUncommittedAndQuarantinesCorrupt(t *testing.T) {
	root := t.TempDir()
	s := openTest(t, root)
	good := commit(t, s, []byte("good"), &Envelope{Recipients: []Recipient{{Addr: "a@b"}}})
	truncated := commit(t, s, []byte("will be truncated"), &Envelope{Recipients: []Recipient{{Addr: "a@b"}}})
	flipped := commit(t, s, []byte("envelope byte flipped"), &Envelope{Recipients: []Recipient{{Addr: "a@b"}}})
	w, _ := s.Create() // a session in progress when the process dies
	w.Write([]byte("half a message"))
	w.flush()
	s.Close()

	if err := os.Truncate(filepath.Join(root, "queue", truncated), headerSize+5); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(root, "queue", flipped)
	b, _ := os.ReadFile(p)
	b[len(b)-3] ^= 0x20 // inside the envelope JSON
	os.WriteFile(p, b, 0o600)

	s = openTest(t, root)
	list, err := s.List()
	if err != nil || len(list) != 1 || list[0].ID != good {
		t.Fatalf("List after recovery = %v, %v; want only %s", list, err, good)
	}
	keptAsSpare(t, s, w.ID())
	for _, id := range []string{truncated, flipped} {
		if _, err := s.Load(id); !errors.Is(err, ErrNotFound) {
			t.Errorf("Load(%s) = %v, want ErrNotFound", id, err)
		}
		if _, err := os.Stat(filepath.Join(root, "corrupt", id)); err != nil {
			t.Errorf("corrupt file %s not quarantined: %v", id, err)
		}
	}
}

func TestBodyChecksumMismatchIsReported(t *testing.T) {
	root := t.TempDir()
	s := openTest(t, root)
	id := commit(t, s, []byte("hello world"), &Envelope{Recipients: []Recipient{{Addr: "a@b"}}})
	f, _ := os.OpenFile(filepath.Join(root, "queue", id), os.O_RDWR, 0)
	f.WriteAt([]byte("J"), headerSize)
	f.Close()
	r, err := s.Body(id)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := io.ReadAll(r); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("reading a damaged body: err = %v, want ErrCorrupt", err)
	}
	// Rewinding checks again; seeking elsewhere serves bytes unchecked.
	r.Seek(6, io.SeekStart)
	if b, err := io.ReadAll(r); err != nil || string(b) != "world" {
		t.Fatalf("after Seek: %q, %v", b, err)
	}
}

func TestUpdateRecipientsIsDurableAndReplayed(t *testing.T) {
	root := t.TempDir()
	s := openTest(t, root)
	id := commit(t, s, []byte("m"), &Envelope{Recipients: []Recipient{{Addr: "a@x"}, {Addr: "b@x"}, {Addr: "c@x"}}})
	at := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	next := at.Add(5 * time.Minute)
	err := s.UpdateRecipients(id,
		RecipientUpdate{Index: 0, RecipientState: RecipientState{Status: Delivered, Attempts: 1, LastAttempt: at}},
		RecipientUpdate{Index: 1, RecipientState: RecipientState{Status: Pending, Attempts: 1, LastAttempt: at, NextAttempt: next, LastError: "451 4.3.0 try\r\nlater"}},
	)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.UpdateRecipients(id, RecipientUpdate{Index: 2, RecipientState: RecipientState{Status: Failed, Attempts: 1, LastError: "550 5.1.1 no"}}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetHold(id, true); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s = openTest(t, root)
	env, err := s.Load(id)
	if err != nil {
		t.Fatal(err)
	}
	r := env.Recipients
	if r[0].Status != Delivered || r[1].Status != Pending || r[1].Attempts != 1 || !r[1].NextAttempt.Equal(next) ||
		r[1].LastError != "451 4.3.0 try\r\nlater" || r[2].Status != Failed || !env.Hold || r[0].Addr != "a@x" {
		t.Fatalf("replayed envelope wrong: %+v", env)
	}
	if p := env.Pending(); len(p) != 1 || p[0] != 1 {
		t.Fatalf("Pending() = %v", p)
	}
	hist, err := s.History(id)
	if err != nil || len(hist) != 3 || len(hist[0].Recipients) != 2 || hist[2].Hold == nil || hist[0].At.IsZero() {
		t.Fatalf("History = %+v, %v", hist, err)
	}
	if b := readBody(t, s, id); string(b) != "m" {
		t.Fatalf("body after updates = %q", b)
	}
}

func TestFinalRecipientCannotChange(t *testing.T) {
	s := openTest(t, t.TempDir())
	id := commit(t, s, []byte("m"), &Envelope{Recipients: []Recipient{{Addr: "a@x"}}})
	done := RecipientState{Status: Delivered, Attempts: 1}
	if err := s.UpdateRecipients(id, RecipientUpdate{Index: 0, RecipientState: done}); err != nil {
		t.Fatal(err)
	}
	err := s.UpdateRecipients(id, RecipientUpdate{Index: 0, RecipientState: RecipientState{Status: Pending}})
	if !errors.Is(err, ErrFinal) {
		t.Fatalf("re-opening a delivered recipient: err = %v, want ErrFinal", err)
	}
	done.Reported = true // other fields of a final recipient may change
	if err := s.UpdateRecipients(id, RecipientUpdate{Index: 0, RecipientState: done}); err != nil {
		t.Fatal(err)
	}
	if err := s.UpdateRecipients(id, RecipientUpdate{Index: 1}); err == nil {
		t.Fatal("update of recipient index out of range succeeded")
	}
}

func TestTornStateRecordIsIgnoredThenOverwritten(t *testing.T) {
	root := t.TempDir()
	s := openTest(t, root)
	id := commit(t, s, []byte("m"), &Envelope{Recipients: []Recipient{{Addr: "a@x"}, {Addr: "b@x"}}})
	if err := s.UpdateRecipients(id, RecipientUpdate{Index: 0, RecipientState: RecipientState{Status: Delivered}}); err != nil {
		t.Fatal(err)
	}
	// A crash in the middle of the next append: half a record.
	f, _ := os.OpenFile(filepath.Join(root, "queue", id), os.O_RDWR|os.O_APPEND, 0)
	h, err := readHeader(f, id)
	if err != nil {
		t.Fatal(err)
	}
	rec, _ := encodeRecord(h, Event{Recipients: []RecipientUpdate{{Index: 1, RecipientState: RecipientState{Status: Failed}}}})
	f.Write(rec[:len(rec)/2])
	f.Close()

	env, err := s.Load(id)
	if err != nil {
		t.Fatal(err)
	}
	if env.Recipients[0].Status != Delivered || env.Recipients[1].Status != Pending {
		t.Fatalf("torn record applied: %+v", env.Recipients)
	}
	if err := s.UpdateRecipients(id, RecipientUpdate{Index: 1, RecipientState: RecipientState{Status: Delivered}}); err != nil {
		t.Fatal(err)
	}
	env, _ = s.Load(id)
	if env.Recipients[1].Status != Delivered {
		t.Fatalf("update after a torn record lost: %+v", env.Recipients)
	}
}

func TestRemoveIsFinal(t *testing.T) {
	root := t.TempDir()
	s := openTest(t, root)
	id := commit(t, s, []byte("m"), &Envelope{Recipients: []Recipient{{Addr: "a@x"}}})
	if err := s.Remove(id); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(id); err != nil {
		t.Fatalf("second Remove: %v", err)
	}
	if _, err := s.Load(id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Load after Remove = %v", err)
	}
	if _, err := s.Body(id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Body after Remove = %v", err)
	}
	if err := s.UpdateRecipients(id, RecipientUpdate{}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("UpdateRecipients after Remove = %v", err)
	}
	if _, err := s.Load("../lock"); !errors.Is(err, ErrBadID) {
		t.Fatalf("Load of a path = %v", err)
	}
}

func TestSecondOpenOfSameSpoolRefused(t *testing.T) {
	root := t.TempDir()
	openTest(t, root)
	if s, err := Open(Options{Dir: root}); err == nil {
		s.Close()
		t.Fatal("second Open of a spool in use succeeded")
	}
}

// TestCommitNeedsNoDirectoryFsync: with spares in the pool, a commit
// makes no directory fsync of its own; the pool makes a batch of names
// durable with one.
func TestCommitNeedsNoDirectoryFsync(t *testing.T) {
	s := openTest(t, t.TempDir())
	commit(t, s, []byte("first"), &Envelope{Recipients: []Recipient{{Addr: "a@x"}}})
	// The first Create found the pool empty; wait for the refill.
	for len(s.pool.spares) < minSpares/2 {
		runtime.Gosched()
	}
	syncs, created := s.syncer.syncs.Load(), s.pool.created.Load()
	const n = 5
	for range n {
		commit(t, s, []byte("m"), &Envelope{Recipients: []Recipient{{Addr: "a@x"}}})
	}
	// Wait for the filler to go quiet before counting.
	for !(len(s.pool.spares) > int(s.pool.target.Load())/2 && len(s.pool.kick) == 0) {
		runtime.Gosched()
	}
	// Sequential commits that each fsynced the directory would make n;
	// at most one is the pool's refill. (Which batch a spare counts in
	// depends on when the filler hands it out, so spares are not compared.)
	madeSyncs := s.syncer.syncs.Load() - syncs
	refills := s.pool.created.Load() - created
	if madeSyncs > 1 {
		t.Fatalf("%d commits took %d directory fsyncs (%d spares made)", n, madeSyncs, refills)
	}
	if s.pool.made.Load() != 1 {
		t.Fatalf("%d Creates found the pool empty, want only the first", s.pool.made.Load())
	}
	if l, _ := s.List(); len(l) != n+1 {
		t.Fatalf("List has %d messages, want %d", len(l), n+1)
	}
}

func TestConcurrentRemovesShareOneDirectoryFsync(t *testing.T) {
	s := openTest(t, t.TempDir())
	const n = 30
	var ids []string
	for len(ids) < n+1 {
		ids = append(ids, commit(t, s, []byte("m"), &Envelope{Recipients: []Recipient{{Addr: "a@x"}}}))
	}
	// Let the pool go quiet, so that only removals ask for fsyncs.
	for !(len(s.pool.spares) > int(s.pool.target.Load())/2 && len(s.pool.kick) == 0) {
		runtime.Gosched()
	}
	started, release := make(chan struct{}), make(chan struct{})
	var calls int
	real := *s.syncer.fsync.Load()
	s.syncer.setFsync(func() error {
		calls++ // only the syncer goroutine calls this
		if calls == 1 {
			close(started)
			<-release
		}
		return real()
	})
	syncs := s.syncer.syncs.Load()
	// The first removal's directory fsync is held up...
	first := make(chan error)
	go func() { first <- s.Remove(ids[0]) }()
	<-started
	// ...while n more removals reach theirs.
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for _, id := range ids[1:] {
		wg.Go(func() { errs <- s.Remove(id) })
	}
	for len(s.syncer.reqs) < n {
		runtime.Gosched()
	}
	close(release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := s.syncer.syncs.Load() - syncs; got != 2 {
		t.Fatalf("%d removals took %d directory fsyncs, want 2", n+1, got)
	}
	if l, _ := s.List(); len(l) != 0 {
		t.Fatalf("List has %d messages after removing all", len(l))
	}
}

// TestWriterPathsKeepEveryOctet: a message is written in one write (up to
// a page with its envelope), in two (up to the 64 KiB buffer) or
// through flushes of the buffer and writes larger than it; each way,
// Written reads back exactly what was written before Commit, and the
// committed body survives a reopen of the spool — also in reused files
// that held a longer message before.
func TestWriterPathsKeepEveryOctet(t *testing.T) {
	root := t.TempDir()
	s := openTest(t, root)
	sizes := []int{0, 1, pageSize - headerSize - 300, pageSize, pageSize + 1,
		writeBuf - headerSize - 500, writeBuf, writeBuf + 1, 3*writeBuf + 17}
	var ids []string
	var bodies [][]byte
	for round := range 2 {
		for _, n := range sizes {
			body := make([]byte, n)
			for i := range body {
				body[i] = byte('a' + (i+n+round)%26)
			}
			w, err := s.Create()
			if err != nil {
				t.Fatal(err)
			}
			// Small pieces, then one piece larger than the buffer.
			small := min(n, 1000)
			for i := 0; i < small; i += 100 {
				w.Write(body[i:min(i+100, small)])
			}
			if _, err := w.Write(body[small:]); err != nil {
				t.Fatal(err)
			}
			r, err := w.Written()
			if err != nil {
				t.Fatal(err)
			}
			if got, _ := io.ReadAll(r); !bytes.Equal(got, body) {
				t.Fatalf("%d octets: Written read %d octets back, not the same", n, len(got))
			}
			if err := w.Commit(context.Background(), &Envelope{Recipients: []Recipient{{Addr: "a@b"}}}); err != nil {
				t.Fatal(err)
			}
			if round == 0 {
				// Delivered: the file goes back to the pool for reuse by the
				// next round's smaller or larger messages.
				finishAll(t, s, []string{w.ID()})
				continue
			}
			ids = append(ids, w.ID())
			bodies = append(bodies, body)
		}
	}
	s.Close()
	s = openTest(t, root)
	for i, id := range ids {
		if b := readBody(t, s, id); !bytes.Equal(b, bodies[i]) {
			t.Fatalf("%d octets: body read back differs (%d octets)", len(bodies[i]), len(b))
		}
	}
	if entries, _ := os.ReadDir(s.corrupt); len(entries) > 0 {
		t.Fatalf("%d corrupt files", len(entries))
	}
}
