// Package spool is posthorn's durable message store: one file per message holding body, envelope and per-recipient state.
//
// # Layout on disk
//
//	<Dir>/lock            flock(2)ed while a process has the spool open
//	<Dir>/queue/<id>      one committed message
//	<Dir>/queue/<id>.tmp  a message being received (removed at Open: never committed)
//	<Dir>/corrupt/<id>    a file that failed its integrity checks, moved aside at Open
//
// A message file is
//
//	header   32 bytes: magic "PHSPOOL1", body length, envelope length,
//	         CRC-32C of envelope, CRC-32C of body, CRC-32C of the header itself
//	body     the message bytes exactly as written through Writer.Write
//	envelope JSON (so CR, LF, NUL or anything else a client sends cannot
//	         break the framing)
//	records  zero or more state records, each: length, CRC-32C, JSON
//
// # Durability
//
// Commit writes body and envelope into <id>.tmp, writes the header, fsyncs
// the file, renames it to <id> and only then waits for an fsync of the queue
// directory, which makes the new name durable. The order matters: a rename
// that reaches the disk before the data could expose a name pointing at
// an empty or partial file after a power loss. Because the name appears only
// after the data is on stable storage, a file called <id> is always
// complete; the CRCs are a second line of defence against storage that does
// not keep its promises, and a file that fails them is never loaded.
//
// Directory fsyncs are shared (group commit): a single goroutine takes every
// rename that is waiting, issues one fsync of the directory for all of them
// and wakes their committers. While one fsync is in progress the next batch
// gathers, so throughput grows with the number of concurrent committers. A
// commit thus costs one file fsync plus a share of one directory fsync.
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
// Remove unlinks the file and waits for a (shared) directory fsync.
package spool

import (
	"errors"
	"fmt"
	"hash/fnv"
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
	lock    *os.File
	syncer  *dirSyncer
	ids     idGen
	locks   [64]sync.Mutex // per-message serialisation of appends and removal
	closed  atomic.Bool
	commits atomic.Int64
}

// Open opens (creating if needed) the spool in opts.Dir and recovers it:
// temp files of commits that never finished are removed, and files that fail
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
	if err := s.recover(); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Close releases the spool. Commits and updates must have returned first.
func (s *Spool) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	err := s.syncer.close()
	if cerr := s.lock.Close(); err == nil {
		err = cerr
	}
	return err
}

func (s *Spool) recover() error {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("spool: recovery: %w", err)
	}
	var removed, quarantined, ok int
	for _, e := range entries {
		name := e.Name()
		switch {
		case strings.HasSuffix(name, tmpSuffix):
			// Never renamed into place, so never acknowledged: the client
			// got no 250 and will retry.
			if err := os.Remove(filepath.Join(s.dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("spool: recovery: %w", err)
			}
			removed++
		case validID(name):
			if _, _, err := s.load(name); err != nil {
				if !errors.Is(err, ErrCorrupt) {
					return fmt.Errorf("spool: recovery: %w", err)
				}
				s.log.Error("spool: quarantining corrupt message file", "queue_id", name, "err", err)
				if err := os.Rename(filepath.Join(s.dir, name), filepath.Join(s.corrupt, name)); err != nil {
					return fmt.Errorf("spool: recovery: %w", err)
				}
				quarantined++
				continue
			}
			ok++
		default:
			s.log.Warn("spool: ignoring unexpected file", "dir", s.dir, "name", name)
		}
	}
	if removed+quarantined > 0 {
		for _, d := range []string{s.dir, s.corrupt} {
			if err := durable.SyncDir(d); err != nil {
				return fmt.Errorf("spool: recovery: %w", err)
			}
		}
	}
	s.log.Info("spool: recovered", "dir", s.dir, "messages", ok, "temp_removed", removed, "corrupt", quarantined)
	return nil
}

func (s *Spool) path(id string) string { return filepath.Join(s.dir, id) }

func (s *Spool) lockID(id string) *sync.Mutex {
	h := fnv.New32a()
	io.WriteString(h, id)
	return &s.locks[h.Sum32()%uint32(len(s.locks))]
}

// Load returns the committed envelope of id with every recorded
// per-recipient update applied.
func (s *Spool) Load(id string) (*Envelope, error) {
	if !validID(id) {
		return nil, ErrBadID
	}
	env, _, err := s.load(id)
	return env, err
}

func (s *Spool) load(id string) (*Envelope, []Event, error) {
	f, err := os.Open(s.path(id))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil, fmt.Errorf("%w: %s", ErrNotFound, id)
		}
		return nil, nil, fmt.Errorf("spool: %w", err)
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
	f, err := os.Open(s.path(id))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
		}
		return nil, fmt.Errorf("spool: %w", err)
	}
	p, err := parseFile(f, id)
	if err != nil {
		f.Close()
		return nil, err
	}
	return newBodyReader(f, p.hdr, p.env.Prepend), nil
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
	mu := s.lockID(id)
	mu.Lock()
	defer mu.Unlock()

	f, err := os.OpenFile(s.path(id), os.O_RDWR, 0)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%w: %s", ErrNotFound, id)
		}
		return fmt.Errorf("spool: %w", err)
	}
	defer f.Close()
	p, err := parseFile(f, id)
	if err != nil {
		return err
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
	rec, err := encodeRecord(ev)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	if p.size != p.validEnd {
		// A torn record from a crashed append: cut it off, or the
		// replay would stop there and never see the records we add.
		s.log.Warn("spool: truncating torn state record", "queue_id", id, "bytes", p.size-p.validEnd)
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
func (s *Spool) Remove(id string) error {
	if !validID(id) {
		return ErrBadID
	}
	if s.closed.Load() {
		return ErrClosed
	}
	mu := s.lockID(id)
	mu.Lock()
	defer mu.Unlock()
	if err := os.Remove(s.path(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("spool: %w", err)
	}
	if err := s.syncer.sync(); err != nil {
		return fmt.Errorf("spool: remove %s: %w", id, err)
	}
	return nil
}
