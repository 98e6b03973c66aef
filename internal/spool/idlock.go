package spool

import "sync"

// idLocks serialises the operations on one message (its Commit's header
// write and fdatasync, appends, Finish, Remove, quarantine) and on that
// message only. A fixed set of hashed stripes did this before: 50
// sessions committing at once shared 64 stripes, so unrelated Commits
// waited for each other's fdatasync, and a Remove held its stripe through
// a directory fsync.
type idLocks struct {
	mu sync.Mutex
	m  map[string]*idLock
}

type idLock struct {
	sync.Mutex
	refs int // holders and waiters; the entry goes when it drops to 0
}

// lock locks id and returns the function that unlocks it.
func (l *idLocks) lock(id string) (unlock func()) {
	l.mu.Lock()
	if l.m == nil {
		l.m = make(map[string]*idLock)
	}
	e := l.m[id]
	if e == nil {
		e = &idLock{}
		l.m[id] = e
	}
	e.refs++
	l.mu.Unlock()
	e.Lock()
	return func() {
		e.Unlock()
		l.mu.Lock()
		if e.refs--; e.refs == 0 {
			delete(l.m, id)
		}
		l.mu.Unlock()
	}
}

// held reports how many ids are locked or waited for (tests).
func (l *idLocks) held() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.m)
}
