package logbuf

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestConcurrentLinesArriveWholeAndInOrder: 20 goroutines log 2,000
// lines each into a file; after Flush the file holds every line once,
// none torn, each goroutine's in the order it wrote them.
func TestConcurrentLinesArriveWholeAndInOrder(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := New(f)
	const writers, lines = 20, 2000
	var wg sync.WaitGroup
	for g := range writers {
		wg.Go(func() {
			for i := range lines {
				fmt.Fprintf(w, "writer=%d line=%d %s\n", g, i, strings.Repeat("x", i%97))
			}
		})
	}
	wg.Wait()
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	next := make([]int, writers)
	n := 0
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		var g, i int
		var pad string
		if _, err := fmt.Sscanf(sc.Text(), "writer=%d line=%d %s", &g, &i, &pad); err != nil && i%97 != 0 {
			t.Fatalf("torn line %q: %v", sc.Text(), err)
		}
		if i != next[g] || len(pad) != i%97 {
			t.Fatalf("writer %d: line %d (pad %d) where %d was due", g, i, len(pad), next[g])
		}
		next[g]++
		n++
	}
	if n != writers*lines {
		t.Fatalf("%d lines in the file, want %d", n, writers*lines)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestSlowOutputMakesWritesWaitNotDrop: the output is a pipe nobody reads
// yet. Writes return at once until MaxPending octets wait, then block;
// once the pipe is read, every octet arrives and the blocked Write
// returns.
func TestSlowOutputMakesWritesWaitNotDrop(t *testing.T) {
	r, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	w := New(pw)
	line := []byte(strings.Repeat("y", 1023) + "\n")
	// The goroutine's write blocks on the full pipe; behind it,
	// MaxPending octets can wait before a Write must.
	total := 0
	for total < MaxPending {
		w.Write(line)
		total += len(line)
	}
	blocked := make(chan struct{})
	go func() {
		for range 2 * MaxPending / len(line) {
			w.Write(line)
			total += len(line)
		}
		close(blocked)
	}()
	select {
	case <-blocked:
		t.Fatal("Writes went on although the output took nothing and MaxPending octets were waiting")
	case <-time.After(200 * time.Millisecond):
	}
	got := make(chan int)
	go func() {
		n, _ := io.Copy(io.Discard, r)
		got <- int(n)
	}()
	<-blocked
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	if n := <-got; n != total {
		t.Fatalf("%d octets reached the output, %d were written", n, total)
	}
}

// TestCloseFlushesAndLaterWritesGoStraightOut: Close writes what was
// pending before it returns; a Write after Close reaches the output
// before Write returns.
func TestCloseFlushesAndLaterWritesGoStraightOut(t *testing.T) {
	var out lockedBuffer
	w := New(&out)
	for i := range 100 {
		fmt.Fprintf(w, "line %d\n", i)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out.String(), "\n"); n != 100 {
		t.Fatalf("%d lines out after Close, want 100", n)
	}
	fmt.Fprintf(w, "after close\n")
	if !strings.HasSuffix(out.String(), "line 99\nafter close\n") {
		t.Fatalf("output ends %q", out.String()[max(0, out.Len()-40):])
	}
	if err := w.Close(); err != nil { // twice is fine
		t.Fatal(err)
	}
}

// TestOutputErrorIsReported: Flush returns the output's write error.
func TestOutputErrorIsReported(t *testing.T) {
	r, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	r.Close() // writes to the pipe fail with EPIPE
	w := New(pw)
	defer w.Close()
	w.Write([]byte("lost\n"))
	if err := w.Flush(); err == nil {
		t.Fatal("Flush after a failed write returned nil")
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.Buffer.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.Buffer.String()
}
