package spool

import (
	"slices"
	"sync"
)

// freshMax bounds the committed messages kept open for their first
// delivery attempt (a file descriptor each).
const freshMax = 256

// freshMessages holds messages just committed, their files still open, for
// the Open that starts their first delivery attempt (the queue's, at
// once): that Open takes the Message as Commit left it, without opening
// the file again, reading its header and envelope back and decoding the
// JSON that Commit has just encoded (7% of all CPU at 50 sessions). An
// entry leaves before anything changes its message's file (an appended
// record, Remove, Finish or quarantine of the id, all of which call
// drop); Close closes them all. When freshMax are waiting, Commit closes
// the file as before and the Open reads it.
type freshMessages struct {
	mu sync.Mutex
	m  map[string]*Message
}

// put keeps m, unless freshMax messages are waiting.
func (fm *freshMessages) put(m *Message) bool {
	fm.mu.Lock()
	defer fm.mu.Unlock()
	if fm.m == nil {
		fm.m = make(map[string]*Message)
	}
	if len(fm.m) >= freshMax {
		return false
	}
	fm.m[m.Envelope.ID] = m
	return true
}

// take returns id's Message and forgets it, or nil.
func (fm *freshMessages) take(id string) *Message {
	fm.mu.Lock()
	defer fm.mu.Unlock()
	m := fm.m[id]
	delete(fm.m, id)
	return m
}

// drop closes id's Message, if one is waiting.
func (fm *freshMessages) drop(id string) {
	if m := fm.take(id); m != nil {
		m.Close()
	}
}

// closeAll closes every waiting Message.
func (fm *freshMessages) closeAll() {
	fm.mu.Lock()
	defer fm.mu.Unlock()
	for id, m := range fm.m {
		m.Close()
		delete(fm.m, id)
	}
}

// clone returns a copy of e that shares nothing mutable with it.
func (e *Envelope) clone() *Envelope {
	c := *e
	c.Recipients = slices.Clone(e.Recipients)
	return &c
}
