package dsn

import (
	"strings"
	"time"

	"github.com/posthorn/posthorn/internal/spool"
)

// Action is the Action field of a per-recipient report (RFC 3464 2.3.3).
type Action string

// Actions.
const (
	Failed    Action = "failed"    // given up: the recipient will not get the message
	Delayed   Action = "delayed"   // not delivered yet, still trying
	Delivered Action = "delivered" // delivered to the mailbox
	Relayed   Action = "relayed"   // handed to a next hop that will not report on it (no DSN support)
	Expanded  Action = "expanded"  // delivered to an alias or list that expanded into other recipients
)

// Wants reports whether a recipient's NOTIFY parameter (RFC 3461 4.1, as
// stored in spool.Recipient.Notify: "", "NEVER" or a comma-separated list
// of SUCCESS, FAILURE, DELAY in any case) asks for a report with action a.
//
// Without NOTIFY, failures are reported and nothing else: RFC 3461 4.1
// lets the MTA choose between FAILURE and FAILURE,DELAY, and posthorn, as
// Postfix by default, sends no delay warnings to senders who did not ask
// for them.
func Wants(notify string, a Action) bool {
	if notify == "" {
		return a == Failed
	}
	want := "SUCCESS"
	switch a {
	case Failed:
		want = "FAILURE"
	case Delayed:
		want = "DELAY"
	}
	for _, k := range strings.Split(notify, ",") {
		if strings.EqualFold(strings.TrimSpace(k), want) {
			return true
		}
	}
	return false
}

// Item is one recipient to report on.
type Item struct {
	// Rcpt is the recipient's index in the envelope's Recipients.
	Rcpt   int
	Action Action
	// Detail describes the last attempt in the form of a
	// queue.Outcome.Detail (see ParseDetail); "" takes the recipient's
	// LastError.
	Detail string
	// RetryUntil is when the queue gives up, for Delayed items
	// (Will-Retry-Until); zero leaves it out.
	RetryUntil time.Time
}

// Failures returns the items for a failure report on the recipients
// env.Recipients[i], i in rcpts (as queue.Options.OnFailed passes them),
// leaving out those whose NOTIFY does not ask for failure reports.
func Failures(env *spool.Envelope, rcpts []int) []Item {
	return selectItems(env, rcpts, Failed, time.Time{})
}

// Delays returns the items for a delay warning on the recipients
// env.Recipients[i], i in rcpts, keeping only those whose NOTIFY asks for
// DELAY; retryUntil is when the queue will give up (the message's arrival
// plus the queue lifetime).
func Delays(env *spool.Envelope, rcpts []int, retryUntil time.Time) []Item {
	return selectItems(env, rcpts, Delayed, retryUntil)
}

// Successes returns the items for a success report on the recipients
// env.Recipients[i], i in rcpts, keeping only those whose NOTIFY asks for
// SUCCESS. a is Delivered for final delivery, Relayed for a handover to a
// next hop that does not support DSN (RFC 3461 5.2.2), Expanded for an
// alias that forwarded elsewhere.
func Successes(env *spool.Envelope, rcpts []int, a Action) []Item {
	return selectItems(env, rcpts, a, time.Time{})
}

func selectItems(env *spool.Envelope, rcpts []int, a Action, until time.Time) []Item {
	var items []Item
	for _, i := range rcpts {
		if i < 0 || i >= len(env.Recipients) || !Wants(env.Recipients[i].Notify, a) {
			continue
		}
		items = append(items, Item{Rcpt: i, Action: a, RetryUntil: until})
	}
	return items
}
