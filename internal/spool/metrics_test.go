package spool

import (
	"context"
	"sync"
	"testing"
	"time"
)

type syncCounter struct {
	mu             sync.Mutex
	syncs, batched int
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
