// Package greylist keeps the greylisting triplets (client network, sender, recipient) in a durable file.
package greylist

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Options configures a Store. Zero durations take the defaults, which
// are postgrey's.
type Options struct {
	Path string // the triplet file; created when missing
	// Delay is how long a new triplet is refused; default 5m.
	Delay time.Duration
	// Window is how long after Delay a retry is still awaited; a triplet
	// not retried by then starts over. Default 2 days.
	Window time.Duration
	// Expire forgets a triplet that passed and was not seen again for
	// this long; default 35 days.
	Expire time.Duration
	// MaxEntries bounds the triplets held; when full, new triplets pass
	// without being recorded (failing open, as a full greylist must not
	// stop mail). Default 1,000,000.
	MaxEntries int
	Now        func() time.Time
}

// Store is the triplet database: in memory, with every change appended
// to a file that is compacted when it grows. A triplet written just before
// a crash may be lost; the sender is then greylisted once more, which
// costs a delay, never a message.
type Store struct {
	o Options

	mu      sync.Mutex
	entries map[string]entry
	f       *os.File
	w       *bufio.Writer
	lines   int // lines in the file
}

type entry struct {
	first  int64 // unix seconds of the first attempt
	passed int64 // unix seconds of the last accepted attempt; 0: still waiting
}

// Open loads the store at o.Path.
func Open(o Options) (*Store, error) {
	if o.Delay <= 0 {
		o.Delay = 5 * time.Minute
	}
	if o.Window <= 0 {
		o.Window = 48 * time.Hour
	}
	if o.Expire <= 0 {
		o.Expire = 35 * 24 * time.Hour
	}
	if o.MaxEntries <= 0 {
		o.MaxEntries = 1_000_000
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	s := &Store{o: o, entries: map[string]entry{}}
	if err := s.load(); err != nil {
		return nil, err
	}
	if err := s.compact(); err != nil {
		return nil, err
	}
	return s, nil
}

// load reads the file; later lines override earlier ones. Lines that do
// not parse (a torn last write) are skipped.
func (s *Store) load() error {
	f, err := os.Open(s.o.Path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("greylist: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fl := strings.Fields(sc.Text())
		if len(fl) != 4 || fl[0] != "v1" || len(fl[1]) != 32 {
			continue
		}
		first, err1 := strconv.ParseInt(fl[2], 10, 64)
		passed, err2 := strconv.ParseInt(fl[3], 10, 64)
		if err1 != nil || err2 != nil {
			continue
		}
		if first == 0 {
			delete(s.entries, fl[1])
			continue
		}
		s.entries[fl[1]] = entry{first: first, passed: passed}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("greylist: %s: %w", s.o.Path, err)
	}
	return nil
}

// compact rewrites the file with the live entries only (write, fsync,
// rename, fsync the directory) and reopens it for appending.
func (s *Store) compact() error {
	now := s.o.Now().Unix()
	if s.f != nil {
		s.w.Flush()
		s.f.Close()
		s.f = nil
	}
	tmp := s.o.Path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("greylist: %w", err)
	}
	w := bufio.NewWriter(f)
	n := 0
	for k, e := range s.entries {
		if s.expired(e, now) {
			delete(s.entries, k)
			continue
		}
		fmt.Fprintf(w, "v1 %s %d %d\n", k, e.first, e.passed)
		n++
	}
	err = w.Flush()
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, s.o.Path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("greylist: %w", err)
	}
	if d, err := os.Open(filepath.Dir(s.o.Path)); err == nil {
		d.Sync()
		d.Close()
	}
	s.f, err = os.OpenFile(s.o.Path, os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("greylist: %w", err)
	}
	s.w = bufio.NewWriter(s.f)
	s.lines = n
	return nil
}

func (s *Store) expired(e entry, now int64) bool {
	if e.passed != 0 {
		return now-e.passed > int64(s.o.Expire/time.Second)
	}
	return now-e.first > int64((s.o.Delay+s.o.Window)/time.Second)
}

// Key is the triplet's key: the client's network (IPv4 /24, IPv6 /64,
// since large senders retry from a neighbouring address), the sender and
// the recipient, lowercased and hashed (no address text reaches the file).
func Key(ip netip.Addr, from, rcpt string) string {
	ip = ip.Unmap()
	bits := 24
	if ip.Is6() {
		bits = 64
	}
	p, _ := ip.Prefix(bits)
	h := sha256.Sum256([]byte(p.String() + "\x00" + strings.ToLower(from) + "\x00" + strings.ToLower(rcpt)))
	return hex.EncodeToString(h[:16])
}

// Check records an attempt to deliver from "from" to rcpt by ip and
// reports whether it may pass; when not, wait says how long until a retry
// will. An error writing the file is returned with pass true: the store
// fails open.
func (s *Store) Check(ip netip.Addr, from, rcpt string) (pass bool, wait time.Duration, err error) {
	k := Key(ip, from, rcpt)
	now := s.o.Now().Unix()
	delay := int64(s.o.Delay / time.Second)
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.entries[k]
	if ok && s.expired(e, now) {
		ok = false
	}
	switch {
	case !ok:
		if len(s.entries) >= s.o.MaxEntries {
			return true, 0, nil
		}
		e = entry{first: now}
		return false, s.o.Delay, s.put(k, e)
	case e.passed != 0:
		if now-e.passed < 24*3600 { // refresh at most daily: no write per message
			return true, 0, nil
		}
		e.passed = now
		return true, 0, s.put(k, e)
	case now-e.first < delay:
		return false, time.Duration(delay-(now-e.first)) * time.Second, nil
	default:
		e.passed = now
		return true, 0, s.put(k, e)
	}
}

// put records an entry and appends it to the file.
func (s *Store) put(k string, e entry) error {
	s.entries[k] = e
	if s.f == nil {
		return nil
	}
	fmt.Fprintf(s.w, "v1 %s %d %d\n", k, e.first, e.passed)
	s.lines++
	err := s.w.Flush()
	if err == nil && s.lines > 2*len(s.entries)+1000 {
		err = s.compact()
	}
	if err != nil {
		return fmt.Errorf("greylist: %w", err)
	}
	return nil
}

// Len returns the number of triplets held.
func (s *Store) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.entries)
}

// Close flushes and syncs the file.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return nil
	}
	err := s.w.Flush()
	if serr := s.f.Sync(); err == nil {
		err = serr
	}
	if cerr := s.f.Close(); err == nil {
		err = cerr
	}
	s.f = nil
	return err
}
