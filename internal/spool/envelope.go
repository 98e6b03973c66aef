package spool

import (
	"fmt"
	"time"
)

// Envelope is everything about a message except its bytes.
type Envelope struct {
	// ID is the queue id; set by Commit.
	ID string `json:"id"`
	// From is the reverse-path without <>; "" is the null sender.
	From       string      `json:"from"`
	Recipients []Recipient `json:"rcpts"`
	Arrival    time.Time   `json:"arrival"`
	// Size is the number of bytes written to the Writer; set by Commit.
	// The message as delivered is Prepend followed by those bytes.
	Size int64 `json:"size"`
	// Prepend holds the header fields posthorn adds at the top of the
	// message (Received, Authentication-Results, DKIM-Signature…), known
	// only once the whole message has been read. It is stored with the
	// envelope, so the client's bytes are written once, as they stream in.
	Prepend string `json:"prepend,omitempty"`
	// Quarantine files the message into the recipients' Junk folders
	// (a failing DMARC p=quarantine, for instance).
	Quarantine bool `json:"quarantine,omitempty"`

	SMTPUTF8 bool `json:"smtputf8,omitempty"`
	// Body is the BODY= parameter: "7BIT", "8BITMIME", "BINARYMIME" or "".
	Body string `json:"body,omitempty"`
	// EnvID and Ret are the DSN parameters of MAIL (RFC 3461 4.3, 4.4).
	EnvID      string `json:"envid,omitempty"`
	Ret        string `json:"ret,omitempty"`
	RequireTLS bool   `json:"requiretls,omitempty"`

	ClientAddr string `json:"client,omitempty"`
	Helo       string `json:"helo,omitempty"`
	AuthUser   string `json:"auth,omitempty"`
	Listener   string `json:"listener,omitempty"`

	// Hold keeps the queue from attempting the message; changed with
	// Spool.SetHold after commit.
	Hold bool `json:"hold,omitempty"`

	// envSum is the envelope digest of the file the envelope was loaded
	// from: BodyOf checks that the file it opens still holds that
	// message (a finished message's file is reused for another).
	envSum []byte
}

// Pending returns the indexes of the recipients still to be delivered.
func (e *Envelope) Pending() []int {
	var idx []int
	for i := range e.Recipients {
		if e.Recipients[i].Status == Pending {
			idx = append(idx, i)
		}
	}
	return idx
}

// Recipient is one RCPT TO with its delivery state.
type Recipient struct {
	Addr string `json:"addr"`
	// ORcpt and Notify are the DSN parameters of RCPT (RFC 3461 4.1, 4.2),
	// as received.
	ORcpt  string `json:"orcpt,omitempty"`
	Notify string `json:"notify,omitempty"`
	RecipientState
}

// RecipientState is the part of a Recipient that changes after commit.
type RecipientState struct {
	Status      RecipientStatus `json:"status"`
	Attempts    int             `json:"attempts,omitempty"`
	LastError   string          `json:"last_error,omitempty"`
	LastAttempt time.Time       `json:"last_attempt,omitzero"`
	NextAttempt time.Time       `json:"next_attempt,omitzero"`
	// Reported is set once the failure (or other notification) for this
	// recipient has been handed to the DSN generator, so a restart does
	// not lose or repeat it.
	Reported bool `json:"reported,omitempty"`
	// Warned is set once a delay notification was handed over for this
	// recipient (at most one per recipient).
	Warned bool `json:"warned,omitempty"`
	// Relayed: delivered to a next hop without DSN support, which will
	// not report on it (RFC 3461 5.2.2).
	Relayed bool `json:"relayed,omitempty"`
}

// RecipientUpdate replaces the state of recipient Index (all of it: start
// from the current RecipientState and change what changed).
type RecipientUpdate struct {
	Index int `json:"i"`
	RecipientState
}

// Event is one durable state record: recipient updates or a hold change.
type Event struct {
	At         time.Time         `json:"at"`
	Hold       *bool             `json:"hold,omitempty"`
	Recipients []RecipientUpdate `json:"rcpts,omitempty"`
}

// RecipientStatus says where a recipient stands. The zero value is Pending.
type RecipientStatus uint8

// Recipient statuses. Delivered and Failed are final.
const (
	Pending RecipientStatus = iota
	Delivered
	Failed
)

var statusNames = [...]string{Pending: "pending", Delivered: "delivered", Failed: "failed"}

func (s RecipientStatus) valid() bool { return int(s) < len(statusNames) }

// Final reports whether s is Delivered or Failed.
func (s RecipientStatus) Final() bool { return s == Delivered || s == Failed }

func (s RecipientStatus) String() string {
	if s.valid() {
		return statusNames[s]
	}
	return fmt.Sprintf("RecipientStatus(%d)", uint8(s))
}

// MarshalText encodes the status by name, so the files stay readable.
func (s RecipientStatus) MarshalText() ([]byte, error) {
	if !s.valid() {
		return nil, fmt.Errorf("spool: invalid recipient status %d", uint8(s))
	}
	return []byte(statusNames[s]), nil
}

// UnmarshalText decodes a status name.
func (s *RecipientStatus) UnmarshalText(b []byte) error {
	for i, n := range statusNames {
		if string(b) == n {
			*s = RecipientStatus(i)
			return nil
		}
	}
	return fmt.Errorf("spool: unknown recipient status %q", b)
}

// apply sets the state recorded in ev on e.
func (e *Envelope) apply(ev *Event) error {
	for _, u := range ev.Recipients {
		if u.Index < 0 || u.Index >= len(e.Recipients) {
			return fmt.Errorf("recipient index %d out of range", u.Index)
		}
		e.Recipients[u.Index].RecipientState = u.RecipientState
	}
	if ev.Hold != nil {
		e.Hold = *ev.Hold
	}
	return nil
}
