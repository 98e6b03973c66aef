package ratelimit

import (
	"testing"
	"time"
)

func TestBurstThenRefill(t *testing.T) {
	l := New[string](Options{Rate: 60, Per: time.Minute, Burst: 3})
	now := time.Unix(1000, 0)
	for i := range 3 {
		if !l.Allow("a", now) {
			t.Fatalf("event %d of the burst refused", i+1)
		}
	}
	if l.Allow("a", now) {
		t.Fatal("fourth event within the burst allowed")
	}
	if !l.Allow("b", now) {
		t.Fatal("another key shares the bucket")
	}
	if !l.Allow("a", now.Add(time.Second)) {
		t.Fatal("no token after a second at 60/min")
	}
	if l.Allow("a", now.Add(time.Second)) {
		t.Fatal("two tokens after a second at 60/min")
	}
}

func TestZeroRateAllowsEverything(t *testing.T) {
	l := New[int](Options{})
	for i := range 1000 {
		if !l.Allow(1, time.Unix(0, 0)) {
			t.Fatalf("event %d refused with no limit", i)
		}
	}
	var nl *Limiter[int]
	if !nl.Allow(1, time.Now()) {
		t.Fatal("nil limiter refused")
	}
}

func TestMemoryBoundedUnderManyKeys(t *testing.T) {
	l := New[int](Options{Rate: 10, Per: time.Minute, MaxKeys: 100})
	now := time.Unix(0, 0)
	for k := range 1000 {
		l.Allow(k, now)
	}
	if n := l.Len(); n > 100 {
		t.Fatalf("%d keys held, bound is 100", n)
	}
	// Once the buckets have refilled, they are forgotten and new keys fit.
	if !l.Allow(5000, now.Add(2*time.Minute)) {
		t.Fatal("new key refused after every bucket refilled")
	}
	if n := l.Len(); n != 1 {
		t.Fatalf("%d keys held after the sweep, want 1", n)
	}
}
