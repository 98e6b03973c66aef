package greylist

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func open(t *testing.T, path string, c *clock) *Store {
	t.Helper()
	s, err := Open(Options{Path: path, Delay: 5 * time.Minute, Window: time.Hour, Expire: 48 * time.Hour, Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestNewTripletWaitsThenPasses(t *testing.T) {
	c := &clock{time.Unix(1_000_000, 0)}
	s := open(t, filepath.Join(t.TempDir(), "greylist"), c)
	ip := netip.MustParseAddr("192.0.2.10")
	if pass, wait, err := s.Check(ip, "a@example.org", "b@example.test"); pass || wait != 5*time.Minute || err != nil {
		t.Fatalf("first attempt: pass %v wait %v err %v", pass, wait, err)
	}
	c.t = c.t.Add(time.Minute)
	if pass, wait, _ := s.Check(ip, "a@example.org", "b@example.test"); pass || wait != 4*time.Minute {
		t.Fatalf("retry too early: pass %v wait %v", pass, wait)
	}
	c.t = c.t.Add(5 * time.Minute)
	// From the neighbouring address of the same /24, in other case.
	if pass, _, _ := s.Check(netip.MustParseAddr("192.0.2.11"), "A@example.org", "b@EXAMPLE.test"); !pass {
		t.Fatal("retry after the delay from the same /24 refused")
	}
	if pass, _, _ := s.Check(ip, "other@example.org", "b@example.test"); pass {
		t.Fatal("another sender passed without waiting")
	}
}

func TestTripletsSurviveRestart(t *testing.T) {
	c := &clock{time.Unix(1_000_000, 0)}
	path := filepath.Join(t.TempDir(), "greylist")
	s := open(t, path, c)
	ip := netip.MustParseAddr("2001:db8::1")
	s.Check(ip, "a@example.org", "b@example.test")
	s.Check(ip, "c@example.org", "b@example.test")
	c.t = c.t.Add(6 * time.Minute)
	if pass, _, _ := s.Check(ip, "a@example.org", "b@example.test"); !pass {
		t.Fatal("retry refused")
	}
	// No Close: as after a crash, only what was written counts.
	s2 := open(t, path, c)
	if s2.Len() != 2 {
		t.Fatalf("%d triplets after reopening, want 2", s2.Len())
	}
	if pass, _, _ := s2.Check(netip.MustParseAddr("2001:db8::ffff"), "a@example.org", "b@example.test"); !pass {
		t.Fatal("passed triplet forgotten across a restart (same /64)")
	}
	if pass, _, _ := s2.Check(ip, "c@example.org", "b@example.test"); !pass {
		t.Fatal("waiting triplet's first attempt forgotten across a restart")
	}
	b, _ := os.ReadFile(path)
	if strings.Contains(string(b), "example") {
		t.Fatal("addresses written to the triplet file; want hashes only")
	}
	s2.Close()
}

func TestTripletsExpire(t *testing.T) {
	c := &clock{time.Unix(1_000_000, 0)}
	s := open(t, filepath.Join(t.TempDir(), "greylist"), c)
	ip := netip.MustParseAddr("192.0.2.10")
	s.Check(ip, "a@x", "b@y")
	c.t = c.t.Add(2 * time.Hour) // past delay + window: starts over
	if pass, _, _ := s.Check(ip, "a@x", "b@y"); pass {
		t.Fatal("retry after the window passed")
	}
	c.t = c.t.Add(6 * time.Minute)
	if pass, _, _ := s.Check(ip, "a@x", "b@y"); !pass {
		t.Fatal("retry refused")
	}
	c.t = c.t.Add(49 * time.Hour)
	if pass, _, _ := s.Check(ip, "a@x", "b@y"); pass {
		t.Fatal("triplet unseen past Expire still passes")
	}
}

func TestFileCompactedAndTornLineSkipped(t *testing.T) {
	c := &clock{time.Unix(1_000_000, 0)}
	path := filepath.Join(t.TempDir(), "greylist")
	s := open(t, path, c)
	for i := range 3000 {
		s.Check(netip.MustParseAddr("192.0.2.1"), "a@x", "b@y")
		c.t = c.t.Add(25 * time.Hour) // each pass writes a refresh... and expires; bounded either way
		_ = i
	}
	s.Close()
	b, _ := os.ReadFile(path)
	if n := strings.Count(string(b), "\n"); n > 2100 {
		t.Fatalf("file has %d lines for %d triplets: not compacted", n, s.Len())
	}
	os.WriteFile(path, append(b, []byte("v1 0123")...), 0o600)
	if _, err := Open(Options{Path: path, Now: c.now}); err != nil {
		t.Fatalf("torn last line: %v", err)
	}
}
