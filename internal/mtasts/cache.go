package mtasts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/posthorn/posthorn/internal/dns"
)

// CacheOptions configure a Cache.
type CacheOptions struct {
	// Dir holds one file per policy domain; created when missing.
	Dir      string
	Resolver dns.Resolver
	Fetch    FetchOptions
	Now      func() time.Time // default time.Now
	// RetryFetch is how long after a failed refresh a cached policy is
	// used before fetching is tried again; default 1 hour.
	RetryFetch time.Duration
}

// Entry is a cached policy.
type Entry struct {
	Domain  string    `json:"domain"`
	ID      string    `json:"id"`     // the _mta-sts record's id the policy was fetched under
	Text    string    `json:"policy"` // the policy body as fetched
	Fetched time.Time `json:"fetched"`
	Expires time.Time `json:"expires"` // Fetched + max_age
	Policy  *Policy   `json:"-"`
}

// Lookup is the answer of Cache.Get.
type Lookup struct {
	// Entry is the policy in force, nil when the domain has none (or
	// none could be had). A policy in mode none is returned as such: it
	// clears any earlier one (RFC 8461 5).
	Entry *Entry
	// FetchErr is why a policy could not be fetched (or parsed), even
	// if a cached one is used instead: TLS-RPT reports it (RFC 8460
	// sts-policy-fetch-error, sts-policy-invalid, sts-webpki-invalid).
	FetchErr error
	// Cached: Entry came from the cache without a fetch.
	Cached bool
}

// Cache keeps the policies of the domains mail is sent to, durably, so
// that an attacker who blocks the policy fetch or strips the TXT record
// cannot undo a policy before its max_age runs out (RFC 8461 5.1, 10.2).
// A policy is fetched again when the record's id changes, and before it
// expires: once half of its max_age has passed.
type Cache struct {
	o    CacheOptions
	mu   sync.Mutex
	mem  map[string]*Entry
	last map[string]time.Time // last failed refresh per domain
}

// NewCache returns a Cache over opts.Dir.
func NewCache(opts CacheOptions) (*Cache, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.RetryFetch <= 0 {
		opts.RetryFetch = time.Hour
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("mtasts cache: %w", err)
	}
	return &Cache{o: opts, mem: map[string]*Entry{}, last: map[string]time.Time{}}, nil
}

// Get returns the policy in force for domain (RFC 8461 5.1):
//   - the record's id is that of the cached policy and the policy is
//     not half-way to expiry: the cached policy;
//   - otherwise a fresh fetch, stored; if the fetch fails, the cached
//     policy as long as it has not expired;
//   - no record (or no answer): the cached policy until it expires.
//
// The error is only for DNS failures with nothing cached; a domain
// without a policy is Lookup{} and no error.
func (c *Cache) Get(ctx context.Context, domain string) (Lookup, error) {
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	now := c.o.Now()
	cached := c.load(domain, now)
	rec, _, err := LookupRecord(ctx, c.o.Resolver, domain)
	if err != nil {
		if cached != nil {
			return Lookup{Entry: cached, Cached: true}, nil
		}
		if errors.Is(err, ErrNoRecord) || errors.Is(err, ErrMultipleRecords) || errors.Is(err, ErrBadRecord) {
			return Lookup{}, nil
		}
		return Lookup{}, err
	}
	if cached != nil && cached.ID == rec.ID && !c.due(cached, now) {
		return Lookup{Entry: cached, Cached: true}, nil
	}
	e, ferr := c.fetch(ctx, domain, rec.ID, now)
	if ferr != nil {
		c.mu.Lock()
		c.last[domain] = now
		c.mu.Unlock()
		return Lookup{Entry: cached, FetchErr: ferr, Cached: cached != nil}, nil
	}
	return Lookup{Entry: e}, nil
}

// due says whether a cached policy with the current id should be
// refreshed: past half its lifetime, and no failed try in RetryFetch.
func (c *Cache) due(e *Entry, now time.Time) bool {
	half := e.Fetched.Add(e.Expires.Sub(e.Fetched) / 2)
	if now.Before(half) {
		return false
	}
	c.mu.Lock()
	last := c.last[e.Domain]
	c.mu.Unlock()
	return now.Sub(last) >= c.o.RetryFetch
}

func (c *Cache) fetch(ctx context.Context, domain, id string, now time.Time) (*Entry, error) {
	body, err := FetchBody(ctx, domain, c.o.Fetch)
	if err != nil {
		return nil, err
	}
	p, err := Parse(body)
	if err != nil {
		return nil, err
	}
	e := &Entry{Domain: domain, ID: id, Text: string(body), Fetched: now, Expires: now.Add(p.MaxAge), Policy: p}
	if err := c.store(e); err != nil {
		return nil, err
	}
	return e, nil
}

// Refresh fetches again every cached policy that is due (see Get), so
// that policies of domains seldom written to do not lapse. It returns
// how many were refreshed.
func (c *Cache) Refresh(ctx context.Context) int {
	names, _ := filepath.Glob(filepath.Join(c.o.Dir, "*.json"))
	n := 0
	for _, f := range names {
		dom := strings.TrimSuffix(filepath.Base(f), ".json")
		now := c.o.Now()
		e := c.load(dom, now)
		if e == nil || !c.due(e, now) {
			continue
		}
		if l, err := c.Get(ctx, dom); err == nil && l.FetchErr == nil && !l.Cached {
			n++
		}
	}
	return n
}

func (c *Cache) file(domain string) string { return filepath.Join(c.o.Dir, domain+".json") }

// load returns the unexpired cached entry for domain, or nil.
func (c *Cache) load(domain string, now time.Time) *Entry {
	if strings.ContainsAny(domain, "/\\") || strings.HasPrefix(domain, ".") {
		return nil
	}
	c.mu.Lock()
	e := c.mem[domain]
	c.mu.Unlock()
	if e == nil {
		b, err := os.ReadFile(c.file(domain))
		if err != nil {
			return nil
		}
		e = &Entry{}
		if json.Unmarshal(b, e) != nil || e.Domain != domain {
			return nil
		}
		if e.Policy, err = Parse([]byte(e.Text)); err != nil {
			return nil
		}
		c.mu.Lock()
		c.mem[domain] = e
		c.mu.Unlock()
	}
	if !now.Before(e.Expires) {
		return nil
	}
	return e
}

// store writes e durably: temporary file, fsync, rename, directory fsync.
func (c *Cache) store(e *Entry) error {
	if strings.ContainsAny(e.Domain, "/\\") || strings.HasPrefix(e.Domain, ".") {
		return fmt.Errorf("mtasts cache: bad domain %q", e.Domain)
	}
	b, err := json.MarshalIndent(e, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(c.o.Dir, ".tmp-*")
	if err != nil {
		return fmt.Errorf("mtasts cache: %w", err)
	}
	tmp := f.Name()
	_, err = f.Write(append(b, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, c.file(e.Domain))
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("mtasts cache: %w", err)
	}
	if d, err := os.Open(c.o.Dir); err == nil {
		d.Sync()
		d.Close()
	}
	c.mu.Lock()
	c.mem[e.Domain] = e
	delete(c.last, e.Domain)
	c.mu.Unlock()
	return nil
}
