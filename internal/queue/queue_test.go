package queue

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/posthorn/posthorn/internal/spool"
)

// fakeClock is a manual clock whose timers fire when Advance passes them.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	at   time.Time
	c    chan time.Time
	done bool
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Timer(at time.Time) (<-chan time.Time, func() bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{at: at, c: make(chan time.Time, 1)}
	if !at.After(c.now) {
		t.c <- c.now
		t.done = true
	} else {
		c.timers = append(c.timers, t)
	}
	return t.c, func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		was := !t.done
		t.done = true
		return was
	}
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	live := c.timers[:0]
	for _, t := range c.timers {
		switch {
		case t.done:
		case !t.at.After(c.now):
			t.c <- c.now
			t.done = true
		default:
			live = append(live, t)
		}
	}
	c.timers = live
}

// call is one invocation of the fake DeliverFunc, waiting for its reply.
type call struct {
	env   *spool.Envelope
	rcpts []int
	body  string
	at    time.Time
	reply chan []Outcome
}

func (c *call) answer(o ...Outcome) { c.reply <- o }

type failure struct {
	env   *spool.Envelope
	rcpts []int
}

type harness struct {
	t        *testing.T
	dir      string
	sp       *spool.Spool
	clock    *fakeClock
	q        *Manager
	calls    chan *call
	done     chan string
	failed   chan failure
	inflight atomic.Int32
	maxIn    atomic.Int32
}

var t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

func newHarness(t *testing.T, dir string, clock *fakeClock, tweak func(*Options)) *harness {
	t.Helper()
	sp, err := spool.Open(spool.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{
		t: t, dir: dir, sp: sp, clock: clock,
		calls:  make(chan *call, 100),
		done:   make(chan string, 100),
		failed: make(chan failure, 100),
	}
	opts := Options{
		Spool:   sp,
		Deliver: h.deliver,
		Now:     clock.Now,
		Timer:   clock.Timer,
		OnFailed: func(env *spool.Envelope, rcpts []int) error {
			h.failed <- failure{env, rcpts}
			return nil
		},
	}
	if tweak != nil {
		tweak(&opts)
	}
	h.q = New(opts)
	h.q.afterAttempt = func(id string) { h.done <- id }
	t.Cleanup(func() { h.stop() })
	return h
}

func (h *harness) stop() {
	h.q.Stop(context.Background())
	h.sp.Close()
}

func (h *harness) deliver(ctx context.Context, env *spool.Envelope, body func() (io.ReadCloser, error), rcpts []int) []Outcome {
	n := h.inflight.Add(1)
	defer h.inflight.Add(-1)
	for {
		m := h.maxIn.Load()
		if n <= m || h.maxIn.CompareAndSwap(m, n) {
			break
		}
	}
	r, err := body()
	if err != nil {
		h.t.Errorf("body: %v", err)
		return nil
	}
	b, _ := io.ReadAll(r)
	r.Close()
	c := &call{env: env, rcpts: rcpts, body: string(b), at: h.clock.Now(), reply: make(chan []Outcome)}
	h.calls <- c
	select {
	case o := <-c.reply:
		return o
	case <-ctx.Done():
		return []Outcome{{Status: Deferred, Detail: "cancelled"}}
	}
}

// watchdog turns a hang into a failure with a message instead of the
// package-wide test timeout; it is not used to wait for anything.
const watchdog = 30 * time.Second

func (h *harness) nextCall() *call {
	h.t.Helper()
	select {
	case c := <-h.calls:
		return c
	case <-time.After(watchdog):
		h.t.Fatal("no delivery attempt")
		return nil
	}
}

func (h *harness) attemptDone() string {
	h.t.Helper()
	select {
	case id := <-h.done:
		return id
	case <-time.After(watchdog):
		h.t.Fatal("attempt did not finish")
		return ""
	}
}

func (h *harness) nextFailure() failure {
	h.t.Helper()
	select {
	case f := <-h.failed:
		return f
	case <-time.After(watchdog):
		h.t.Fatal("OnFailed not called")
		return failure{}
	}
}

func (h *harness) commit(body string, rcpts ...string) string {
	h.t.Helper()
	w, err := h.sp.Create()
	if err != nil {
		h.t.Fatal(err)
	}
	io.WriteString(w, body)
	env := &spool.Envelope{From: "sender@example.com", Arrival: h.clock.Now()}
	for _, r := range rcpts {
		env.Recipients = append(env.Recipients, spool.Recipient{Addr: r})
	}
	if err := w.Commit(context.Background(), env); err != nil {
		h.t.Fatal(err)
	}
	return w.ID()
}

func (h *harness) start() {
	h.t.Helper()
	if err := h.q.Start(context.Background()); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) load(id string) *spool.Envelope {
	h.t.Helper()
	env, err := h.sp.Load(id)
	if err != nil {
		h.t.Fatal(err)
	}
	return env
}

func (h *harness) assertRemoved(id string) {
	h.t.Helper()
	if _, err := h.sp.Load(id); !errors.Is(err, spool.ErrNotFound) {
		h.t.Fatalf("message %s still in the spool (%v)", id, err)
	}
}

func TestSubmittedMessageIsAttemptedAtOnceAndRemovedWhenDelivered(t *testing.T) {
	h := newHarness(t, t.TempDir(), &fakeClock{now: t0}, nil)
	h.start()
	id := h.commit("Subject: hi\r\n\r\nbody\r\n", "a@example.org", "b@example.org")
	h.q.Submit(id)
	c := h.nextCall()
	if c.env.ID != id || len(c.rcpts) != 2 || c.body != "Subject: hi\r\n\r\nbody\r\n" || !c.at.Equal(t0) {
		t.Fatalf("attempt of %s rcpts %v body %q at %v", c.env.ID, c.rcpts, c.body, c.at)
	}
	c.answer(Outcome{Status: Delivered, Detail: "250 ok"}, Outcome{Status: Delivered, Detail: "250 ok"})
	h.attemptDone()
	h.assertRemoved(id)
}

func TestDeferredRecipientIsRetriedWithExponentialBackoff(t *testing.T) {
	clock := &fakeClock{now: t0}
	h := newHarness(t, t.TempDir(), clock, nil)
	h.start()
	id := h.commit("m", "a@example.org")
	h.q.Submit(id)

	wantDelay := []time.Duration{5 * time.Minute, 10 * time.Minute, 20 * time.Minute, 40 * time.Minute, time.Hour, time.Hour}
	for n, delay := range wantDelay {
		c := h.nextCall()
		c.answer(Outcome{Status: Deferred, Detail: "451 4.3.0 try again later"})
		h.attemptDone()
		r := h.load(id).Recipients[0]
		if r.Status != spool.Pending || r.Attempts != n+1 || r.LastError != "451 4.3.0 try again later" ||
			!r.NextAttempt.Equal(clock.Now().Add(delay)) || !r.LastAttempt.Equal(clock.Now()) {
			t.Fatalf("after deferral %d: %+v, want next attempt in %v", n+1, r, delay)
		}
		clock.Advance(delay)
	}
	c := h.nextCall()
	if !c.at.Equal(t0.Add(3*time.Hour + 15*time.Minute)) {
		t.Fatalf("seventh attempt at %v", c.at)
	}
	c.answer(Outcome{Status: Delivered})
	h.attemptDone()
	h.assertRemoved(id)
}

func TestPermanentFailureIsRecordedBeforeItIsReported(t *testing.T) {
	h := newHarness(t, t.TempDir(), &fakeClock{now: t0}, nil)
	h.start()
	id := h.commit("m", "ok@example.org", "nouser@example.org", "later@example.org")
	h.q.Submit(id)
	h.nextCall().answer(
		Outcome{Status: Delivered, Detail: "250 2.0.0 ok"},
		Outcome{Status: Failed, Detail: "550 5.1.1 no such user"},
		Outcome{Status: Deferred, Detail: "421 busy"},
	)
	f := h.nextFailure()
	if len(f.rcpts) != 1 || f.rcpts[0] != 1 || f.env.Recipients[1].LastError != "550 5.1.1 no such user" {
		t.Fatalf("OnFailed(%v) with %+v", f.rcpts, f.env.Recipients)
	}
	// Durable before the hook ran.
	h.attemptDone()
	env := h.load(id)
	r := env.Recipients
	if r[0].Status != spool.Delivered || r[1].Status != spool.Failed || !r[1].Reported || r[2].Status != spool.Pending {
		t.Fatalf("recorded state: %+v", r)
	}
}

func TestPendingRecipientsExpireAtMaxLifetime(t *testing.T) {
	clock := &fakeClock{now: t0}
	h := newHarness(t, t.TempDir(), clock, func(o *Options) { o.MaxLifetime = time.Hour })
	h.start()
	id := h.commit("m", "far@example.net")
	h.q.Submit(id)
	var at []time.Duration
	for {
		c := h.nextCall()
		at = append(at, c.at.Sub(t0))
		c.answer(Outcome{Status: Deferred, Detail: "connection refused"})
		h.attemptDone()
		env, err := h.sp.Load(id)
		if errors.Is(err, spool.ErrNotFound) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		clock.Advance(env.Recipients[0].NextAttempt.Sub(clock.Now()))
	}
	want := []time.Duration{0, 5 * time.Minute, 15 * time.Minute, 35 * time.Minute, time.Hour}
	if len(at) != len(want) {
		t.Fatalf("attempts at %v, want %v", at, want)
	}
	for i := range want {
		if at[i] != want[i] {
			t.Fatalf("attempts at %v, want %v", at, want)
		}
	}
	f := h.nextFailure()
	if r := f.env.Recipients[0]; r.Status != spool.Failed || !strings.HasPrefix(r.LastError, "expired") ||
		!strings.Contains(r.LastError, "connection refused") {
		t.Fatalf("expired recipient: %+v", r)
	}
}

func TestRestartResumesScheduleWithoutResendingToDoneRecipients(t *testing.T) {
	dir := t.TempDir()
	clock := &fakeClock{now: t0}
	h := newHarness(t, dir, clock, nil)
	h.start()
	id := h.commit("m", "done@example.org", "later@example.org")
	h.q.Submit(id)
	h.nextCall().answer(Outcome{Status: Delivered}, Outcome{Status: Deferred, Detail: "451 later"})
	h.attemptDone()
	h.stop()

	h2 := newHarness(t, dir, clock, nil)
	h2.start()
	clock.Advance(5 * time.Minute)
	c := h2.nextCall()
	if c.env.ID != id || len(c.rcpts) != 1 || c.rcpts[0] != 1 {
		t.Fatalf("resumed attempt of %s for rcpts %v, want [1] only", c.env.ID, c.rcpts)
	}
	if !c.at.Equal(t0.Add(5 * time.Minute)) {
		t.Fatalf("resumed attempt at %v", c.at)
	}
	c.answer(Outcome{Status: Delivered})
	h2.attemptDone()
	h2.assertRemoved(id)
}

func TestFailureRecordedBeforeCrashIsReportedAfterRestart(t *testing.T) {
	dir := t.TempDir()
	h := newHarness(t, dir, &fakeClock{now: t0}, nil)
	id := h.commit("m", "gone@example.org")
	// The state a crash between recording and reporting leaves behind.
	failed := spool.RecipientState{Status: spool.Failed, Attempts: 1, LastError: "550 no"}
	if err := h.sp.UpdateRecipients(id, spool.RecipientUpdate{Index: 0, RecipientState: failed}); err != nil {
		t.Fatal(err)
	}
	h.start()
	if f := h.nextFailure(); f.env.ID != id || len(f.rcpts) != 1 {
		t.Fatalf("OnFailed(%s, %v)", f.env.ID, f.rcpts)
	}
	h.attemptDone()
	h.assertRemoved(id)
}

func TestConcurrentAttemptsStayWithinMaxConcurrent(t *testing.T) {
	h := newHarness(t, t.TempDir(), &fakeClock{now: t0}, func(o *Options) { o.MaxConcurrent = 3 })
	h.start()
	const n = 10
	var ids []string
	for range n {
		id := h.commit("m", "a@example.org")
		ids = append(ids, id)
		h.q.Submit(id)
	}
	// Three attempts start and block; each answer lets one more in.
	var waiting []*call
	for range 3 {
		waiting = append(waiting, h.nextCall())
	}
	for done := 0; done < n; done++ {
		waiting[0].answer(Outcome{Status: Delivered})
		waiting = waiting[1:]
		h.attemptDone()
		if done+3 < n {
			waiting = append(waiting, h.nextCall())
		}
	}
	if got := h.maxIn.Load(); got != 3 {
		t.Fatalf("at most %d attempts were in flight, want 3", got)
	}
	for _, id := range ids {
		h.assertRemoved(id)
	}
}

func TestHeldMessageIsSkippedUntilReleased(t *testing.T) {
	h := newHarness(t, t.TempDir(), &fakeClock{now: t0}, func(o *Options) { o.MaxConcurrent = 1 })
	held := h.commit("held", "a@example.org")
	free := h.commit("free", "a@example.org")
	if err := h.q.Hold(held); err != nil {
		t.Fatal(err)
	}
	h.start()
	h.q.Submit(held) // a retry does not override a hold
	h.q.Submit(free)
	// Both are due now and the held one sorts first: only the hold
	// explains the free one coming first.
	c := h.nextCall()
	if c.env.ID != free {
		t.Fatalf("attempted %s first, want %s (the other is held)", c.env.ID, free)
	}
	c.answer(Outcome{Status: Delivered})
	h.attemptDone()
	if !h.load(held).Hold {
		t.Fatal("hold not recorded in the spool")
	}
	if err := h.q.Release(held); err != nil {
		t.Fatal(err)
	}
	c = h.nextCall()
	if c.env.ID != held {
		t.Fatalf("attempted %s after release, want %s", c.env.ID, held)
	}
	c.answer(Outcome{Status: Delivered})
	h.attemptDone()
	h.assertRemoved(held)
}

func TestPanickingDeliveryAgentDefers(t *testing.T) {
	h := newHarness(t, t.TempDir(), &fakeClock{now: t0}, nil)
	h.q.opts.Deliver = func(context.Context, *spool.Envelope, func() (io.ReadCloser, error), []int) []Outcome {
		panic("bug")
	}
	h.start()
	id := h.commit("m", "a@example.org")
	h.q.Submit(id)
	h.attemptDone()
	if r := h.load(id).Recipients[0]; r.Status != spool.Pending || r.Attempts != 1 || r.NextAttempt.IsZero() {
		t.Fatalf("after a panic: %+v", r)
	}
}

func TestStopCancelsAttemptsWhenItsContextEnds(t *testing.T) {
	h := newHarness(t, t.TempDir(), &fakeClock{now: t0}, nil)
	h.start()
	id := h.commit("m", "a@example.org")
	h.q.Submit(id)
	h.nextCall() // never answered
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := h.q.Stop(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Stop = %v", err)
	}
	h.attemptDone() // the attempt saw its context cancelled and was recorded
	if r := h.load(id).Recipients[0]; r.Status != spool.Pending || r.LastError != "cancelled" {
		t.Fatalf("after Stop: %+v", r)
	}
}

// A bounce that cannot be queued leaves the failure unreported and the
// message queued; it is reported on a later try.
func TestFailureReportRetriedWhenTheBounceCannotBeQueued(t *testing.T) {
	clock := &fakeClock{now: t0}
	fails := 1
	var h *harness
	h = newHarness(t, t.TempDir(), clock, func(o *Options) {
		o.OnFailed = func(env *spool.Envelope, rcpts []int) error {
			h.failed <- failure{env, rcpts}
			if fails > 0 {
				fails--
				return errors.New("spool full")
			}
			return nil
		}
	})
	h.start()
	id := h.commit("m", "nouser@example.org")
	h.q.Submit(id)
	h.nextCall().answer(Outcome{Status: Failed, Detail: "550 5.1.1 no such user"})
	h.nextFailure()
	h.attemptDone()
	if env := h.load(id); env.Recipients[0].Reported {
		t.Fatal("marked reported although the report failed")
	}
	clock.Advance(5 * time.Minute)
	h.nextFailure()
	h.attemptDone()
	h.assertRemoved(id)
}

// A message delivered to every recipient is removed without recording the
// outcomes first (Spool.Finish); when the success report cannot be made,
// the outcomes are recorded after all, so that the next attempt reports
// and removes without delivering again.
func TestDeliveredOutcomesRecordedWhenTheSuccessReportFails(t *testing.T) {
	clock := &fakeClock{now: t0}
	var reports atomic.Int32
	h := newHarness(t, t.TempDir(), clock, func(o *Options) {
		o.OnDelivered = func(env *spool.Envelope, rcpts []int) error {
			if reports.Add(1) == 1 {
				return errors.New("spool full")
			}
			return nil
		}
	})
	h.start()
	id := h.commit("m", "a@example.org", "b@example.org")
	h.q.Submit(id)
	h.nextCall().answer(Outcome{Status: Delivered, Detail: "250 ok"}, Outcome{Status: Delivered, Detail: "250 ok"})
	h.attemptDone()
	env := h.load(id)
	for i, r := range env.Recipients {
		if r.Status != spool.Delivered || r.Reported {
			t.Fatalf("recipient %d after a failed success report: %+v", i, r)
		}
	}
	clock.Advance(5 * time.Minute)
	h.attemptDone() // no delivery call: nothing is pending
	h.assertRemoved(id)
	if n := reports.Load(); n != 2 {
		t.Fatalf("OnDelivered called %d times, want 2", n)
	}
	select {
	case c := <-h.calls:
		t.Fatalf("delivered again: %+v", c.rcpts)
	default:
	}
}
