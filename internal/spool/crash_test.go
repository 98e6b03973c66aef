package spool

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

const crashHelperEnv = "POSTHORN_SPOOL_CRASH_HELPER_DIR"

// crashBody is the body the helper commits for id: long enough to span
// several buffered writes, different for every id.
func crashBody(id string) []byte {
	n := 1 + int(id[len(id)-1])%7
	return bytes.Repeat([]byte("Subject: "+id+"\r\n"+strings.Repeat("x", 9000)+"\r\n"), n)
}

// TestMain lets the test binary act as the crash helper when re-executed.
func TestMain(m *testing.M) {
	if dir := os.Getenv(crashHelperEnv); dir != "" {
		crashHelper(dir)
		return
	}
	if dir := os.Getenv(poolCrashHelperEnv); dir != "" {
		poolCrashHelper(dir)
		return
	}
	os.Exit(m.Run())
}

// crashHelper commits messages from 20 goroutines and prints each id once
// Commit has returned nil, until it is killed or hits its bounds.
func crashHelper(dir string) {
	s, err := Open(Options{Dir: dir})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	deadline := time.Now().Add(60 * time.Second)
	var left atomic.Int64
	left.Store(20000)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			for left.Add(-1) >= 0 && time.Now().Before(deadline) {
				w, err := s.Create()
				if err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(2)
				}
				w.Write(crashBody(w.ID()))
				env := &Envelope{From: "a@example.com", Recipients: []Recipient{{Addr: "b@example.org"}}}
				if err := w.Commit(context.Background(), env); err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(2)
				}
				mu.Lock()
				os.Stdout.WriteString(w.ID() + "\n") // one write(2) per line
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	os.Exit(0)
}

// TestCommittedMessagesSurviveSIGKILL: every id the helper printed (so
// Commit returned nil before it) loads with an intact body after the
// helper is killed mid-run.
func TestCommittedMessagesSurviveSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("subprocess test")
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashHelperEnv+"="+dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var ids []string
	sc := bufio.NewScanner(out)
	killed := false
	for sc.Scan() {
		ids = append(ids, sc.Text())
		if len(ids) == 300 && !killed {
			// Mid-run: the other goroutines are somewhere between
			// Create and the directory fsync.
			cmd.Process.Signal(syscall.SIGKILL)
			killed = true
		}
	}
	werr := cmd.Wait()
	if !killed {
		t.Logf("helper ended before it was killed: %v", werr)
	}
	if stderr.Len() > 0 {
		t.Fatalf("helper failed: %s", stderr.String())
	}
	if len(ids) == 0 {
		t.Fatal("helper committed nothing")
	}

	s := openTest(t, dir)
	for _, id := range ids {
		if _, err := s.Load(id); err != nil {
			t.Fatalf("acknowledged message %s lost: %v", id, err)
		}
		if b := readBody(t, s, id); !bytes.Equal(b, crashBody(id)) {
			t.Fatalf("message %s: body damaged (%d bytes)", id, len(b))
		}
	}
	list, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(s.corrupt); len(entries) > 0 {
		t.Fatalf("recovery found %d corrupt files", len(entries))
	}
	entries, _ := os.ReadDir(s.dir)
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), tmpSuffix) {
			t.Fatalf("temp file %s survived recovery", e.Name())
		}
	}
	t.Logf("%d acknowledged before SIGKILL, %d committed in the spool after restart", len(ids), len(list))
}
