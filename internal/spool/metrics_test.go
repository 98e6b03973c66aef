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

func TestMetricsSeeEveryCommitInSomeBatch(t *testing.T) {
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
	s.Close()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.batched != 20 || int64(m.syncs) != s.syncer.syncs.Load() {
		t.Errorf("batched %d commits in %d syncs; want 20 in %d", m.batched, m.syncs, s.syncer.syncs.Load())
	}
}
