package queue

import (
	"reflect"
	"sync"
	"testing"
	"time"
)

type attemptCounter struct {
	mu        sync.Mutex
	results   map[string]int
	delivered []time.Duration
}

func (a *attemptCounter) DeliveryAttempt(result string) {
	a.mu.Lock()
	a.results[result]++
	a.mu.Unlock()
}

func (a *attemptCounter) Delivered(d time.Duration) {
	a.mu.Lock()
	a.delivered = append(a.delivered, d)
	a.mu.Unlock()
}

func TestMetricsCountAttemptsAndQueueStates(t *testing.T) {
	clock := &fakeClock{now: t0}
	mc := &attemptCounter{results: map[string]int{}}
	h := newHarness(t, t.TempDir(), clock, func(o *Options) { o.Metrics = mc })
	h.start()
	id := h.commit("m", "a@example.org", "b@example.org", "c@example.org")
	held := h.commit("m", "d@example.org")
	if err := h.q.Hold(held); err != nil {
		t.Fatal(err)
	}
	clock.Advance(2 * time.Second)
	h.q.Submit(id)
	c := h.nextCall()
	if got, want := h.q.Sizes(), map[string]int{"active": 1, "ready": 0, "deferred": 0, "hold": 1}; !reflect.DeepEqual(got, want) {
		t.Errorf("sizes during the attempt %v, want %v", got, want)
	}
	c.answer(Outcome{Status: Delivered}, Outcome{Status: Deferred}, Outcome{Status: Failed})
	h.attemptDone()
	h.nextFailure()
	if got, want := h.q.Sizes(), map[string]int{"active": 0, "ready": 0, "deferred": 1, "hold": 1}; !reflect.DeepEqual(got, want) {
		t.Errorf("sizes after the attempt %v, want %v", got, want)
	}
	mc.mu.Lock()
	defer mc.mu.Unlock()
	if want := map[string]int{"delivered": 1, "deferred": 1, "failed": 1}; !reflect.DeepEqual(mc.results, want) {
		t.Errorf("attempts %v, want %v", mc.results, want)
	}
	if len(mc.delivered) != 1 || mc.delivered[0] != 2*time.Second {
		t.Errorf("delivery times %v, want [2s]", mc.delivered)
	}
}
