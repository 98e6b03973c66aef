package spool

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Pool bounds. The pool adapts its size to the demand between minSpares
// and maxSpares: it doubles when a Create finds it empty and halves when
// spares go stale unused.
const (
	minSpares = 16
	maxSpares = 256
	maxBatch  = 128
	// recycleBatch recycled files (Spool.Finish) wake the filler to put
	// them into the pool with one directory fsync.
	recycleBatch = 32
	// maxSpareAge bounds how old a spare may be when Create takes it, so
	// that queue ids (which carry the time the file got its name) stay
	// within this much of the message's arrival and keep sorting by
	// arrival. An older spare is renamed to a fresh id, not unlinked.
	maxSpareAge = 10 * time.Second
	// reuseMax: a finished message's file up to this size is reused as
	// it is, blocks and all, its header zeroed; a larger one is emptied
	// first, so that the pool never holds more than maxSpares times this
	// much disk.
	reuseMax = 128 << 10
	// maxReserve finished messages' files are kept beyond the pool,
	// closed, their headers zeroed, for the filler to take before it
	// creates any file: after a burst the backlog drains into them, and
	// the next burst needs no new file. A rename is all a reserved file
	// costs; a file unlinked and another created cost an inode freed and
	// one allocated, and on ext4 without a journal each allocation scans
	// past every inode freed in the last 30 seconds under the directory's
	// lock. Measured (bench/load, 50 sessions, 3,000 1 KB messages a run,
	// 2-vCPU VM): with 256 files kept, 1,400-3,000 msg/s and a p99 of
	// 30-95 ms, 45% of all CPU in that scan and spinning on the lock;
	// with every file kept, 4,100-4,300 msg/s and 19-20 ms.
	maxReserve = 4096
	// reserveKeep: a reserved file keeps at most this many octets (a
	// larger one is emptied), so that the reserve holds at most
	// maxReserve times this much disk.
	reserveKeep = 16 << 10
)

// spare is a message file that holds no message (its header is zero;
// a reused one keeps an earlier message's bytes after it) and whose
// directory entry is durable.
type spare struct {
	id   string
	f    *os.File
	born time.Time
	// size is the file's length: an earlier message's bytes may follow
	// the next message's end (Commit takes it for the fresh Message, so
	// that Finish can decide whether to empty the file without an fstat).
	size int64
}

// sparePool keeps empty message files ready for Create, so that receiving a
// message needs no create, rename or directory fsync on its way to the 250
// (see the package doc). One goroutine creates spares in batches and makes
// each batch durable with one (shared) directory fsync before it hands any
// of them out.
type sparePool struct {
	s      *Spool
	spares chan spare
	target atomic.Int32
	kick   chan struct{}
	quit   chan struct{}
	done   chan struct{}
	// recycled holds files of finished messages, emptied and renamed to
	// fresh ids (Spool.Finish) but whose names are not durable yet: the
	// next fill takes them first, before creating any file.
	mu       sync.Mutex
	recycled []spare
	// reserve holds the ids of closed files that hold no message (their
	// headers zeroed, not necessarily on disk yet), beyond what the pool
	// and recycled keep open. fill renames each to a fresh id before it
	// hands it out.
	reserve []string
	// created counts spare files made by the filler, for tests;
	// reused counts recycled files handed out.
	created atomic.Int64
	reused  atomic.Int64
	// made counts files Create had to make itself (the pool was empty).
	made atomic.Int64
}

func newSparePool(s *Spool, reserve []string) *sparePool {
	p := &sparePool{
		s:       s,
		reserve: reserve,
		spares:  make(chan spare, maxSpares),
		kick:    make(chan struct{}, 1),
		quit:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	p.target.Store(minSpares)
	go p.run()
	return p
}

func (p *sparePool) wake() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// get returns an empty message file whose name is durable.
func (p *sparePool) get() (spare, error) {
	select {
	case sp := <-p.spares:
		// Wake the filler only when it has something to do (its run
		// loop refills at half the target; recycled files wake it
		// themselves): a wake per message cost a goroutine switch,
		// often a thread wake-up, on the path to every 250.
		if len(p.spares) <= int(p.target.Load())/2 {
			p.wake()
		}
		if !sp.stale() {
			return sp, nil
		}
		// The pool sat unused: the others are stale too. Leave them
		// to the filler and shrink the pool.
		p.retire(sp)
		if t := p.target.Load(); t > minSpares {
			p.target.Store(t / 2)
		}
	default:
		// Empty: a bigger pool for next time.
		if t := p.target.Load(); t < maxSpares {
			p.target.Store(min(2*t, maxSpares))
		}
		p.wake()
	}
	// Take a reserved file or make one now; its name must be durable
	// before it is written to.
	if m := p.s.metrics; m != nil {
		m.SpareMiss()
	}
	var sp spare
	if r := p.takeReserve(1, nil); len(r) > 0 {
		sp = r[0]
		if err := writeOut(sp.f, headerSize); err != nil {
			p.drop(sp)
			return spare{}, fmt.Errorf("spool: create: %w", err)
		}
	} else {
		p.made.Add(1)
		var err error
		if sp, err = p.s.newFile(); err != nil {
			return spare{}, err
		}
	}
	if err := p.s.syncer.sync(1); err != nil {
		p.drop(sp)
		return spare{}, fmt.Errorf("directory fsync: %w", err)
	}
	return sp, nil
}

func (sp spare) stale() bool { return time.Since(sp.born) > maxSpareAge }

// recycle takes f, the file of the finished message id (its lock held by
// the caller), size octets long, zeroes its header (or, above reuseMax,
// empties it) and renames it to a fresh id for a later fill. It reports
// false, with f still open, when the pool has enough files or the file
// could not be recycled: the caller unlinks it.
//
// Why not empty every file: a message written over the blocks of an
// earlier one of at least its length leaves the file's size and block
// map as they were, so the fdatasync of its Commit writes data blocks
// and flushes the disk's cache but commits no journal transaction, and
// recycling frees no blocks (measured: 50 sessions of 1 KB messages,
// CPU per message 426 -> 362 µs, 2840 -> 3300 msg/s). The old bytes
// past the new message's end are harmless: records carry a checksum
// bound to their own message (format version 3), and readers stop at
// the first octets that fail it.
func (p *sparePool) recycle(f *os.File, id string, size int64) bool {
	if p == nil || p.stopping() {
		return false
	}
	p.mu.Lock()
	toReserve := len(p.recycled) >= maxSpares
	full := toReserve && len(p.reserve) >= maxReserve
	p.mu.Unlock()
	if full {
		return false
	}
	keep := int64(reuseMax)
	if toReserve {
		keep = reserveKeep
	}
	// No message any more before it is renamed (see Finish for why the
	// order).
	if size > 0 && size <= keep {
		if _, err := f.WriteAt(zeroHeader[:], 0); err != nil {
			return false
		}
	} else if err := f.Truncate(0); err != nil {
		return false
	} else {
		size = 0
	}
	now := time.Now()
	nid := p.s.ids.next(now)
	if err := renameNoReplace(p.s.path(id), p.s.path(nid)); err != nil {
		// Still under its old name, now empty: an uncommitted file,
		// which the caller's unlink removes.
		return false
	}
	if toReserve {
		f.Close()
		p.mu.Lock()
		p.reserve = append(p.reserve, nid)
		p.mu.Unlock()
		return true
	}
	p.mu.Lock()
	p.recycled = append(p.recycled, spare{id: nid, f: f, born: now, size: size})
	n := len(p.recycled)
	p.mu.Unlock()
	if n >= recycleBatch {
		p.wake()
	}
	return true
}

// retire moves a spare that went stale unused to the reserve (or, when
// the reserve is full, unlinks it). A spare is not committed, so neither
// needs a directory fsync: if a crash undoes the unlink, recovery removes
// the file.
func (p *sparePool) retire(sp spare) {
	p.mu.Lock()
	full := len(p.reserve) >= maxReserve
	p.mu.Unlock()
	if full {
		p.drop(sp)
		return
	}
	if !fitForReserve(sp.f) {
		p.drop(sp)
		return
	}
	sp.f.Close()
	p.mu.Lock()
	p.reserve = append(p.reserve, sp.id)
	p.mu.Unlock()
}

// fitForReserve empties f, a file that holds no message, when it is longer
// than reserveKeep. It reports whether f can go to the reserve.
func fitForReserve(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && (st.Size() <= reserveKeep || f.Truncate(0) == nil)
}

// refresh renames sp to a fresh id, so that the id (which carries the
// time) stays close to the arrival of the message the file will hold. The
// new name is durable only after the next directory fsync.
func (p *sparePool) refresh(sp spare) (spare, bool) {
	now := time.Now()
	nid := p.s.ids.next(now)
	if err := renameNoReplace(p.s.path(sp.id), p.s.path(nid)); err != nil {
		p.drop(sp)
		return spare{}, false
	}
	return spare{id: nid, f: sp.f, born: now, size: sp.size}, true
}

// takeReserve opens up to n reserved files, renamed to fresh ids, into
// batch.
func (p *sparePool) takeReserve(n int, batch []spare) []spare {
	for ; n > 0; n-- {
		p.mu.Lock()
		if len(p.reserve) == 0 {
			p.mu.Unlock()
			break
		}
		id := p.reserve[len(p.reserve)-1]
		p.reserve = p.reserve[:len(p.reserve)-1]
		p.mu.Unlock()
		f, err := openFile(p.s.path(id), os.O_RDWR, 0)
		var st os.FileInfo
		if err == nil {
			if st, err = f.Stat(); err != nil {
				f.Close()
			}
		}
		if err != nil {
			os.Remove(p.s.path(id))
			continue
		}
		if sp, ok := p.refresh(spare{id: id, f: f, size: st.Size()}); ok {
			batch = append(batch, sp)
		}
	}
	return batch
}

func (p *sparePool) recycledLen() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.recycled)
}

// takeRecycled moves up to n recycled files into batch; stale ones are
// renamed to fresh ids.
func (p *sparePool) takeRecycled(n int, batch []spare) []spare {
	p.mu.Lock()
	rest := len(p.recycled) - min(n, len(p.recycled))
	taken := slices.Clone(p.recycled[rest:])
	clear(p.recycled[rest:])
	p.recycled = p.recycled[:rest]
	p.mu.Unlock()
	for _, sp := range taken {
		if sp.stale() {
			var ok bool
			if sp, ok = p.refresh(sp); !ok {
				continue
			}
		}
		batch = append(batch, sp)
	}
	return batch
}

// drop removes a spare. It is not committed, so its unlink needs no
// directory fsync: if the unlink is lost in a crash, recovery removes the
// empty file.
func (p *sparePool) drop(sp spare) {
	sp.f.Close()
	os.Remove(p.s.path(sp.id))
}

// dropStale retires the stale spares, which are the oldest, at the front.
func (p *sparePool) dropStale() {
	for {
		select {
		case sp := <-p.spares:
			if sp.stale() {
				p.retire(sp)
				continue
			}
			select {
			case p.spares <- sp: // to the back: order does not matter
			default:
				p.drop(sp)
			}
		default:
		}
		return
	}
}

func (p *sparePool) run() {
	defer close(p.done)
	batch := make([]spare, 0, maxBatch)
	for {
		select {
		case <-p.kick:
		case <-p.quit:
			return
		}
		p.dropStale()
		// Refill once half the target is used, in batches of at most
		// maxBatch files (one directory fsync each) so that the first
		// spares are ready soon.
		// Between refills, recycled files join the pool in batches of
		// recycleBatch, so that a busy spool rarely creates a file.
		for !p.stopping() {
			t := int(p.target.Load())
			have := len(p.spares)
			var n int
			switch rec := p.recycledLen(); {
			case have <= t/2:
				n = min(t-have, maxBatch)
			case rec >= recycleBatch && have < cap(p.spares):
				n = min(rec, cap(p.spares)-have, maxBatch)
			}
			if n == 0 || !p.fill(n, batch[:0]) {
				break
			}
		}
	}
}

func (p *sparePool) stopping() bool {
	select {
	case <-p.quit:
		return true
	default:
		return false
	}
}

// fill creates n spares, makes their names durable with one directory
// fsync and hands them out. It reports whether all went well.
func (p *sparePool) fill(n int, batch []spare) bool {
	// A recycled file's zeroed header must reach the disk before a new
	// message is written over the old one: otherwise a power loss could
	// leave the old header in front of a mix of both messages, which
	// would read as a corrupt file rather than as a spare. Written out
	// here, and made durable by the cache flush of the directory fsync
	// below, which the files wait for anyway. All the writes are
	// started before the first is waited for.
	recycled := p.takeRecycled(n, nil)
	recycled = p.takeReserve(n-len(recycled), recycled)
	for _, sp := range recycled {
		startWriteOut(sp.f, headerSize) // an error shows again in writeOut
	}
	for _, sp := range recycled {
		if err := writeOut(sp.f, headerSize); err != nil {
			p.s.log.Warn("spool: cannot write out a recycled message file", "err", err)
			p.drop(sp)
			continue
		}
		batch = append(batch, sp)
	}
	reused := len(batch)
	// One file after the other: creating takes the directory's lock, so
	// creators in parallel only wait for each other (on ext4 without a
	// journal they spin for it, measured: p99 of 50 saturating sessions
	// 71-77 ms with 16 creators, 45-50 ms with one, same msg/s).
	var lastErr error
	for range n - reused {
		sp, err := p.s.newFile()
		if err != nil {
			lastErr = err
			break
		}
		batch = append(batch, sp)
	}
	if lastErr != nil {
		p.s.log.Warn("spool: cannot create spare message file", "err", lastErr)
	}
	if len(batch) == 0 {
		return false
	}
	// One directory fsync makes the whole batch's names durable; none
	// is handed out before it returned.
	err := p.s.syncer.sync(len(batch))
	for i, sp := range batch {
		if err == nil {
			select {
			case p.spares <- sp:
				if i < reused {
					p.reused.Add(1)
				} else {
					p.created.Add(1)
				}
				continue
			default:
			}
		}
		p.drop(sp)
	}
	if err != nil {
		if !errors.Is(err, errSyncerClosed) {
			p.s.log.Warn("spool: directory fsync for spare message files failed", "err", err)
		}
		return false
	}
	return lastErr == nil
}

// close stops the filler and closes the spares' files. The files stay:
// they hold no message, and the next Open keeps them as spares again.
func (p *sparePool) close() {
	close(p.quit)
	<-p.done
	p.mu.Lock()
	for _, sp := range p.recycled {
		sp.f.Close()
	}
	p.recycled = nil
	p.reserve = nil
	p.mu.Unlock()
	for {
		select {
		case sp := <-p.spares:
			sp.f.Close()
		default:
			return
		}
	}
}

// newFile creates an empty message file under a fresh queue id. Its name
// is not yet durable.
func (s *Spool) newFile() (spare, error) {
	for range 8 {
		now := time.Now()
		id := s.ids.next(now)
		f, err := openFile(s.path(id), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, fs.ErrExist) {
			// Ids carry a counter, so this only happens if the clock
			// stepped back across a restart.
			continue
		}
		if err != nil {
			return spare{}, fmt.Errorf("spool: create: %w", err)
		}
		return spare{id: id, f: f, born: now}, nil
	}
	return spare{}, errors.New("spool: create: could not find a free queue id")
}
