package spool

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
)

// BenchmarkCommit measures durable commits of a 4 KiB message with 1, 10
// and 50 concurrent writers (Create, Write, Commit; nothing is removed).
// commits/dirsync: commits per directory fsync, which only the spare pool
// makes now (one per batch of spares); unpooled/commit: the share of
// Creates that found the pool empty and made their own file.
//
//	go test -run '^$' -bench Commit -benchtime 2000x ./internal/spool/
func BenchmarkCommit(b *testing.B) {
	body := bytes.Repeat([]byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd\r\n"), 64)
	for _, writers := range []int{1, 10, 50} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			s, err := Open(Options{Dir: b.TempDir()})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			syncs0 := s.syncer.syncs.Load()
			var left atomic.Int64
			left.Store(int64(b.N))
			var wg sync.WaitGroup
			b.ResetTimer()
			for range writers {
				wg.Go(func() {
					for left.Add(-1) >= 0 {
						w, err := s.Create()
						if err != nil {
							b.Error(err)
							return
						}
						w.Write(body)
						env := &Envelope{From: "a@example.com", Recipients: []Recipient{{Addr: "b@example.org"}}}
						if err := w.Commit(context.Background(), env); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "commits/s")
			b.ReportMetric(float64(b.N)/float64(s.syncer.syncs.Load()-syncs0), "commits/dirsync")
			b.ReportMetric(float64(s.pool.made.Load())/float64(b.N), "unpooled/commit")
		})
	}
}
