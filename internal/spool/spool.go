// Package spool is posthorn's durable message store: one file per message holding body, envelope and per-recipient state.
//
// # Layout on disk
//
//	<Dir>/lock            flock(2)ed while a process has the spool open
//	<Dir>/queue/<id>      one message file: committed, or a spare / a message
//	                      being received (header still zero; kept as a spare
//	                      at Open, see below)
//	                      or a delivered message's file renamed for reuse
//	<Dir>/queue/<id>.tmp  left by versions before the spare pool; removed at Open
//	<Dir>/corrupt/<id>    a file that failed its integrity checks, moved aside
//	                      (at Open, or at the first Load of a message found at Open)
//
// A message file is
//
//	header   64 bytes: magic "PHSPOOL3", body length, envelope length,
//	         SHA-256 of the envelope (16 octets) and of the body (24 octets),
//	         CRC-32C of the header itself; all zero until Commit writes it:
//	         the header is the commit mark
//	body     the message bytes exactly as written through Writer.Write
//	envelope JSON (so CR, LF, NUL or anything else a client sends cannot
//	         break the framing)
//	records  zero or more state records, each: length, CRC-32C, JSON; the
//	         CRC starts from the CRC of the envelope digest, so a record
//	         is valid only in its own message's file
//	         then, in a reused file, bytes of an earlier message
//
// Files of version 2 ("PHSPOOL2": the same header, records with a plain
// CRC-32C; never reused in place) and version 1 ("PHSPOOL1": 32-byte
// header, CRC-32C instead of the digests), written on 2026-11-23 and
// before, are still read, so a queue survives the upgrade.
//
// A file whose first 8 bytes are zero (or that is shorter and zero) holds
// no message: Load, Body, History and UpdateRecipients report ErrNotFound,
// List skips it, Remove leaves it alone, Open keeps it as a spare (up to
// 4096 such files; it unlinks the rest). So does an intact file whose
// envelope names another id: a delivered message's file that Finish
// renamed for reuse, whose header zeroing a power loss undid; Open zeroes
// its header. Any other file that fails the checks is corrupt and is
// quarantined, never delivered.
//
// # Durability
//
// A 250 may be sent only when name, body, envelope and recipients are on
// stable storage. Commit reaches that with one fdatasync, without
// creating, renaming or fsyncing a directory on the way:
//
//  1. Spares. A goroutine keeps files that hold no message ready, each
//     named with a fresh queue id. It creates them (or takes files of
//     finished messages, their headers zeroed and renamed by Finish, and
//     writes those headers out) in batches and makes each batch's names
//     and headers durable with one directory fsync (shared with concurrent
//     removals, group commit) before it hands any of them out. Create takes
//     a spare, so the name of every Writer's file is durable before its
//     first byte is written. (If the pool is empty, Create takes or makes
//     a file itself and waits for a directory fsync. Spares older than 10
//     seconds are not handed out, so that ids, which carry the time the
//     file got its name, stay close to the arrival time: they are kept,
//     closed, in a reserve with the finished messages' files the pool has
//     no room for, up to 4096, and renamed to a fresh id when taken. Files
//     are unlinked only beyond that, so a backlog drains into files the
//     next burst reuses.)
//  2. The session streams the body after a zero header; the Writer hashes
//     it (SHA-256) as it goes and keeps it in a 64 KiB buffer, writing to
//     the file only what outgrows it.
//  3. Commit appends the envelope, writes the header last (a message of
//     up to a page, envelope included, reaches the file in one write, header
//     and all), and fdatasyncs
//     the file once: body, envelope, header and the file's size are on
//     stable storage when it returns nil, and only then does the client
//     hear 250. In a reused file (step 1), whose blocks the message
//     overwrites, that fdatasync changes no metadata unless the message
//     is longer than the file: it writes data and flushes the disk's
//     cache, without a journal commit.
//
// One fdatasync, not two (data, then the header, then again), because the
// header carries cryptographic digests. An fsync makes a file's dirty
// blocks durable in no particular order, so a power loss during step 3 can
// leave the header on disk and a body block not (read back as zeros). The
// client got no 250 for that file, so it must never be delivered: the
// body's SHA-256 tells it from a good one. (A CRC could not: CRC-32C is
// linear, and a sender can craft a body whose CRC does not change when a
// block of it reads back as zeros; version 1 therefore paid for a second
// fdatasync instead.) Open reads only headers and envelopes, as before;
// it marks the messages it found as unverified, and the first Load of
// each reads its body and checks the digest, quarantining a torn one. A
// message committed by the running process needs no such check: its
// bytes are in the page cache whatever reached the disk. The envelope has
// its own digest and is checked at every read. Measured (smtp-source, one
// session, same run, alternating): one fdatasync 653-787 msg/s, two
// 547-640.
//
// Crash points (process killed, or power lost; "removed" means taken by
// recovery at the next Open for a file that holds no message: kept, its
// header zeroed, as a spare for the next messages, or beyond 4096 such
// files unlinked, after which Open fsyncs the directory):
//
//   - Spare creation, before its batch's directory fsync: the name may or
//     may not survive; if it does the file is empty: removed. After it:
//     an empty file: removed. Nothing was handed out before the fsync.
//   - While the body streams, and during step 3 before the header is
//     written: the header is zero: removed. The client got no 250.
//   - During step 3's fdatasync, after the header was written: either the
//     header did not reach the disk (zero: removed), or it did and the
//     rest did too (the whole message passes its checks and is delivered
//     although the client, which got no 250, will send it again: SMTP's
//     known duplicate window, RFC 1047), or it did and part of the body
//     did not (the digest fails at the first Load: quarantined, never
//     delivered; the client got no 250 and sends it again). If a power
//     loss tears the header sector itself, the header's own CRC fails:
//     quarantined.
//   - After Commit returned nil: name durable since step 1, everything
//     else since step 3: the message is recovered. A committed file that
//     fails its checks cannot be an acknowledged message unless the
//     storage lost or changed bytes after it acknowledged them; it is
//     quarantined, never delivered.
//   - A Commit that fails (fsync error, cancelled context) unlinks the
//     file without waiting for a directory fsync. If the unlink is lost,
//     the file is uncommitted (removed), complete (delivered, duplicate
//     as above) or torn (quarantined).
//   - Abort, and dropping a stale spare, unlink without a directory fsync:
//     if the unlink is lost, the header is zero: removed.
//   - Remove unlinks a committed file and waits for a (shared) directory
//     fsync before it returns; if the unlink is lost the message comes
//     back with all its state records, which say its recipients are done.
//   - Finish (a message delivered to every recipient) zeroes the file's
//     header (empties it, above 128 KiB, or above 16 KiB when it goes to
//     the reserve), renames it to a fresh id for the spare pool and does
//     not wait: a power loss may bring the message
//     back whole under its old name (delivered again: a duplicate, never
//     a loss) or with a zero header (removed); under the new name with a
//     zero header or, if the zeroing was lost, whole but naming the old
//     id (removed either way). See Finish.
//   - A reused spare handed out: its zero header is durable (step 1), so
//     a message being received into it is uncommitted as above, whatever
//     of the old message's bytes it has overwritten.
//   - Open during recovery: removing and quarantining are idempotent.
//
// A concurrent List or Load sees a message from the moment its header is
// written, possibly just before Commit returns; a Commit that then fails
// removes it again.
//
// # Per-recipient state
//
// Outcomes are appended to the message file as small checksummed records
// (UpdateRecipients, SetHold) and the file is fsynced before the call
// returns. Appending to an existing file needs no directory fsync, the body
// is never rewritten, and the records double as the attempt history
// (History). On load the records are replayed in order; a torn record at
// the tail (a crash during an append that therefore never returned nil) and
// everything after it is ignored, and cut off before the next append.
//
// Remove unlinks the file and waits for a (shared) directory fsync. Finish,
// for messages delivered to every recipient, recycles the file without
// waiting.
package spool

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/posthorn/posthorn/internal/durable"
	"golang.org/x/sys/unix"
)

// Errors returned by the spool. Test with errors.Is.
var (
	// ErrNotFound: no committed message with that id.
	ErrNotFound = errors.New("spool: message not found")
	// ErrCorrupt: the file failed its integrity checks.
	ErrCorrupt = errors.New("spool: corrupt message file")
	// ErrBadID: the id is not one this spool could have made.
	ErrBadID = errors.New("spool: malformed queue id")
	// ErrFinal: an update tried to change a recipient that is already
	// delivered or failed.
	ErrFinal = errors.New("spool: recipient already in a final state")
	// ErrClosed: the Writer was already committed or aborted, or the
	// Spool was closed.
	ErrClosed = errors.New("spool: closed")
)

// Options configure Open.
type Options struct {
	// Dir is the spool's root directory; created (0700) if missing.
	Dir string
	// Logger receives recovery events; nil discards them.
	Logger *slog.Logger
	// Metrics receives group-commit measurements; nil: none.
	Metrics Metrics
}

// Spool is a durable message store. Its methods are safe for concurrent use.
type Spool struct {
	dir     string // <Dir>/queue
	corrupt string // <Dir>/corrupt
	log     *slog.Logger
	metrics Metrics // may be nil
	lock    *os.File
	syncer  *dirSyncer
	pool    *sparePool
	ids     idGen
	locks   idLocks       // per-message serialisation of commit, appends and removal
	fresh   freshMessages // committed, still open, for their first Open
	// unverified holds the ids found at Open whose bodies have not been
	// checked against their digests yet (Load checks them once): a power
	// loss during a Commit can leave a header on disk with a body that is
	// not (see Durability).
	unverified sync.Map
	closed     atomic.Bool
	commits    atomic.Int64
}

// Open opens (creating if needed) the spool in opts.Dir and recovers it:
// files of commits that never finished hold no message and are kept as
// spares (temp files of older versions are removed), and files that fail
// their integrity checks are moved to <Dir>/corrupt. Only one process may
// have a spool open at a time.
func Open(opts Options) (*Spool, error) {
	if opts.Dir == "" {
		return nil, errors.New("spool: Options.Dir is empty")
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Spool{
		dir:     filepath.Join(opts.Dir, "queue"),
		corrupt: filepath.Join(opts.Dir, "corrupt"),
		log:     logger,
		metrics: opts.Metrics,
	}
	s.ids.init()
	for _, d := range []string{opts.Dir, s.dir, s.corrupt} {
		if err := durable.MkdirAll(d); err != nil {
			return nil, fmt.Errorf("spool: %w", err)
		}
	}
	lock, err := os.OpenFile(filepath.Join(opts.Dir, "lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		return nil, fmt.Errorf("spool: %s is in use by another process: %w", opts.Dir, err)
	}
	s.lock = lock
	s.syncer, err = newDirSyncer(s.dir, opts.Metrics)
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("spool: %w", err)
	}
	reserve, err := s.recover()
	if err != nil {
		s.syncer.close()
		lock.Close()
		return nil, err
	}
	// Spares are made on demand, from the first Create on: a spool
	// opened only to read (posthorn queue) creates none.
	s.pool = newSparePool(s, reserve)
	return s, nil
}

// Close releases the spool. Commits and updates must have returned first.
func (s *Spool) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.pool.close()
	s.fresh.closeAll()
	err := s.syncer.close()
	if cerr := s.lock.Close(); err == nil {
		err = cerr
	}
	return err
}

// recover removes what a crash left half done and quarantines what fails
// its checks. Files that hold no message (spares, messages whose Commit did
// not finish, finished messages' files kept for reuse) are kept, up to
// maxReserve, for the spare pool's reserve, whose ids it returns: a restart
// does not unlink the files a busy spool will need again.
func (s *Spool) recover() (reserve []string, err error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("spool: recovery: %w", err)
	}
	var removed, quarantined, ok int
	for _, e := range entries {
		name := e.Name()
		switch {
		case strings.HasSuffix(name, tmpSuffix):
			// Never renamed into place, so never acknowledged: the client
			// got no 250 and will retry.
			if err := os.Remove(filepath.Join(s.dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("spool: recovery: %w", err)
			}
			removed++
		case validID(name):
			if _, _, err := s.loadRaw(name); err != nil {
				if errors.Is(err, errUncommitted) {
					// A spare, a message being received or one whose
					// Commit did not reach its header: never
					// acknowledged (see Durability). Its name stays
					// until the pool renames it for a message.
					if len(reserve) < maxReserve && s.adopt(name) {
						reserve = append(reserve, name)
						continue
					}
					if err := os.Remove(filepath.Join(s.dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
						return nil, fmt.Errorf("spool: recovery: %w", err)
					}
					removed++
					continue
				}
				if !errors.Is(err, ErrCorrupt) {
					return nil, fmt.Errorf("spool: recovery: %w", err)
				}
				s.log.Error("spool: quarantining corrupt message file", "queue_id", name, "err", err)
				if err := os.Rename(filepath.Join(s.dir, name), filepath.Join(s.corrupt, name)); err != nil {
					return nil, fmt.Errorf("spool: recovery: %w", err)
				}
				quarantined++
				continue
			}
			s.unverified.Store(name, struct{}{})
			ok++
		default:
			s.log.Warn("spool: ignoring unexpected file", "dir", s.dir, "name", name)
		}
	}
	if removed+quarantined > 0 {
		for _, d := range []string{s.dir, s.corrupt} {
			if err := durable.SyncDir(d); err != nil {
				return nil, fmt.Errorf("spool: recovery: %w", err)
			}
		}
	}
	s.log.Info("spool: recovered", "dir", s.dir, "messages", ok, "temp_removed", removed, "spares_kept", len(reserve), "corrupt", quarantined)
	return reserve, nil
}

// adopt prepares the file id, which holds no message, for the spare
// pool's reserve: a header that is not zero (a finished message's file
// whose header zeroing a crash undid) is zeroed again, and a file longer
// than reserveKeep is emptied. It reports whether the file can be kept.
func (s *Spool) adopt(id string) bool {
	f, err := openFile(s.path(id), os.O_RDWR, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	var b [len(magic)]byte
	if n, _ := f.ReadAt(b[:], 0); !uncommittedMark(b[:n]) {
		if _, err := f.WriteAt(zeroHeader[:], 0); err != nil {
			return false
		}
	}
	return fitForReserve(f)
}

func (s *Spool) path(id string) string { return filepath.Join(s.dir, id) }

// FreeSpace returns the octets an unprivileged process may still write to
// the spool's file system.
func (s *Spool) FreeSpace() (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(s.dir, &st); err != nil {
		return 0, fmt.Errorf("spool: %w", err)
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}

// Load returns the committed envelope of id with every recorded
// per-recipient update applied. The first Load of a message found at Open
// also reads its body and checks it against the header's digest: one that
// fails is moved to the corrupt directory and Load reports ErrCorrupt.
func (s *Spool) Load(id string) (*Envelope, error) {
	m, err := s.open(id, os.O_RDONLY)
	if err != nil {
		return nil, err
	}
	m.Close()
	return m.Envelope, nil
}

// verify reads the body of a message found at Open and checks it against
// its digest; a mismatch quarantines the file.
func (s *Spool) verify(env *Envelope) error {
	check := func() error {
		r, err := s.BodyOf(env)
		if err != nil {
			return err
		}
		_, err = io.Copy(io.Discard, r)
		r.Close()
		return err
	}
	err := check()
	if err == nil {
		s.unverified.Delete(env.ID)
		return nil
	}
	if !errors.Is(err, ErrCorrupt) {
		return err
	}
	return s.quarantine(env.ID, err, check)
}

// quarantine moves the file of id, which failed its checks with err, to
// the corrupt directory, where nothing delivers it, and returns err. It
// runs check again under the message's lock first: a file emptied by a
// concurrent Finish (or removed) fails a check made without the lock,
// and is then not corrupt but gone (ErrNotFound).
func (s *Spool) quarantine(id string, err error, check func() error) error {
	s.fresh.drop(id)
	defer s.locks.lock(id)()
	if again := check(); !errors.Is(again, ErrCorrupt) {
		if again == nil {
			return fmt.Errorf("spool: %s changed while it was read; try again", id)
		}
		return notFound(again, id)
	}
	s.log.Error("spool: quarantining corrupt message file", "queue_id", id, "err", err)
	if rerr := os.Rename(s.path(id), filepath.Join(s.corrupt, id)); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
		return fmt.Errorf("spool: quarantining %s: %w (%w)", id, rerr, err)
	}
	s.unverified.Delete(id)
	return err
}

func (s *Spool) load(id string) (*Envelope, []Event, error) {
	env, ev, err := s.loadRaw(id)
	return env, ev, notFound(err, id)
}

// notFound reports a file that holds no committed message as ErrNotFound.
func notFound(err error, id string) error {
	if errors.Is(err, errUncommitted) {
		return fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	return err
}

// openMessage opens the file of id; a missing file is ErrNotFound.
func (s *Spool) openMessage(id string, flag int) (*os.File, error) {
	f, err := openFile(s.path(id), flag, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	return f, nil
}

func (s *Spool) loadRaw(id string) (*Envelope, []Event, error) {
	f, err := s.openMessage(id, os.O_RDONLY)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	p, err := parseFile(f, id)
	if err != nil {
		return nil, nil, err
	}
	return p.env, p.events, nil
}

// List returns every committed message, oldest id first. Files that fail
// their integrity checks are logged and skipped.
func (s *Spool) List() ([]*Envelope, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	var envs []*Envelope
	for _, e := range entries {
		if !validID(e.Name()) {
			continue
		}
		env, _, err := s.load(e.Name())
		switch {
		case errors.Is(err, ErrNotFound):
			continue // removed since ReadDir
		case errors.Is(err, ErrCorrupt):
			if _, serr := os.Lstat(s.path(e.Name())); errors.Is(serr, fs.ErrNotExist) {
				continue // finished and its file reused while read
			}
			s.log.Error("spool: skipping corrupt message file", "queue_id", e.Name(), "err", err)
			continue
		case err != nil:
			return nil, err
		}
		envs = append(envs, env)
	}
	sort.Slice(envs, func(i, j int) bool { return envs[i].ID < envs[j].ID })
	return envs, nil
}

// History returns every state record of id in the order written: the
// attempt history that `posthorn queue trace` shows.
func (s *Spool) History(id string) ([]Event, error) {
	if !validID(id) {
		return nil, ErrBadID
	}
	_, ev, err := s.load(id)
	return ev, err
}

// Body returns the message of id as it is to be delivered: the envelope's
// Prepend header fields, then the bytes written. When read sequentially to
// the end the reader verifies the body checksum and fails with ErrCorrupt
// instead of returning io.EOF if it does not match.
func (s *Spool) Body(id string) (io.ReadSeekCloser, error) {
	if !validID(id) {
		return nil, ErrBadID
	}
	f, err := s.openMessage(id, os.O_RDONLY)
	if err != nil {
		return nil, err
	}
	p, err := parseFile(f, id)
	if err != nil {
		f.Close()
		return nil, notFound(err, id)
	}
	return newBodyReader(f, p.hdr, p.env.Prepend, true), nil
}

// BodyOf is Body for an envelope just loaded: it reads the file's header
// but not the envelope again, and reports ErrNotFound when the file no
// longer holds that message (finished and reused since). The first Load
// of a message found at Open checks the body through it; a delivery
// reads the body through its Message instead.
func (s *Spool) BodyOf(env *Envelope) (io.ReadSeekCloser, error) {
	if !validID(env.ID) {
		return nil, ErrBadID
	}
	f, err := s.openMessage(env.ID, os.O_RDONLY)
	if err != nil {
		return nil, err
	}
	h, err := readHeader(f, env.ID)
	if err == nil && (h.bodyLen != uint64(env.Size) || env.envSum != nil && !bytes.Equal(h.envSum, env.envSum)) {
		// Not the message the envelope describes: finished since, and
		// the file reused.
		err = fmt.Errorf("%w: %s", ErrNotFound, env.ID)
	}
	if err != nil {
		f.Close()
		return nil, notFound(err, env.ID)
	}
	return newBodyReader(f, h, env.Prepend, true), nil
}

// UpdateRecipients durably records new per-recipient state: when it returns
// nil, the updates are on stable storage and every later Load reflects them.
// All updates of one call are written as one record, so they take effect
// together or (after a crash during the call) not at all. A recipient that is
// Delivered or Failed cannot change status again (ErrFinal).
func (s *Spool) UpdateRecipients(id string, updates ...RecipientUpdate) error {
	if len(updates) == 0 {
		return nil
	}
	return s.appendRecord(id, Event{Recipients: updates})
}

// SetHold durably puts id on hold (the queue does not attempt it) or
// releases it.
func (s *Spool) SetHold(id string, hold bool) error {
	return s.appendRecord(id, Event{Hold: &hold})
}

func (s *Spool) appendRecord(id string, ev Event) error {
	if !validID(id) {
		return ErrBadID
	}
	if s.closed.Load() {
		return ErrClosed
	}
	s.fresh.drop(id)
	defer s.locks.lock(id)()

	f, err := s.openMessage(id, os.O_RDWR)
	if err != nil {
		return err
	}
	defer f.Close()
	p, err := parseFile(f, id)
	if err != nil {
		return notFound(err, id)
	}
	for _, u := range ev.Recipients {
		if u.Index < 0 || u.Index >= len(p.env.Recipients) {
			return fmt.Errorf("spool: %s: recipient index %d out of range", id, u.Index)
		}
		if !u.Status.valid() {
			return fmt.Errorf("spool: %s: invalid recipient status %d", id, u.Status)
		}
		if cur := p.env.Recipients[u.Index].Status; cur.Final() && u.Status != cur {
			return fmt.Errorf("%w: %s recipient %d is %s", ErrFinal, id, u.Index, cur)
		}
	}
	ev.At = time.Now().UTC()
	rec, err := encodeRecord(p.hdr, ev)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	if p.size != p.validEnd {
		// A torn record from a crashed append, or the bytes of an
		// earlier message in a reused file: cut them off, so that
		// what follows the records we add is never a torn record
		// that the replay would stop at.
		s.log.Debug("spool: cutting bytes after the last state record", "queue_id", id, "bytes", p.size-p.validEnd)
		if err := f.Truncate(p.validEnd); err != nil {
			return fmt.Errorf("spool: %w", err)
		}
	}
	if _, err := f.WriteAt(rec, p.validEnd); err != nil {
		return fmt.Errorf("spool: %s: %w", id, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("spool: %s: %w", id, err)
	}
	return nil
}

// Remove deletes id durably: when it returns nil the message will not
// reappear after a crash. Removing a message that does not exist is not an
// error.
func (s *Spool) Remove(id string) error { return s.remove(id, true) }

// Finish ends a message whose delivery is complete without waiting for
// the directory to reach stable storage. The queue uses it for messages
// delivered to every recipient, where waiting for a directory fsync per
// message cost as much disk time as accepting it.
//
// The file is not unlinked but recycled: its header zeroed (a file over
// 128 KiB is emptied instead), then renamed to a fresh queue id and given
// to the spare pool, whose next fill makes the zero header and the new
// name durable, and the old name gone, before anybody writes to it. Creating a file per message costs more than the rest of
// the file system work together once thousands are deleted per minute
// (ext4's inode allocator skips recently deleted inodes one by one), and
// a recycled file needs no inode at all.
//
// Crash points: a process crash cannot bring the message back (zeroed and
// renamed when Finish returns). After a power loss the old name comes back
// either holding the whole message (the rename was lost: it is delivered
// again, a duplicate, never a loss, as with Postfix, which unlinks
// delivered queue files without an fsync either) or with a zero header
// (removed at recovery); the new name with a zero header or, when the
// rename survived and the header write did not, holding the whole message
// under an envelope that names the old id: recovery removes it too,
// neither delivering it again nor taking it for corrupt. (When the file
// is emptied instead, ext4 and XFS replay the truncation and the rename
// in order: the new name only comes back empty.)
func (s *Spool) Finish(id string) error { return s.remove(id, false) }

func (s *Spool) remove(id string, durable bool) error {
	if !validID(id) {
		return ErrBadID
	}
	if s.closed.Load() {
		return ErrClosed
	}
	s.fresh.drop(id)
	defer s.locks.lock(id)()
	f, err := s.openMessage(id, os.O_RDWR)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	h, err := readHeader(f, id)
	if errors.Is(err, errUncommitted) {
		// A spare or a message still being received: no message has
		// this id (yet), and its Writer's file is not ours to delete.
		f.Close()
		return nil
	}
	return s.dispose(id, f, h.fileSize, durable)
}

// dispose ends the committed message id, whose file f of size octets is
// open and whose lock the caller holds: the file is recycled (Finish,
// when the pool takes it) or unlinked, durably when durable. f is closed
// or handed to the pool.
func (s *Spool) dispose(id string, f *os.File, size int64, durable bool) error {
	s.unverified.Delete(id)
	if !durable && s.pool.recycle(f, id, size) {
		return nil
	}
	f.Close()
	if err := os.Remove(s.path(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("spool: %w", err)
	}
	if !durable {
		return nil
	}
	if err := s.syncer.sync(1); err != nil {
		return fmt.Errorf("spool: remove %s: %w", id, err)
	}
	return nil
}
