package spool

import (
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// dirSyncer shares directory fsyncs between concurrent callers (group
// commit). A caller makes its change to the directory (rename, unlink) and
// then calls sync, which returns once an fsync that started after the call
// has completed. One goroutine runs the fsyncs: it takes every request that
// is waiting, fsyncs once, and answers them all; requests that arrive
// meanwhile form the next batch.
type dirSyncer struct {
	dir    *os.File
	fsync  atomic.Pointer[func() error] // dir.Sync; replaced in tests (setFsync)
	reqs   chan syncReq
	mu     sync.RWMutex // held for reading while sending on reqs
	closed bool
	done   chan struct{}
	syncs  atomic.Int64 // directory fsyncs issued, for tests and benchmarks
	m      Metrics      // may be nil
}

// syncReq asks for a directory fsync covering n changes (names made or
// removed).
type syncReq struct {
	n    int
	done chan error
}

var errSyncerClosed = errors.New("spool: closed")

func newDirSyncer(path string, m Metrics) (*dirSyncer, error) {
	d, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	s := &dirSyncer{dir: d, reqs: make(chan syncReq, 256), done: make(chan struct{}), m: m}
	s.setFsync(d.Sync)
	go s.run()
	return s, nil
}

func (s *dirSyncer) run() {
	defer close(s.done)
	batch := make([]syncReq, 0, 256)
	for first := range s.reqs {
		batch = append(batch[:0], first)
	gather:
		for {
			select {
			case r, ok := <-s.reqs:
				if !ok {
					break gather
				}
				batch = append(batch, r)
			default:
				break gather
			}
		}
		start := time.Now()
		err := (*s.fsync.Load())()
		s.syncs.Add(1)
		if s.m != nil {
			n := 0
			for _, r := range batch {
				n += r.n
			}
			s.m.DirSync(n, time.Since(start))
		}
		for _, r := range batch {
			r.done <- err
		}
	}
}

// setFsync replaces the function that syncs the directory (tests), safely
// while the syncer runs.
func (s *dirSyncer) setFsync(f func() error) { s.fsync.Store(&f) }

// sync waits for an fsync of the directory that began after the call; n
// is the number of changes it is made for (the metrics' batch size).
func (s *dirSyncer) sync(n int) error {
	done := make(chan error, 1)
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return errSyncerClosed
	}
	s.reqs <- syncReq{n, done}
	s.mu.RUnlock()
	return <-done
}

func (s *dirSyncer) close() error {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.reqs)
	}
	s.mu.Unlock()
	<-s.done
	return s.dir.Close()
}
