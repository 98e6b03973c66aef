package queue

import (
	"errors"
	"testing"
	"time"

	"github.com/posthorn/posthorn/internal/spool"
)

func TestRetryAllAttemptsDeferredMessagesAtOnceButNotHeldOnes(t *testing.T) {
	clock := &fakeClock{now: t0}
	h := newHarness(t, t.TempDir(), clock, nil)
	h.start()
	a := h.commit("a", "a@example.org")
	b := h.commit("b", "b@example.org")
	held := h.commit("held", "c@example.org")
	if err := h.q.Hold(held); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{a, b} {
		h.q.Submit(id)
		h.nextCall().answer(Outcome{Status: Deferred, Detail: "451 later"})
		h.attemptDone()
	}
	st, ok := h.q.Status(a)
	if !ok || st.Running || st.Held || !st.Due.Equal(t0.Add(5*time.Minute)) {
		t.Fatalf("Status(deferred) = %+v, %v", st, ok)
	}
	if st, ok := h.q.Status(held); !ok || !st.Held || !st.Due.IsZero() {
		t.Fatalf("Status(held) = %+v, %v", st, ok)
	}
	if n := h.q.RetryAll(); n != 2 {
		t.Fatalf("RetryAll = %d, want 2", n)
	}
	// The clock has not moved: only the flush explains these attempts.
	got := map[string]bool{}
	for range 2 {
		c := h.nextCall()
		if !c.at.Equal(t0) {
			t.Fatalf("attempt at %v", c.at)
		}
		got[c.env.ID] = true
		c.answer(Outcome{Status: Delivered})
		h.attemptDone()
	}
	if !got[a] || !got[b] {
		t.Fatalf("attempted %v, want %s and %s", got, a, b)
	}
	if _, ok := h.q.Status(a); ok {
		t.Fatal("Status of a delivered message still known")
	}
	if st, ok := h.q.Status(held); !ok || !st.Held {
		t.Fatalf("held message after flush: %+v, %v", st, ok)
	}
}

func TestDeleteUnschedulesAndRemovesWithoutBounce(t *testing.T) {
	clock := &fakeClock{now: t0}
	h := newHarness(t, t.TempDir(), clock, nil)
	h.start()
	id := h.commit("m", "a@example.org")
	h.q.Submit(id)
	h.nextCall().answer(Outcome{Status: Deferred, Detail: "451 later"})
	h.attemptDone()
	if err := h.q.Delete(id); err != nil {
		t.Fatal(err)
	}
	h.assertRemoved(id)
	if _, ok := h.q.Status(id); ok {
		t.Fatal("deleted message still scheduled")
	}
	if err := h.q.Delete(id); !errors.Is(err, spool.ErrNotFound) {
		t.Fatalf("second Delete = %v, want ErrNotFound", err)
	}
	clock.Advance(time.Hour)
	other := h.commit("n", "b@example.org")
	h.q.Submit(other)
	if c := h.nextCall(); c.env.ID != other {
		t.Fatalf("attempted %s after delete, want only %s", c.env.ID, other)
	} else {
		c.answer(Outcome{Status: Delivered})
	}
	h.attemptDone()
	select {
	case f := <-h.failed:
		t.Fatalf("OnFailed called for %s", f.env.ID)
	default:
	}
}

func TestDeleteDuringAttemptForgetsTheMessage(t *testing.T) {
	clock := &fakeClock{now: t0}
	h := newHarness(t, t.TempDir(), clock, nil)
	h.start()
	id := h.commit("m", "a@example.org")
	h.q.Submit(id)
	c := h.nextCall()
	if st, ok := h.q.Status(id); !ok || !st.Running {
		t.Fatalf("Status during attempt = %+v, %v", st, ok)
	}
	if err := h.q.Delete(id); err != nil {
		t.Fatal(err)
	}
	h.q.Submit(id) // a retry racing the delete changes nothing
	c.answer(Outcome{Status: Failed, Detail: "550 no"})
	h.attemptDone()
	h.assertRemoved(id)
	if _, ok := h.q.Status(id); ok {
		t.Fatal("deleted message still known after its attempt")
	}
	select {
	case f := <-h.failed:
		t.Fatalf("OnFailed called for deleted %s", f.env.ID)
	case c := <-h.calls:
		t.Fatalf("deleted message attempted again: %s", c.env.ID)
	default:
	}
}
