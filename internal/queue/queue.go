// Package queue schedules delivery attempts for spooled messages: due times, backoff, expiry, hold.
//
// The Manager keeps one entry per spooled message in a min-heap ordered by
// due time and sleeps on a single timer until the earliest is due. An
// attempt hands every pending recipient of a message to the DeliverFunc,
// records each outcome durably through the spool before acting on it, and
// then reschedules the message at its recipients' next attempt time or
// removes it once nobody is pending. The spool is the only state that
// matters: a restart rebuilds the schedule from it (Start).
package queue

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/posthorn/posthorn/internal/spool"
)

// Status is the result of delivering to one recipient. The zero value is
// Deferred, so an outcome a delivery agent forgot to fill in is retried,
// never lost.
type Status int

// Outcome statuses.
const (
	Deferred  Status = iota // temporary failure (4xx, timeout, DNS temperror): retry later
	Delivered               // accepted by the next hop or the mailbox
	Failed                  // permanent failure (5xx): bounce
)

func (s Status) String() string {
	switch s {
	case Deferred:
		return "deferred"
	case Delivered:
		return "delivered"
	case Failed:
		return "failed"
	}
	return fmt.Sprintf("Status(%d)", int(s))
}

// Outcome is what happened to one recipient in one attempt.
type Outcome struct {
	Status Status
	// Detail says why, for logs, `posthorn queue` and bounces: the remote
	// reply ("550 5.1.1 <x@example.org>: no such user") or a local error
	// ("maildir: ...").
	Detail string
	// Relayed: delivered to a next hop that does not support DSN, so a
	// NOTIFY=SUCCESS ends here with a "relayed" report (RFC 3461 5.2.2).
	Relayed bool
}

// DeliverFunc attempts delivery of env to the recipients env.Recipients[i]
// for each i in rcpts and returns one Outcome per element of rcpts, in the
// same order. body opens the message bytes (may be called more than once).
// It must return promptly once ctx is done.
type DeliverFunc func(ctx context.Context, env *spool.Envelope, body func() (io.ReadCloser, error), rcpts []int) []Outcome

// Options configure a Manager. Zero durations take the defaults, which are
// near Postfix's.
type Options struct {
	Spool   *spool.Spool
	Deliver DeliverFunc
	Logger  *slog.Logger // nil discards

	MaxConcurrent int           // attempts in flight at once; default 20
	FirstRetry    time.Duration // delay after the first deferral; default 5m
	MaxRetry      time.Duration // cap of the exponential backoff; default 1h
	MaxLifetime   time.Duration // after this since arrival, pending recipients fail; default 5 days

	// OnFailed is called once recipients have been recorded as Failed
	// (permanently, or expired), with the envelope as recorded and their
	// indexes; the DSN generator hangs here. After it returns nil the
	// recipients are marked Reported; an error (the bounce could not be
	// queued) leaves them unreported and the message in the queue, to
	// be tried again after FirstRetry; a crash before that calls it again
	// after restart (at-least-once).
	OnFailed func(env *spool.Envelope, rcpts []int) error
	// OnDelivered is called, like OnFailed, for recipients recorded as
	// Delivered (the success notifications of NOTIFY=SUCCESS hang here).
	OnDelivered func(env *spool.Envelope, rcpts []int) error
	// OnDelayed is called once per recipient still pending DelayWarning
	// after arrival (delay notifications, NOTIFY=DELAY); default 4h.
	OnDelayed    func(env *spool.Envelope, rcpts []int) error
	DelayWarning time.Duration

	// Now and Timer replace the clock in tests. Timer returns a channel
	// that receives once the clock reaches at, and a stop function. By
	// default the real clock and time.Timer.
	Now   func() time.Time
	Timer func(at time.Time) (c <-chan time.Time, stop func() bool)

	Metrics Metrics // nil: none
}

// Manager owns the delivery attempts of the spooled messages.
type Manager struct {
	opts Options
	log  *slog.Logger

	mu      sync.Mutex
	items   map[string]*item
	due     dueHeap
	running int
	started bool
	stopped bool

	wake           chan struct{}
	stopLoop       context.CancelFunc
	cancelAttempts context.CancelFunc
	loopDone       chan struct{}
	attempts       sync.WaitGroup
	// work feeds MaxConcurrent long-lived workers: a goroutine per attempt
	// grew its stack again for every message (runtime.copystack was 6% of
	// the CPU under load); a worker keeps the stack it grew.
	work chan string

	afterAttempt func(id string) // test hook: an attempt's results are recorded and acted on
}

// item is one spooled message known to the scheduler.
type item struct {
	id      string
	due     time.Time
	index   int  // position in the heap; -1 when not in it
	running bool // an attempt is in flight
	again   bool // Submit while running: attempt again at once
	held    bool
	deleted bool // Delete while running: forget it when the attempt ends
}

// New returns a Manager; nothing happens until Start.
func New(opts Options) *Manager {
	if opts.MaxConcurrent <= 0 {
		opts.MaxConcurrent = 20
	}
	if opts.FirstRetry <= 0 {
		opts.FirstRetry = 5 * time.Minute
	}
	if opts.MaxRetry <= 0 {
		opts.MaxRetry = time.Hour
	}
	if opts.MaxRetry < opts.FirstRetry {
		opts.MaxRetry = opts.FirstRetry
	}
	if opts.DelayWarning <= 0 {
		opts.DelayWarning = 4 * time.Hour
	}
	if opts.MaxLifetime <= 0 {
		opts.MaxLifetime = 5 * 24 * time.Hour
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Timer == nil {
		now := opts.Now
		opts.Timer = func(at time.Time) (<-chan time.Time, func() bool) {
			t := time.NewTimer(at.Sub(now()))
			return t.C, t.Stop
		}
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Manager{
		opts:  opts,
		log:   log,
		items: map[string]*item{},
		wake:  make(chan struct{}, 1),
	}
}

// Start loads every message from the spool, schedules it at its next
// attempt time (restart resumes where the last run stopped) and starts
// scheduling. ctx bounds the Manager's whole life.
func (m *Manager) Start(ctx context.Context) error {
	m.mu.Lock()
	if m.started {
		m.mu.Unlock()
		return errors.New("queue: already started")
	}
	m.started = true
	m.mu.Unlock()

	envs, err := m.opts.Spool.List()
	if err != nil {
		return fmt.Errorf("queue: %w", err)
	}
	m.mu.Lock()
	for _, env := range envs {
		due := m.opts.Now()
		if next, ok := nextAttempt(env); ok && next.After(due) {
			due = next
		}
		it := m.items[env.ID]
		if it == nil {
			it = &item{id: env.ID, due: due, index: -1}
			m.items[env.ID] = it
		}
		it.held = env.Hold
		if it.held {
			m.unschedule(it)
		} else {
			m.schedule(it, it.due)
		}
	}
	attemptCtx, cancelAttempts := context.WithCancel(ctx)
	loopCtx, stopLoop := context.WithCancel(attemptCtx)
	m.cancelAttempts, m.stopLoop = cancelAttempts, stopLoop
	m.loopDone = make(chan struct{})
	// Never full: the loop sends only while running < MaxConcurrent.
	m.work = make(chan string, m.opts.MaxConcurrent)
	m.mu.Unlock()

	m.log.Info("queue: started", "messages", len(envs))
	for range m.opts.MaxConcurrent {
		go func() {
			for id := range m.work {
				m.attempt(attemptCtx, id)
			}
		}()
	}
	go m.loop(loopCtx)
	return nil
}

// nextAttempt returns the earliest NextAttempt among env's pending
// recipients (zero when one was never tried), and false when none is
// pending.
func nextAttempt(env *spool.Envelope) (time.Time, bool) {
	var next time.Time
	found := false
	for _, r := range env.Recipients {
		if r.Status != spool.Pending {
			continue
		}
		if !found || r.NextAttempt.Before(next) {
			next = r.NextAttempt
		}
		found = true
	}
	return next, found
}

// Submit asks for an attempt of id at once: right after its commit, or for
// `posthorn queue retry`. Held messages stay held.
func (m *Manager) Submit(id string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.stopped {
		return
	}
	it := m.items[id]
	if it == nil {
		it = &item{id: id, index: -1}
		m.items[id] = it
	}
	if it.running {
		it.again = true
		return
	}
	m.schedule(it, m.opts.Now())
}

// Hold durably keeps id from being attempted until Release. An attempt in
// flight finishes.
func (m *Manager) Hold(id string) error {
	if err := m.opts.Spool.SetHold(id, true); err != nil {
		return fmt.Errorf("queue: hold: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	it := m.items[id]
	if it == nil {
		it = &item{id: id, index: -1}
		m.items[id] = it
	}
	it.held = true
	m.unschedule(it)
	return nil
}

// Release durably ends the hold on id and attempts it at once.
func (m *Manager) Release(id string) error {
	if err := m.opts.Spool.SetHold(id, false); err != nil {
		return fmt.Errorf("queue: release: %w", err)
	}
	m.mu.Lock()
	if it := m.items[id]; it != nil {
		it.held = false
	}
	m.mu.Unlock()
	m.Submit(id)
	return nil
}

// RetryAll asks for an attempt at once of every message that is not held
// (`posthorn queue retry --all`, Postfix's flush) and returns how many
// messages that concerns.
func (m *Manager) RetryAll() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.stopped {
		return 0
	}
	now := m.opts.Now()
	n := 0
	for _, it := range m.items {
		switch {
		case it.held || it.deleted:
			continue
		case it.running:
			it.again = true
		default:
			m.schedule(it, now)
		}
		n++
	}
	return n
}

// Delete removes id from the schedule and durably from the spool, without
// a bounce (Postfix's postsuper -d). An attempt in flight cannot be
// recalled: recipients it reaches get the message, but its outcomes are
// not recorded and the message is not attempted again. Deleting a message
// that is not in the spool fails with spool.ErrNotFound.
func (m *Manager) Delete(id string) error {
	if _, err := m.opts.Spool.Load(id); err != nil {
		return fmt.Errorf("queue: delete: %w", err)
	}
	m.mu.Lock()
	if it := m.items[id]; it != nil {
		m.unschedule(it)
		if it.running {
			it.deleted = true
		} else {
			delete(m.items, id)
		}
	}
	m.mu.Unlock()
	if err := m.opts.Spool.Remove(id); err != nil {
		return fmt.Errorf("queue: delete: %w", err)
	}
	m.log.Info("queue: message deleted by the administrator", "queue_id", id)
	return nil
}

// MessageStatus is what the scheduler knows of one message.
type MessageStatus struct {
	// Due is when the next attempt is scheduled; zero while held or
	// while an attempt is running.
	Due     time.Time
	Running bool // an attempt is in flight
	Held    bool
}

// Status returns the scheduling state of id, and false when the Manager
// does not know the message.
func (m *Manager) Status(id string) (MessageStatus, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	it := m.items[id]
	if it == nil || it.deleted {
		return MessageStatus{}, false
	}
	st := MessageStatus{Running: it.running, Held: it.held}
	if it.index >= 0 {
		st.Due = it.due
	}
	return st, true
}

// Stop stops scheduling and waits for the attempts in flight. If ctx ends
// first, their contexts are cancelled and Stop returns ctx's error without
// waiting further; their outcomes are still recorded if they come.
func (m *Manager) Stop(ctx context.Context) error {
	m.mu.Lock()
	if m.stopped || !m.started {
		m.stopped = true
		m.mu.Unlock()
		return nil
	}
	m.stopped = true
	m.mu.Unlock()
	m.stopLoop()
	<-m.loopDone // after this nothing starts new attempts

	done := make(chan struct{})
	go func() {
		m.attempts.Wait()
		close(done)
	}()
	select {
	case <-done:
		m.cancelAttempts()
		return nil
	case <-ctx.Done():
		m.cancelAttempts()
		return fmt.Errorf("queue: stop: %w", ctx.Err())
	}
}

// schedule puts it in the heap at due unless it is held or running.
// m.mu is held.
func (m *Manager) schedule(it *item, due time.Time) {
	if it.held || it.running {
		return
	}
	it.due = due
	if it.index >= 0 {
		heap.Fix(&m.due, it.index)
	} else {
		heap.Push(&m.due, it)
	}
	m.poke()
}

// unschedule takes it out of the heap. m.mu is held.
func (m *Manager) unschedule(it *item) {
	if it.index >= 0 {
		heap.Remove(&m.due, it.index)
	}
}

func (m *Manager) poke() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// loop starts the attempts that are due, as many as MaxConcurrent allows,
// then sleeps until the next due time or a change (Submit, an attempt
// ending).
func (m *Manager) loop(ctx context.Context) {
	defer close(m.loopDone)
	defer close(m.work) // the workers finish their attempts and end
	for {
		var next time.Time
		m.mu.Lock()
		now := m.opts.Now()
		for len(m.due) > 0 && m.running < m.opts.MaxConcurrent {
			it := m.due[0]
			if it.due.After(now) {
				next = it.due
				break
			}
			heap.Pop(&m.due)
			it.running = true
			m.running++
			m.attempts.Add(1)
			m.work <- it.id
		}
		m.mu.Unlock()

		var timer <-chan time.Time
		stop := func() bool { return false }
		if !next.IsZero() {
			timer, stop = m.opts.Timer(next)
		}
		select {
		case <-ctx.Done():
			stop()
			return
		case <-m.wake:
		case <-timer:
		}
		stop()
	}
}

// attempt runs one attempt of id and reschedules it.
func (m *Manager) attempt(ctx context.Context, id string) {
	defer m.attempts.Done()
	res, next := m.run(ctx, id)

	m.mu.Lock()
	m.running--
	it := m.items[id]
	it.running = false
	if it.deleted {
		res = gone
	}
	switch res {
	case gone:
		delete(m.items, id)
	case held:
		it.held = true
		it.again = false
	case retry:
		if it.again {
			next = m.opts.Now()
		}
		it.again = false
		m.schedule(it, next)
	}
	m.poke() // a slot is free
	m.mu.Unlock()
	if m.afterAttempt != nil {
		m.afterAttempt(id)
	}
}

type result int

const (
	retry result = iota // keep, attempt again at the returned time
	held                // keep, not scheduled
	gone                // removed from the spool
)

// report hands final outcomes (and delays) to the notification hooks and
// records durably that it did: failures and deliveries once each (the
// Reported flag), delays once per recipient (Warned). A hook's error
// leaves its recipients unmarked, to be reported on the next try.
func (m *Manager) report(env *spool.Envelope) error { return m.reportWith(env, true) }

// reportWith is report; with record false the marks are not written
// (the message is about to be removed).
func (m *Manager) reportWith(env *spool.Envelope, record bool) error {
	now := m.opts.Now()
	type hook struct {
		fn   func(*spool.Envelope, []int) error
		pick func(r *spool.Recipient) bool
		mark func(st *spool.RecipientState)
	}
	hooks := []hook{
		{m.opts.OnFailed, func(r *spool.Recipient) bool { return r.Status == spool.Failed && !r.Reported },
			func(st *spool.RecipientState) { st.Reported = true }},
		{m.opts.OnDelivered, func(r *spool.Recipient) bool { return r.Status == spool.Delivered && !r.Reported },
			func(st *spool.RecipientState) { st.Reported = true }},
		{m.opts.OnDelayed, func(r *spool.Recipient) bool {
			return r.Status == spool.Pending && !r.Warned && now.Sub(env.Arrival) >= m.opts.DelayWarning
		}, func(st *spool.RecipientState) { st.Warned = true }},
	}
	for _, h := range hooks {
		if h.fn == nil {
			continue
		}
		var rcpts []int
		for i := range env.Recipients {
			if h.pick(&env.Recipients[i]) {
				rcpts = append(rcpts, i)
			}
		}
		if len(rcpts) == 0 {
			continue
		}
		if err := h.fn(env, rcpts); err != nil {
			return err
		}
		if !record {
			continue
		}
		updates := make([]spool.RecipientUpdate, len(rcpts))
		for k, i := range rcpts {
			st := env.Recipients[i].RecipientState
			h.mark(&st)
			// env is not changed: the hooks may still hold it, and the
			// marks matter only to the next run, which reloads it.
			updates[k] = spool.RecipientUpdate{Index: i, RecipientState: st}
		}
		if err := m.opts.Spool.UpdateRecipients(env.ID, updates...); err != nil {
			return fmt.Errorf("recording the report: %w", err)
		}
	}
	return nil
}

// run attempts delivery to every pending recipient of id, records the
// outcomes, reports failures and removes the message when nobody is
// pending.
func (m *Manager) run(ctx context.Context, id string) (result, time.Time) {
	log := m.log.With("queue_id", id)
	sp := m.opts.Spool
	// The file stays open through the attempt: the delivery agents read
	// the body from it, and a delivered message is finished on it.
	msg, err := sp.Open(id)
	if errors.Is(err, spool.ErrNotFound) {
		return gone, time.Time{} // deleted meanwhile (`posthorn queue delete`)
	}
	if errors.Is(err, spool.ErrCorrupt) {
		// Moved aside by the spool, never delivered: a file a power
		// loss tore during its commit (no 250 was sent for it), or one
		// the storage changed since.
		log.Error("queue: message file fails its integrity checks; moved to the spool's corrupt directory", "err", err)
		return gone, time.Time{}
	}
	if err != nil {
		log.Error("queue: cannot load message", "err", err)
		return retry, m.opts.Now().Add(m.opts.FirstRetry)
	}
	defer msg.Close() // a no-op once finished
	env := msg.Envelope
	if env.Hold {
		return held, time.Time{}
	}

	if pending := env.Pending(); len(pending) > 0 {
		outcomes := m.deliver(ctx, msg, pending)
		now := m.opts.Now()
		deadline := env.Arrival.Add(m.opts.MaxLifetime)
		updates := make([]spool.RecipientUpdate, 0, len(pending))
		for k, i := range pending {
			o := Outcome{Detail: "queue: the delivery agent returned no outcome"}
			if k < len(outcomes) {
				o = outcomes[k]
			}
			st := env.Recipients[i].RecipientState
			st.Attempts++
			st.LastAttempt = now
			st.LastError = o.Detail
			st.NextAttempt = time.Time{}
			status := o.Status.String()
			switch o.Status {
			case Delivered:
				st.Status = spool.Delivered
				st.LastError = ""
				st.Relayed = o.Relayed
			case Failed:
				st.Status = spool.Failed
			default:
				if !now.Before(deadline) {
					st.Status = spool.Failed
					st.LastError = fmt.Sprintf("expired: still undeliverable after %s in the queue; last error: %s", m.opts.MaxLifetime, o.Detail)
					status = "expired"
				} else {
					st.NextAttempt = now.Add(m.backoff(st.Attempts))
					if st.NextAttempt.After(deadline) {
						// One last attempt when the lifetime ends.
						st.NextAttempt = deadline
					}
				}
			}
			updates = append(updates, spool.RecipientUpdate{Index: i, RecipientState: st})
			args := []any{"rcpt", env.Recipients[i].Addr, "status", status, "detail", o.Detail, "attempt", st.Attempts}
			if st.Status == spool.Pending {
				args = append(args, "next_attempt", st.NextAttempt)
			}
			if o.Status == Delivered {
				// The delivery agent logged it, with more to say.
				log.Debug("queue: delivery", args...)
			} else {
				log.Info("queue: delivery", args...)
			}
			m.countAttempt(status, now.Sub(env.Arrival))
		}
		if allDelivered(updates) {
			return m.finishDelivered(msg, updates, log)
		}
		// Durable before acted on: otherwise a crash here would resend
		// to recipients already done, or lose a failure.
		if err := sp.UpdateRecipients(id, updates...); err != nil {
			if errors.Is(err, spool.ErrNotFound) {
				log.Info("queue: message deleted during its delivery attempt")
				return gone, time.Time{}
			}
			log.Error("queue: cannot record delivery outcomes; will attempt again", "err", err)
			return retry, now.Add(m.opts.FirstRetry)
		}
		for _, u := range updates {
			env.Recipients[u.Index].RecipientState = u.RecipientState
		}
	}

	// Outcomes not yet reported: those just recorded, and any from
	// before a crash.
	if err := m.report(env); err != nil {
		log.Error("queue: outcomes not reported yet; will try again", "err", err)
		return retry, m.opts.Now().Add(m.opts.FirstRetry)
	}

	next, pending := nextAttempt(env)
	if pending {
		return retry, next
	}
	if err := sp.Remove(id); err != nil {
		log.Error("queue: cannot remove finished message", "err", err)
		return retry, m.opts.Now().Add(m.opts.FirstRetry)
	}
	log.Info("queue: message done", "recipients", len(env.Recipients))
	return gone, time.Time{}
}

// allDelivered tells whether this attempt delivered every recipient that
// was still pending.
func allDelivered(updates []spool.RecipientUpdate) bool {
	for _, u := range updates {
		if u.Status != spool.Delivered {
			return false
		}
	}
	return len(updates) > 0
}

// finishDelivered ends a message whose last pending recipients were all
// just delivered, without recording the outcomes first: the message is
// removed right away (Message.Finish), so the record would only matter to
// a crash between the remote's 250 and the removal, which delivers the
// message again either way (a crash between the 250 and the record's
// fsync did too). That saves two fsyncs and a directory fsync per
// delivered message: as much disk time as accepting it took. Anything
// that stops the removal (a report hook's error) records the outcomes
// durably first, as the slow path does, and retries later.
func (m *Manager) finishDelivered(msg *spool.Message, updates []spool.RecipientUpdate, log *slog.Logger) (result, time.Time) {
	env := msg.Envelope
	for _, u := range updates {
		env.Recipients[u.Index].RecipientState = u.RecipientState
	}
	err := m.reportWith(env, false)
	if err == nil {
		if err = msg.Finish(); err == nil {
			log.Info("queue: message done", "recipients", len(env.Recipients))
			return gone, time.Time{}
		}
	}
	log.Error("queue: message delivered but not finished; will try again", "err", err)
	if err := m.opts.Spool.UpdateRecipients(env.ID, updates...); err != nil {
		if errors.Is(err, spool.ErrNotFound) {
			return gone, time.Time{}
		}
		log.Error("queue: cannot record delivery outcomes; the message may be delivered again", "err", err)
	}
	return retry, m.opts.Now().Add(m.opts.FirstRetry)
}

// deliver calls the DeliverFunc; a panic in it defers the recipients
// instead of ending the process.
func (m *Manager) deliver(ctx context.Context, msg *spool.Message, rcpts []int) (outcomes []Outcome) {
	env := msg.Envelope
	defer func() {
		if p := recover(); p != nil {
			m.log.Error("queue: delivery agent panicked", "queue_id", env.ID, "panic", p)
			outcomes = make([]Outcome, len(rcpts))
			for i := range outcomes {
				outcomes[i] = Outcome{Status: Deferred, Detail: "queue: internal error in the delivery agent"}
			}
		}
	}()
	body := func() (io.ReadCloser, error) { return msg.Body() }
	return m.opts.Deliver(ctx, env, body, rcpts)
}

// backoff returns the delay after the attempts-th deferral: FirstRetry,
// doubled each time, at most MaxRetry.
func (m *Manager) backoff(attempts int) time.Duration {
	d := m.opts.FirstRetry
	for i := 1; i < attempts && d < m.opts.MaxRetry; i++ {
		d *= 2
	}
	return min(d, m.opts.MaxRetry)
}

// dueHeap orders items by due time.
type dueHeap []*item

func (h dueHeap) Len() int { return len(h) }
func (h dueHeap) Less(i, j int) bool {
	if h[i].due.Equal(h[j].due) {
		return h[i].id < h[j].id // older id first
	}
	return h[i].due.Before(h[j].due)
}
func (h dueHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index = i
	h[j].index = j
}
func (h *dueHeap) Push(x any) {
	it := x.(*item)
	it.index = len(*h)
	*h = append(*h, it)
}
func (h *dueHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	old[len(old)-1] = nil
	it.index = -1
	*h = old[:len(old)-1]
	return it
}
