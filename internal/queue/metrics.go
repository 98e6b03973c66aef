package queue

import "time"

// Metrics receives the queue's measurements (obs.Metrics implements it).
type Metrics interface {
	// DeliveryAttempt: one recipient's attempt ended delivered,
	// deferred, failed or expired.
	DeliveryAttempt(result string)
	// Delivered: a recipient was delivered this long after the
	// message arrived.
	Delivered(sinceArrival time.Duration)
}

func (m *Manager) countAttempt(status string, sinceArrival time.Duration) {
	if m.opts.Metrics == nil {
		return
	}
	m.opts.Metrics.DeliveryAttempt(status)
	if status == Delivered.String() {
		m.opts.Metrics.Delivered(sinceArrival)
	}
}

// Sizes counts the messages the Manager knows by state: "active" (an
// attempt in flight), "ready" (due, waiting for a free delivery slot),
// "deferred" (waiting for its next attempt) and "hold".
func (m *Manager) Sizes() map[string]int {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.opts.Now()
	out := map[string]int{"active": 0, "ready": 0, "deferred": 0, "hold": 0}
	for _, it := range m.items {
		switch {
		case it.deleted:
		case it.running:
			out["active"]++
		case it.held:
			out["hold"]++
		case it.index >= 0 && it.due.After(now):
			out["deferred"]++
		case it.index >= 0:
			out["ready"]++
		}
	}
	return out
}
