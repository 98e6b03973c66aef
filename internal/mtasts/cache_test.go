package mtasts

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/posthorn/posthorn/internal/dns/dnstest"
)

type cacheWorld struct {
	t       *testing.T
	dir     string
	res     *dnstest.Resolver
	port    int
	body    atomic.Value // string
	status  atomic.Int32
	fetches atomic.Int32
	now     time.Time
	opts    FetchOptions
}

func newCacheWorld(t *testing.T) *cacheWorld {
	pool, cert := testCA(t, "mta-sts.good.loc")
	w := &cacheWorld{t: t, dir: t.TempDir(), now: time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)}
	w.body.Store("version: STSv1\nmode: enforce\nmx: mail.good.loc\nmax_age: 86400\n")
	w.status.Store(200)
	w.port = policyServer(t, cert, func(rw http.ResponseWriter, r *http.Request) {
		w.fetches.Add(1)
		rw.Header().Set("Content-Type", "text/plain")
		rw.WriteHeader(int(w.status.Load()))
		rw.Write([]byte(w.body.Load().(string))) //nolint:errcheck
	})
	w.res = dnstest.NewResolver(nil)
	w.setID("one")
	w.opts = FetchOptions{Resolver: w.res, RootCAs: pool, Port: w.port, Timeout: 10 * time.Second}
	return w
}

func (w *cacheWorld) setID(id string) {
	z := dnstest.Zone{"mta-sts.good.loc": {A: []string{"127.0.0.1"}}}
	if id != "" {
		z["_mta-sts.good.loc"] = dnstest.Records{TXT: []string{"v=STSv1; id=" + id + ";"}}
	}
	w.res.SetZone(z)
}

func (w *cacheWorld) cache() *Cache {
	c, err := NewCache(CacheOptions{Dir: w.dir, Resolver: w.res, Fetch: w.opts, Now: func() time.Time { return w.now }})
	if err != nil {
		w.t.Fatal(err)
	}
	return c
}

func (w *cacheWorld) get(c *Cache) Lookup {
	w.t.Helper()
	l, err := c.Get(context.Background(), "good.loc")
	if err != nil {
		w.t.Fatal(err)
	}
	return l
}

func TestCacheFetchesOnceThenOnIDChange(t *testing.T) {
	w := newCacheWorld(t)
	c := w.cache()
	l := w.get(c)
	if l.Entry == nil || l.Entry.Policy.Mode != ModeEnforce || l.Cached || w.fetches.Load() != 1 {
		t.Fatalf("first get: %+v, %d fetches", l, w.fetches.Load())
	}
	w.now = w.now.Add(time.Hour)
	if l := w.get(c); !l.Cached || w.fetches.Load() != 1 {
		t.Fatalf("second get fetched again: %+v", l)
	}
	w.setID("two")
	w.body.Store("version: STSv1\nmode: testing\nmx: mail.good.loc\nmax_age: 86400\n")
	if l := w.get(c); l.Cached || l.Entry.Policy.Mode != ModeTesting || l.Entry.ID != "two" || w.fetches.Load() != 2 {
		t.Fatalf("after the id changed: %+v, %d fetches", l.Entry, w.fetches.Load())
	}
}

func TestCacheSurvivesRestartAndOutlivesBlockedFetch(t *testing.T) {
	w := newCacheWorld(t)
	w.get(w.cache())
	// An attacker strips the TXT record and breaks the policy host: the
	// policy stays in force, also for a new process, until max_age.
	w.setID("")
	w.status.Store(500)
	w.now = w.now.Add(23 * time.Hour)
	c := w.cache()
	if l := w.get(c); l.Entry == nil || l.Entry.Policy.Mode != ModeEnforce {
		t.Fatalf("no record, after restart: %+v", l)
	}
	w.setID("three")
	l := w.get(c)
	if l.Entry == nil || l.Entry.Policy.Mode != ModeEnforce || l.FetchErr == nil {
		t.Fatalf("new id, failed fetch: want the cached policy and the error, got %+v", l)
	}
	w.now = w.now.Add(2 * time.Hour) // past max_age
	if l := w.get(c); l.Entry != nil || l.FetchErr == nil {
		t.Fatalf("expired and unfetchable: want no policy, got %+v", l)
	}
}

func TestCacheRefreshesBeforeExpiry(t *testing.T) {
	w := newCacheWorld(t)
	c := w.cache()
	w.get(c)
	w.now = w.now.Add(13 * time.Hour) // past half of max_age
	if n := c.Refresh(context.Background()); n != 1 || w.fetches.Load() != 2 {
		t.Fatalf("refreshed %d, %d fetches", n, w.fetches.Load())
	}
	l := w.get(c)
	if !l.Cached || !l.Entry.Expires.Equal(w.now.Add(24*time.Hour)) {
		t.Fatalf("after refresh: %+v", l.Entry)
	}
	// A failing refresh is not retried at every use.
	w.now = w.now.Add(13 * time.Hour)
	w.status.Store(500)
	w.get(c)
	w.get(c)
	if w.fetches.Load() != 3 {
		t.Fatalf("%d fetches, want 3: a failed refresh is retried after RetryFetch only", w.fetches.Load())
	}
}

func TestCacheModeNoneClearsPolicy(t *testing.T) {
	w := newCacheWorld(t)
	c := w.cache()
	w.get(c)
	w.setID("off")
	w.body.Store("version: STSv1\nmode: none\nmax_age: 86400\n")
	if l := w.get(c); l.Entry == nil || l.Entry.Policy.Mode != ModeNone {
		t.Fatalf("mode none: %+v", l.Entry)
	}
}
