package spool

import (
	"context"
	"sync"
	"testing"
	"time"
)

type syncCounter struct {
	mu                     sync.Mutex
	syncs, batched, misses int
}

func (c *syncCounter) SpareMiss() {
	c.mu.Lock()
	c.misses++
	c.mu.Unlock()
}

func (c *syncCounter) DirSync(batch int, _ time.Duration) {
	c.mu.Lock()
	c.syncs++
	c.batched += batch
	c.mu.Unlock()
}

// TestMetricsSeeEveryDirectoryFsync: every directory fsync is reported,
// with the names it made durable (spare message files) or removed.
func TestMetricsSeeEveryDirectoryFsync(t *testing.T) {
	m := &syncCounter{}
	s, err := Open(Options{Dir: t.TempDir(), Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			w, err := s.Create()
			if err != nil {
				t.Error(err)
				return
			}
			w.Write([]byte("Subject: x\r\n\r\nx\r\n"))
			if err := w.Commit(context.Background(), &Envelope{From: "a@example.org", Recipients: []Recipient{{Addr: "b@example.test"}}}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	envs, _ := s.List()
	for _, env := range envs {
		if err := s.Remove(env.ID); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	m.mu.Lock()
	defer m.mu.Unlock()
	names := s.pool.created.Load() + s.pool.made.Load() + int64(len(envs))
	if len(envs) != 20 || int64(m.batched) != names || int64(m.syncs) != s.syncer.syncs.Load() {
		t.Errorf("%d messages; batched %d names in %d syncs; want %d in %d", len(envs), m.batched, m.syncs, names, s.syncer.syncs.Load())
	}
}

// TestMetricsSeeCreatesThatFoundNoSpare: a Create that finds the pool of
// spare files empty is counted (the first, on a new spool), one that
// finds a spare ready is not.
func TestMetricsSeeCreatesThatFoundNoSpare(t *testing.T) {
	m := &syncCounter{}
	s, err := Open(Options{Dir: t.TempDir(), Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	misses := func() int {
		m.mu.Lock()
		defer m.mu.Unlock()
		return m.misses
	}
	commit(t, s, []byte("Subject: x\r\n\r\nx\r\n"), &Envelope{Recipients: []Recipient{{Addr: "a@x"}}})
	if n := misses(); n != 1 {
		t.Fatalf("the first Create on a new spool: %d misses counted, want 1", n)
	}
	for deadline := time.Now().Add(10 * time.Second); len(s.pool.spares) == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no spare file ready 10 s after the first Create")
		}
	}
	commit(t, s, []byte("Subject: y\r\n\r\ny\r\n"), &Envelope{Recipients: []Recipient{{Addr: "a@x"}}})
	if n := misses(); n != 1 {
		t.Fatalf("a Create with spares ready: %d misses counted, want still 1", n)
	}
}
