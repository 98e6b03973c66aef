// Package ratelimit keeps one token bucket per key, in bounded memory.
package ratelimit

import (
	"sync"
	"time"
)

// Limiter allows Rate events per Per for each key, with bursts of up to
// Burst. It forgets keys whose buckets are full again, and never holds
// more than MaxKeys of them: when that many are in use, an unknown key is
// refused until the oldest buckets refill (a flood of new keys cannot
// make it grow without bound). The zero Rate allows everything.
type Limiter[K comparable] struct {
	rate    float64 // tokens per second
	burst   float64
	maxKeys int

	mu      sync.Mutex
	buckets map[K]*bucket
	swept   time.Time
}

type bucket struct {
	tokens float64
	last   time.Time
}

// Options configures a Limiter.
type Options struct {
	Rate    int           // events per Per; 0: no limit
	Per     time.Duration // default one minute
	Burst   int           // default Rate
	MaxKeys int           // default 100,000
}

// New returns a Limiter.
func New[K comparable](o Options) *Limiter[K] {
	if o.Per <= 0 {
		o.Per = time.Minute
	}
	if o.Burst <= 0 {
		o.Burst = o.Rate
	}
	if o.MaxKeys <= 0 {
		o.MaxKeys = 100_000
	}
	return &Limiter[K]{
		rate:    float64(o.Rate) / o.Per.Seconds(),
		burst:   float64(o.Burst),
		maxKeys: o.MaxKeys,
		buckets: map[K]*bucket{},
	}
}

// Allow takes one token from key's bucket at now and reports whether
// there was one.
func (l *Limiter[K]) Allow(key K, now time.Time) bool {
	if l == nil || l.rate <= 0 {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.swept) > time.Minute {
		l.sweep(now)
	}
	b, ok := l.buckets[key]
	if !ok {
		if len(l.buckets) >= l.maxKeys {
			l.sweep(now)
			if len(l.buckets) >= l.maxKeys {
				return false
			}
		}
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[key] = b
	}
	l.refill(b, now)
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// Len returns the number of keys held.
func (l *Limiter[K]) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}

func (l *Limiter[K]) refill(b *bucket, now time.Time) {
	if d := now.Sub(b.last); d > 0 {
		b.tokens = min(l.burst, b.tokens+d.Seconds()*l.rate)
		b.last = now
	}
}

// sweep forgets buckets that are full again: they behave like new ones.
func (l *Limiter[K]) sweep(now time.Time) {
	l.swept = now
	for k, b := range l.buckets {
		l.refill(b, now)
		if b.tokens >= l.burst {
			delete(l.buckets, k)
		}
	}
}
