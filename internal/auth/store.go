package auth

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"github.com/posthorn/posthorn/internal/durable"

	"golang.org/x/net/idna"
)

// Errors from the account operations.
var (
	ErrExists    = errors.New("account already exists")
	ErrNoAccount = errors.New("no such account")
)

// StoreOptions configure a Store.
type StoreOptions struct {
	// SubaddressDelimiter: each character starts a subaddress, for Owns.
	// "" turns subaddresses off.
	SubaddressDelimiter string
	// Hash are the argon2id costs for new passwords; zero means
	// DefaultHashParams.
	Hash HashParams
}

// Store is the accounts file: one "address:hash" per line, the hash
// argon2id in PHC form or bcrypt. Reads notice changes made by another
// process (a new inode, size or modification time) and reload; writes
// replace the file atomically under a lock. Safe for concurrent use.
type Store struct {
	path string
	opts StoreOptions

	mu       sync.Mutex
	stamp    stamp
	accounts map[string]string // normalised address -> hash
	loadErr  error             // the last reload failure; the previous contents stay in use

	hashing chan struct{} // bounds concurrent hashing: argon2id costs Memory KiB each

	dummyOnce sync.Once
	dummy     string
}

// OpenStore opens the accounts file at path, with subaddress delimiter "+".
// A missing file is an empty store; it is created, mode 0600, by the first
// Add.
func OpenStore(path string) (*Store, error) {
	return OpenStoreWith(path, StoreOptions{SubaddressDelimiter: "+"})
}

// OpenStoreWith opens the accounts file at path with options.
func OpenStoreWith(path string, o StoreOptions) (*Store, error) {
	if o.Hash.Memory == 0 || o.Hash.Time == 0 || o.Hash.Threads == 0 {
		o.Hash = DefaultHashParams
	}
	n := runtime.NumCPU()
	s := &Store{path: path, opts: o, hashing: make(chan struct{}, n)}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.refresh(); err != nil {
		return nil, err
	}
	return s, nil
}

// Path returns the accounts file's path.
func (s *Store) Path() string { return s.path }

// Err returns the error of the last reload, nil when the file on disk was
// read fine. While it is not nil the store serves the last good contents.
func (s *Store) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refreshKeep()
	return s.loadErr
}

// stamp identifies a version of the file cheaply.
type stamp struct {
	exists bool
	size   int64
	mtime  int64
	ino    uint64
	ctime  int64
}

func stampOf(fi fs.FileInfo) stamp {
	st := stamp{exists: true, size: fi.Size(), mtime: fi.ModTime().UnixNano()}
	st.ino, st.ctime = sysStamp(fi)
	return st
}

// refresh reloads the file when it changed since the last look. s.mu held.
func (s *Store) refresh() error {
	fi, err := os.Stat(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		s.stamp, s.accounts = stamp{}, map[string]string{}
		return nil
	}
	if err != nil {
		return fmt.Errorf("accounts: %w", err)
	}
	st := stampOf(fi)
	if st == s.stamp && s.accounts != nil {
		return nil
	}
	accounts, err := s.read()
	if err != nil {
		return err
	}
	s.stamp, s.accounts = st, accounts
	return nil
}

// refreshKeep refreshes, keeping the old contents on failure. s.mu held.
func (s *Store) refreshKeep() {
	s.loadErr = s.refresh()
	if s.accounts == nil {
		s.accounts = map[string]string{}
	}
}

func (s *Store) read() (map[string]string, error) {
	data, err := os.ReadFile(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]string{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("accounts: %w", err)
	}
	return parseAccounts(s.path, data)
}

func parseAccounts(name string, data []byte) (map[string]string, error) {
	accounts := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 4096), 64*1024)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ':')
		if i < 0 {
			return nil, fmt.Errorf("%s:%d: expected address:hash", name, n)
		}
		addr, err := NormalizeAddress(line[:i])
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %v", name, n, err)
		}
		hash := line[i+1:]
		if err := checkHash(hash); err != nil {
			return nil, fmt.Errorf("%s:%d: %s: %v", name, n, addr, err)
		}
		if _, dup := accounts[addr]; dup {
			return nil, fmt.Errorf("%s:%d: %s is listed twice", name, n, addr)
		}
		accounts[addr] = hash
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return accounts, nil
}

// Exists reports whether addr has an account.
func (s *Store) Exists(addr string) bool {
	a, err := NormalizeAddress(addr)
	if err != nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refreshKeep()
	_, ok := s.accounts[a]
	return ok
}

// Owns reports whether the account user may send as address: its own
// address and its subaddresses (user+tag@domain).
func (s *Store) Owns(user, address string) bool {
	u, err := NormalizeAddress(user)
	if err != nil {
		return false
	}
	a, err := NormalizeAddress(address)
	if err != nil {
		return false
	}
	if !s.Exists(u) {
		return false
	}
	if a == u {
		return true
	}
	at := strings.LastIndexByte(a, '@')
	local := a[:at]
	if d := s.opts.SubaddressDelimiter; d != "" {
		if i := strings.IndexAny(local, d); i > 0 {
			return local[:i]+a[at:] == u
		}
	}
	return false
}

// List returns the account addresses, sorted.
func (s *Store) List() ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.refresh(); err != nil {
		return nil, err
	}
	out := make([]string, 0, len(s.accounts))
	for a := range s.accounts {
		out = append(out, a)
	}
	sort.Strings(out)
	return out, nil
}

// Authenticate reports whether password is right for user. An unknown user
// costs the same as a known one, so timing does not tell which accounts
// exist. The error is only ever the context's: ctx bounds the wait for a
// hashing slot (hashes run at most one per CPU, since each takes
// Memory KiB).
func (s *Store) Authenticate(ctx context.Context, user, password string) (bool, error) {
	select {
	case s.hashing <- struct{}{}:
	case <-ctx.Done():
		return false, ctx.Err()
	}
	defer func() { <-s.hashing }()

	hash, known := "", false
	if u, err := NormalizeAddress(user); err == nil {
		s.mu.Lock()
		s.refreshKeep()
		hash, known = s.accounts[u]
		s.mu.Unlock()
	}
	if !known {
		s.dummyOnce.Do(func() { s.dummy, _ = HashPassword("posthorn dummy password", s.opts.Hash) })
		VerifyPassword(s.dummy, password)
		return false, nil
	}
	ok, err := VerifyPassword(hash, password)
	return ok && err == nil, nil
}

// Add creates an account.
func (s *Store) Add(addr, password string) error {
	return s.update(addr, password, func(m map[string]string, a string) error {
		if _, ok := m[a]; ok {
			return fmt.Errorf("%s: %w", a, ErrExists)
		}
		return nil
	})
}

// SetPassword changes the password of an existing account.
func (s *Store) SetPassword(addr, password string) error {
	return s.update(addr, password, func(m map[string]string, a string) error {
		if _, ok := m[a]; !ok {
			return fmt.Errorf("%s: %w", a, ErrNoAccount)
		}
		return nil
	})
}

// Delete removes an account.
func (s *Store) Delete(addr string) error {
	a, err := NormalizeAddress(addr)
	if err != nil {
		return err
	}
	return s.modify(func(m map[string]string) error {
		if _, ok := m[a]; !ok {
			return fmt.Errorf("%s: %w", a, ErrNoAccount)
		}
		delete(m, a)
		return nil
	})
}

func (s *Store) update(addr, password string, check func(map[string]string, string) error) error {
	a, err := NormalizeAddress(addr)
	if err != nil {
		return err
	}
	if err := CheckPassword(password); err != nil {
		return err
	}
	// Check before the costly hash, and again under the lock.
	s.mu.Lock()
	err = s.refresh()
	if err == nil {
		err = check(s.accounts, a)
	}
	s.mu.Unlock()
	if err != nil {
		return err
	}
	hash, err := HashPassword(password, s.opts.Hash)
	if err != nil {
		return err
	}
	return s.modify(func(m map[string]string) error {
		if err := check(m, a); err != nil {
			return err
		}
		m[a] = hash
		return nil
	})
}

// CheckPassword refuses passwords that cannot be used: empty, too long, or
// with NUL, CR or LF (PLAIN and LOGIN cannot carry them).
func CheckPassword(p string) error {
	switch {
	case p == "":
		return errors.New("empty password")
	case len(p) > 1024:
		return errors.New("password longer than 1024 bytes")
	case strings.ContainsAny(p, "\x00\r\n"):
		return errors.New("password contains NUL, CR or LF")
	}
	return nil
}

// modify applies f to the file's current contents and writes the result
// atomically, holding a lock against other writers (other processes too).
func (s *Store) modify(f func(map[string]string) error) error {
	dir := filepath.Dir(s.path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("accounts: %w", err)
	}
	unlock, err := lockFile(s.path + ".lock")
	if err != nil {
		return fmt.Errorf("accounts: %w", err)
	}
	defer unlock()

	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := s.read() // fresh, whatever the stamp says
	if err != nil {
		return err
	}
	if err := f(m); err != nil {
		return err
	}
	if err := durable.WriteFile(s.path, formatAccounts(m), 0o600); err != nil {
		return fmt.Errorf("accounts: %w", err)
	}
	s.accounts, s.stamp = m, stamp{} // reread the stamp on next use
	return s.refresh()
}

func formatAccounts(m map[string]string) []byte {
	addrs := make([]string, 0, len(m))
	for a := range m {
		addrs = append(addrs, a)
	}
	sort.Strings(addrs)
	var b bytes.Buffer
	b.WriteString("# posthorn accounts: address:hash (argon2id or bcrypt). Edit with `posthorn user`.\n")
	for _, a := range addrs {
		b.WriteString(a)
		b.WriteByte(':')
		b.WriteString(m[a])
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// NormalizeAddress returns an account address in the form it is stored:
// local part lowercased, domain lowercased in IDNA A-label form. It
// refuses what cannot be an account name.
func NormalizeAddress(addr string) (string, error) {
	at := strings.LastIndexByte(addr, '@')
	if at <= 0 || at == len(addr)-1 {
		return "", fmt.Errorf("%q is not an address: expected user@domain", addr)
	}
	local := addr[:at]
	if len(local) > 64 || !utf8.ValidString(local) || local[0] == '#' {
		return "", fmt.Errorf("%q: bad local part", addr)
	}
	for _, c := range local {
		if unicode.IsSpace(c) || unicode.IsControl(c) || c == '@' {
			return "", fmt.Errorf("%q: bad local part", addr)
		}
	}
	dom, err := idna.Lookup.ToASCII(addr[at+1:])
	if err != nil || dom == "" {
		return "", fmt.Errorf("%q: bad domain", addr)
	}
	return strings.ToLower(local) + "@" + strings.ToLower(dom), nil
}
