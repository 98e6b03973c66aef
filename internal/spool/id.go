package spool

import (
	"math/rand/v2"
	"sync/atomic"
	"time"
)

// Queue ids are 16 characters of base32 "hex" alphabet (RFC 4648 7,
// lowercase): 9 characters of Unix milliseconds followed by 7 characters of
// a per-process counter (15 bits, random start) and 20 random bits. The
// alphabet sorts like the numbers it encodes, so ids sort by the time their
// file was made, which is at most maxSpareAge before the message's arrival
// (see the spare pool); they are filename-safe and case-insensitively
// unique.
const (
	idAlphabet = "0123456789abcdefghijklmnopqrstuv"
	idLen      = 16
)

type idGen struct{ counter atomic.Uint32 }

func (g *idGen) init() { g.counter.Store(rand.Uint32()) }

func (g *idGen) next(now time.Time) string {
	ms := uint64(now.UnixMilli()) & (1<<45 - 1)
	low := uint64(g.counter.Add(1)&(1<<15-1))<<20 | uint64(rand.Uint32()&(1<<20-1))
	var b [idLen]byte
	for i := 8; i >= 0; i-- {
		b[i] = idAlphabet[ms&31]
		ms >>= 5
	}
	for i := idLen - 1; i >= 9; i-- {
		b[i] = idAlphabet[low&31]
		low >>= 5
	}
	return string(b[:])
}

// validID reports whether s has the shape of a queue id, which also makes
// it safe to use as a file name.
func validID(s string) bool {
	if len(s) != idLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'v') {
			return false
		}
	}
	return true
}
