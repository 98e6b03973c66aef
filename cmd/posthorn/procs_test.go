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

func TestRaiseProcsKeepsTheOperatorsSetting(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	t.Setenv("GOMAXPROCS", "1")
	runtime.GOMAXPROCS(1)
	if before, after := raiseProcs(); before != 1 || after != 1 || runtime.GOMAXPROCS(0) != 1 {
		t.Fatalf("with GOMAXPROCS=1 set: before %d after %d, now %d; want 1 throughout", before, after, runtime.GOMAXPROCS(0))
	}
}

func TestRaiseProcsRaises(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	t.Setenv("GOMAXPROCS", "")
	runtime.GOMAXPROCS(2)
	if before, after := raiseProcs(); before != 2 || after != 3 || runtime.GOMAXPROCS(0) != 3 {
		t.Fatalf("before %d after %d, now %d; want 2, 3, 3", before, after, runtime.GOMAXPROCS(0))
	}
}
