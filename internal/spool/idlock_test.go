package spool

import (
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
)

func TestIDLocksSerialiseOneIDOnly(t *testing.T) {
	var l idLocks
	unlockA := l.lock("a")

	// Another id is not held up by a: this would deadlock if it were.
	l.lock("b")()

	// The same id waits until a is unlocked.
	var released atomic.Bool
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			unlock := l.lock("a")
			if !released.Load() {
				t.Error("a second holder of a got the lock before the first let go")
			}
			unlock()
		}()
	}
	// Wait until all eight are queued on a's entry.
	for {
		sh := l.shard("a")
		sh.mu.Lock()
		refs := sh.m["a"].refs
		sh.mu.Unlock()
		if refs == 9 {
			break
		}
		runtime.Gosched()
	}
	released.Store(true)
	unlockA()
	wg.Wait()
	if n := l.held(); n != 0 {
		t.Fatalf("%d entries left after every lock was released, want 0", n)
	}
}
