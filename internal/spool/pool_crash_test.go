package spool

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

const poolCrashHelperEnv = "POSTHORN_SPOOL_POOL_CRASH_HELPER_DIR"

// poolCrashHelper receives messages from 20 goroutines through the spare
// pool, streaming each body in pieces (with a read-back now and then) and
// then committing, aborting, or committing and removing it. It prints
// "abort ID" before an Abort, "ok ID" once Commit returned nil and
// "removing ID" before a Remove and "rm ID" once it returned nil, until it is killed or hits its bounds.
func poolCrashHelper(dir string) {
	s, err := Open(Options{Dir: dir})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	deadline := time.Now().Add(60 * time.Second)
	var left atomic.Int64
	left.Store(20000)
	var mu sync.Mutex
	say := func(what, id string) {
		mu.Lock()
		os.Stdout.WriteString(what + " " + id + "\n") // one write(2) per line
		mu.Unlock()
	}
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			for left.Add(-1) >= 0 && time.Now().Before(deadline) {
				w, err := s.Create()
				if err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(2)
				}
				body := crashBody(w.ID())
				half := rand.IntN(len(body))
				w.Write(body[:half])
				if rand.IntN(4) == 0 {
					if _, err := w.Written(); err != nil {
						fmt.Fprintln(os.Stderr, err)
						os.Exit(2)
					}
				}
				w.Write(body[half:])
				if rand.IntN(8) == 0 {
					say("abort", w.ID())
					w.Abort()
					continue
				}
				env := &Envelope{From: "a@example.com", Recipients: []Recipient{{Addr: "b@example.org"}}}
				if err := w.Commit(context.Background(), env); err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(2)
				}
				say("ok", w.ID())
				if rand.IntN(3) == 0 {
					say("removing", w.ID())
					if err := s.Remove(w.ID()); err != nil {
						fmt.Fprintln(os.Stderr, err)
						os.Exit(2)
					}
					say("rm", w.ID())
				}
			}
		})
	}
	wg.Wait()
	os.Exit(0)
}

// TestPoolCommitsSurviveRepeatedSIGKILL kills the helper several times on
// the same spool at random moments. After each restart: every message
// whose Commit returned nil is there with its exact body unless its
// Remove returned nil; no removed, aborted or partial message is listed
// (a message killed between its header write and the end of its Commit
// may be listed, but only whole); recovery found nothing corrupt and left
// nothing but messages and spares behind.
func TestPoolCommitsSurviveRepeatedSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("subprocess test")
	}
	dir := t.TempDir()
	acked := map[string]bool{}   // Commit returned nil
	removed := map[string]bool{} // Remove returned nil
	aborted := map[string]bool{}
	removing := map[string]bool{} // Remove called (it may or may not have happened)
	for round := range 4 {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), poolCrashHelperEnv+"="+dir)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		killAt := 100 + rand.IntN(400)
		lines := 0
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			what, id, _ := strings.Cut(sc.Text(), " ")
			switch what {
			case "ok":
				acked[id] = true
			case "removing":
				removing[id] = true
			case "rm":
				removed[id] = true
			case "abort":
				aborted[id] = true
			default:
				t.Fatalf("helper said %q", sc.Text())
			}
			if lines++; lines == killAt {
				cmd.Process.Signal(syscall.SIGKILL)
			}
		}
		werr := cmd.Wait()
		if lines < killAt {
			t.Logf("round %d: helper ended before it was killed: %v", round, werr)
		}
		if stderr.Len() > 0 {
			t.Fatalf("round %d: helper failed: %s", round, stderr.String())
		}

		s, err := Open(Options{Dir: dir})
		if err != nil {
			t.Fatal(err)
		}
		if entries, _ := os.ReadDir(s.corrupt); len(entries) > 0 {
			t.Fatalf("round %d: recovery found %d corrupt files", round, len(entries))
		}
		// Recovery left committed messages and files kept as spares
		// (zero headers), nothing else.
		entries, _ := os.ReadDir(s.dir)
		for _, e := range entries {
			if _, err := s.Load(e.Name()); err != nil {
				keptAsSpare(t, s, e.Name())
			}
		}
		for id := range acked {
			_, err := s.Load(id)
			if removed[id] {
				if !errors.Is(err, ErrNotFound) {
					t.Fatalf("round %d: removed message %s came back: %v", round, id, err)
				}
				continue
			}
			if errors.Is(err, ErrNotFound) && removing[id] {
				removed[id] = true // killed during Remove, after the unlink
				continue
			}
			if err != nil {
				t.Fatalf("round %d: acknowledged message %s lost: %v", round, id, err)
			}
		}
		list, err := s.List()
		if err != nil {
			t.Fatal(err)
		}
		unacked := 0
		for _, env := range list {
			if aborted[env.ID] || removed[env.ID] {
				t.Fatalf("round %d: aborted or removed message %s listed", round, env.ID)
			}
			if !acked[env.ID] {
				unacked++
			}
			if b := readBody(t, s, env.ID); !bytes.Equal(b, crashBody(env.ID)) {
				t.Fatalf("round %d: message %s listed with a damaged body (%d bytes)", round, env.ID, len(b))
			}
		}
		t.Logf("round %d: killed after %d lines; %d acknowledged so far, %d listed (%d whole but unacknowledged)",
			round, lines, len(acked)-len(removed), len(list), unacked)
		s.Close()
	}
}

// TestMessageInProgressIsNoMessage: until Commit writes its header, a
// Writer's file is invisible to Load, Body, List and UpdateRecipients,
// Remove leaves it alone, and a spare left by a crash is kept as one at
// Open.
func TestMessageInProgressIsNoMessage(t *testing.T) {
	root := t.TempDir()
	s := openTest(t, root)
	w, err := s.Create()
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("Subject: in progress\r\n\r\n"))
	w.flush()
	id := w.ID()
	if _, err := s.Load(id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Load of a message in progress = %v, want ErrNotFound", err)
	}
	if _, err := s.Body(id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Body of a message in progress = %v, want ErrNotFound", err)
	}
	if err := s.UpdateRecipients(id, RecipientUpdate{}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("UpdateRecipients of a message in progress = %v, want ErrNotFound", err)
	}
	if l, err := s.List(); err != nil || len(l) != 0 {
		t.Fatalf("List = %v, %v; want nothing", l, err)
	}
	if err := s.Remove(id); err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("body\r\n"))
	if err := w.Commit(context.Background(), &Envelope{Recipients: []Recipient{{Addr: "a@x"}}}); err != nil {
		t.Fatalf("Commit after a Remove of its id: %v", err)
	}
	if b := readBody(t, s, id); string(b) != "Subject: in progress\r\n\r\nbody\r\n" {
		t.Fatalf("body = %q", b)
	}

	// What a crash leaves: an empty spare, a partial message.
	spare, err := s.newFile()
	if err != nil {
		t.Fatal(err)
	}
	spare.f.Close()
	w2, _ := s.Create()
	w2.Write(bytes.Repeat([]byte("partial\r\n"), 1000))
	w2.flush()
	s.Close()
	s = openTest(t, root)
	for _, id := range []string{spare.id, w2.ID()} {
		keptAsSpare(t, s, id)
	}
	if l, _ := s.List(); len(l) != 1 || l[0].ID != id {
		t.Fatalf("List after recovery = %v", l)
	}
	if entries, _ := os.ReadDir(s.corrupt); len(entries) != 0 {
		t.Fatalf("recovery quarantined %d files", len(entries))
	}
}

// TestFailedCommitLeavesNoMessage: Commit makes one fdatasync; when it
// fails, Commit fails and the file is gone, so the 451 the client hears is
// true.
func TestFailedCommitLeavesNoMessage(t *testing.T) {
	s := openTest(t, t.TempDir())
	calls := 0
	syncFile = func(f *os.File) error { calls++; return fdatasync(f) }
	commit(t, s, []byte("m"), &Envelope{Recipients: []Recipient{{Addr: "a@x"}}})
	syncFile = fdatasync
	if calls != 1 {
		t.Fatalf("a commit made %d fdatasyncs, want 1", calls)
	}
	s.Remove(func() string { l, _ := s.List(); return l[0].ID }())
	for _, failAt := range []int{1} {
		calls := 0
		syncFile = func(f *os.File) error {
			if calls++; calls == failAt {
				return errors.New("injected fsync failure")
			}
			return fdatasync(f)
		}
		w, _ := s.Create()
		w.Write([]byte("m"))
		err := w.Commit(context.Background(), &Envelope{Recipients: []Recipient{{Addr: "a@x"}}})
		syncFile = fdatasync
		if err == nil {
			t.Fatalf("Commit with fsync %d failing succeeded", failAt)
		}
		if _, err := os.Lstat(s.path(w.ID())); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("fsync %d failed: file still there: %v", failAt, err)
		}
	}
	if l, _ := s.List(); len(l) != 0 {
		t.Fatalf("List = %v", l)
	}
}

// TestStaleSparesAreRenamedNotHandedOut: after the pool sat unused longer
// than maxSpareAge, Create does not hand out its old ids but a file renamed
// to a fresh one (the id carries the time), creating none; the stale
// names go away, their files kept in the reserve rather than unlinked.
func TestStaleSparesAreRenamedNotHandedOut(t *testing.T) {
	s := openTest(t, t.TempDir())
	commit(t, s, []byte("m"), &Envelope{Recipients: []Recipient{{Addr: "a@x"}}})
	for len(s.pool.spares) < int(s.pool.target.Load()) {
		runtime.Gosched()
	}
	// Age every spare, as a quiet night would.
	var old []spare
	for len(s.pool.spares) > 0 {
		sp := <-s.pool.spares
		sp.born = sp.born.Add(-2 * maxSpareAge)
		old = append(old, sp)
	}
	for _, sp := range old {
		s.pool.spares <- sp
	}
	files := func() int {
		e, err := os.ReadDir(s.dir)
		if err != nil {
			t.Fatal(err)
		}
		return len(e)
	}
	before := files()
	made := s.pool.made.Load()
	created := s.pool.created.Load()
	w, err := s.Create()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	for _, sp := range old {
		if w.ID() == sp.id {
			t.Fatalf("Create handed out stale spare %s", sp.id)
		}
	}
	if s.pool.made.Load() != made {
		t.Fatalf("Create made a file although stale spares could be renamed")
	}
	// The filler retires the rest into the reserve, from which it
	// refills the pool when it needs files: every old name is renamed
	// away or reserved, and no file is unlinked on the way.
	reserved := func(id string) bool {
		s.pool.mu.Lock()
		defer s.pool.mu.Unlock()
		return slices.Contains(s.pool.reserve, id)
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, sp := range old {
		for {
			if _, err := os.Lstat(s.path(sp.id)); errors.Is(err, os.ErrNotExist) || reserved(sp.id) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("stale spare %s neither renamed nor reserved", sp.id)
			}
			s.pool.wake()
			runtime.Gosched()
		}
	}
	// (A file the filler is creating may not be counted yet: more files
	// than that is fine, fewer means some were unlinked.)
	if n, c := files(), int(s.pool.created.Load()-created); n < before+c {
		t.Fatalf("%d files in the queue directory, %d before and %d created since: %d unlinked", n, before, c, before+c-n)
	}
}

// TestBacklogFilesAreKeptForTheNextBurst: a backlog larger than the pool
// drains into the reserve instead of being unlinked, and the next burst of
// the same size takes its files from there: no file is created or
// unlinked on the way.
func TestBacklogFilesAreKeptForTheNextBurst(t *testing.T) {
	s := openTest(t, t.TempDir())
	const n = 2*maxSpares + 100
	// files counts the queue directory once the filler is done: the
	// count steady for 300 ms.
	files := func() int {
		last, since := -1, time.Now()
		for {
			e, err := os.ReadDir(s.dir)
			if err != nil {
				t.Fatal(err)
			}
			if len(e) != last {
				last, since = len(e), time.Now()
			} else if time.Since(since) > 300*time.Millisecond {
				return last
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	burst := func() []string {
		var ids []string
		for range n {
			ids = append(ids, commit(t, s, bytes.Repeat([]byte("x"), 1000), &Envelope{Recipients: []Recipient{{Addr: "a@x"}}}))
		}
		return ids
	}
	ids := burst()
	before := files()
	made := s.pool.made.Load() + s.pool.created.Load()
	finishAll(t, s, ids)
	if after := files(); after != before {
		t.Fatalf("%d files after the backlog drained, %d before: finished messages' files were unlinked", after, before)
	}
	s.pool.mu.Lock()
	reserved := len(s.pool.reserve)
	s.pool.mu.Unlock()
	if reserved == 0 {
		t.Fatal("nothing reserved after a backlog larger than the pool drained")
	}
	ids = burst()
	after := files()
	// The pool may top itself up after the burst; the burst itself takes
	// the backlog's files.
	m := int(s.pool.made.Load() + s.pool.created.Load() - made)
	if m > n/4 {
		t.Fatalf("the second burst of %d messages created %d files although %d were reserved", n, m, reserved)
	}
	if after != before+m {
		t.Fatalf("%d files after the second burst, %d before and %d created: %d unlinked", after, before, m, before+m-after)
	}
	for _, id := range ids[len(ids)-3:] {
		if b := readBody(t, s, id); !bytes.Equal(b, bytes.Repeat([]byte("x"), 1000)) {
			t.Fatalf("%s: body read back differs", id)
		}
	}
}

// TestRestartKeepsTheSpares: the files a spool had for reuse when it was
// closed are its spares again after the next Open, and a burst after the
// restart takes them instead of creating files.
func TestRestartKeepsTheSpares(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	const n = 300
	var ids []string
	for range n {
		ids = append(ids, commit(t, s, []byte("Subject: x\r\n\r\nbody\r\n"), &Envelope{Recipients: []Recipient{{Addr: "a@x"}}}))
	}
	finishAll(t, s, ids)
	s.Close()
	s = openTest(t, dir)
	s.pool.mu.Lock()
	kept := len(s.pool.reserve)
	s.pool.mu.Unlock()
	if kept < n {
		t.Fatalf("%d files kept as spares after the restart, want at least the %d finished messages'", kept, n)
	}
	for range n {
		commit(t, s, []byte("Subject: y\r\n\r\nbody\r\n"), &Envelope{Recipients: []Recipient{{Addr: "a@x"}}})
	}
	// Once the filler is done (the pool may grow past what was kept), a
	// file was created only if every kept one had been taken.
	var left int
	var created int64
	for last, since := int64(-1), time.Now(); time.Since(since) < 300*time.Millisecond; time.Sleep(10 * time.Millisecond) {
		s.pool.mu.Lock()
		left = len(s.pool.reserve)
		s.pool.mu.Unlock()
		created = s.pool.made.Load() + s.pool.created.Load()
		if now := created<<32 | int64(left); now != last {
			last, since = now, time.Now()
		}
	}
	if created > 0 && left > 0 {
		t.Fatalf("%d files created after the restart while %d of the %d kept were left", created, left, kept)
	}
	if kept-left < n/2 {
		t.Fatalf("the burst of %d took %d of the %d kept files", n, kept-left, kept)
	}
	if l, err := s.List(); err != nil || len(l) != n {
		t.Fatalf("List = %d messages, %v; want %d", len(l), err, n)
	}
}

// finishAll delivers the messages ids: each is opened and finished, its
// file recycled.
func finishAll(t *testing.T, s *Spool, ids []string) {
	t.Helper()
	for _, id := range ids {
		m, err := s.Open(id)
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Finish(); err != nil {
			t.Fatal(err)
		}
	}
}
