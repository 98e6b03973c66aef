package main

import (
	"runtime"
	"testing"
)

func TestProcsFor(t *testing.T) {
	for n, want := range map[int]int{1: 2, 2: 3, 3: 5, 4: 6, 16: 24} {
		if got := procsFor(n); got != want {
			t.Errorf("procsFor(%d) = %d, want %d", n, got, want)
		}
	}
}

// TestRaiseProcs: raised from the runtime's default, unless the operator
// set GOMAXPROCS.
func TestRaiseProcs(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	for _, c := range []struct {
		env          string
		start, after int
	}{
		{env: "", start: 2, after: 3},
		{env: "1", start: 1, after: 1},
		{env: "2", start: 2, after: 2},
	} {
		t.Setenv("GOMAXPROCS", c.env)
		runtime.GOMAXPROCS(c.start)
		before, after := raiseProcs()
		if before != c.start || after != c.after || runtime.GOMAXPROCS(0) != c.after {
			t.Errorf("GOMAXPROCS=%q, starting at %d: before %d, after %d, now %d; want %d, %d, %d",
				c.env, c.start, before, after, runtime.GOMAXPROCS(0), c.start, c.after, c.after)
		}
	}
}
