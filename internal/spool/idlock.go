package spool

import (
	"hash/maphash"
	"sync"
)

// idLocks serialises the operations on one message (its Commit's header
// write and fdatasync, appends, Finish, Remove, quarantine) and on that
// message only. A fixed set of hashed stripes did this before: 50
// sessions committing at once shared 64 stripes, so unrelated Commits
// waited for each other's fdatasync, and a Remove held its stripe through
// a directory fsync.
//
// The table of locks is itself split in shards by a hash of the id: with
// one mutex over it, 50 saturating sessions on two CPUs spent 0.26 s of
// every second queued for that mutex (Go execution trace), whenever its
// holder was descheduled while it held it.
type idLocks struct {
	shards [idShards]idShard
}

const idShards = 32

// idSeed picks a shard for an id.
var idSeed = maphash.MakeSeed()

type idShard struct {
	mu sync.Mutex
	m  map[string]*idLock
}

type idLock struct {
	sync.Mutex
	refs int // holders and waiters; the entry goes when it drops to 0
}

func (l *idLocks) shard(id string) *idShard {
	return &l.shards[maphash.String(idSeed, id)%idShards]
}

// lock locks id and returns the function that unlocks it.
func (l *idLocks) lock(id string) (unlock func()) {
	sh := l.shard(id)
	sh.mu.Lock()
	if sh.m == nil {
		sh.m = make(map[string]*idLock)
	}
	e := sh.m[id]
	if e == nil {
		e = &idLock{}
		sh.m[id] = e
	}
	e.refs++
	sh.mu.Unlock()
	e.Lock()
	return func() {
		e.Unlock()
		sh.mu.Lock()
		if e.refs--; e.refs == 0 {
			delete(sh.m, id)
		}
		sh.mu.Unlock()
	}
}

// held reports how many ids are locked or waited for (tests).
func (l *idLocks) held() int {
	n := 0
	for i := range l.shards {
		sh := &l.shards[i]
		sh.mu.Lock()
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}
