// Package ctl is the local control interface of a running posthorn: queue administration and message submission over unix sockets.
//
// The daemon listens on two sockets in its data directory (AdminSocket,
// SubmitSocket). Both speak HTTP/1.1 with JSON bodies, which keeps the
// framing, the error reporting and the bounds on requests in well-tested
// code:
//
//	admin socket (mode 0600; peers other than root and the daemon's own uid
//	are refused after an SO_PEERCRED check)
//	  GET    /v1/queue                   []Message
//	  GET    /v1/queue/{id}              Message
//	  GET    /v1/queue/{id}/message      the message bytes (?part=headers: the header section only)
//	  GET    /v1/queue/{id}/trace        Trace
//	  POST   /v1/queue/{id}/retry        attempt at once
//	  POST   /v1/queue/{id}/hold
//	  POST   /v1/queue/{id}/release
//	  DELETE /v1/queue/{id}
//	  POST   /v1/queue/retry-all         RetryAllResult
//
//	submit socket (mode 0666: any local user may submit, as with Postfix's
//	postdrop; the peer's uid comes from SO_PEERCRED, never from the request)
//	  POST   /v1/submit                  one line of SubmitRequest JSON, then the message; SubmitResult
//
// Errors come back as an HTTP status and an ErrorBody; the Client turns them
// into *Error values that match the sentinel errors below with errors.Is.
package ctl

import (
	"errors"
	"fmt"
	"path/filepath"
	"time"
)

// AdminSocket returns the path of the admin socket for a data directory.
func AdminSocket(dataDir string) string { return filepath.Join(dataDir, "ctl.sock") }

// SubmitSocket returns the path of the submission socket for a data directory.
func SubmitSocket(dataDir string) string { return filepath.Join(dataDir, "submit.sock") }

// Message is one queued message as the admin API shows it.
type Message struct {
	ID      string    `json:"id"`
	From    string    `json:"from"` // "" is the null sender <>
	Arrival time.Time `json:"arrival"`
	Size    int64     `json:"size"`

	Held bool `json:"held,omitempty"`
	// Active: a delivery attempt is in flight.
	Active bool `json:"active,omitempty"`
	// NextAttempt is when the scheduler will next attempt the message;
	// zero while held or active.
	NextAttempt time.Time `json:"next_attempt,omitzero"`

	ClientAddr string `json:"client,omitempty"`
	Helo       string `json:"helo,omitempty"`
	AuthUser   string `json:"auth,omitempty"`
	Listener   string `json:"listener,omitempty"`
	EnvID      string `json:"envid,omitempty"`
	Ret        string `json:"ret,omitempty"`

	Recipients []Recipient `json:"recipients"`
}

// Recipient states as shown by the admin API.
const (
	StatePending   = "pending"   // not tried yet
	StateDeferred  = "deferred"  // tried, failed temporarily, will be retried
	StateDelivered = "delivered" // final
	StateFailed    = "failed"    // final: bounced (or expired)
)

// Recipient is one recipient of a Message and where it stands.
type Recipient struct {
	Addr        string    `json:"addr"`
	ORcpt       string    `json:"orcpt,omitempty"`
	State       string    `json:"state"`
	Attempts    int       `json:"attempts,omitempty"`
	LastError   string    `json:"last_error,omitempty"`
	LastAttempt time.Time `json:"last_attempt,omitzero"`
	NextAttempt time.Time `json:"next_attempt,omitzero"`
}

// Trace is the recorded history of a message: every attempt's outcome per
// recipient and every hold and release, oldest first.
type Trace struct {
	Message Message      `json:"message"`
	Events  []TraceEvent `json:"events"`
}

// TraceEvent is one durable state record of the message.
type TraceEvent struct {
	At time.Time `json:"at"`
	// Hold is set when the record put the message on hold (true) or
	// released it (false).
	Hold       *bool            `json:"hold,omitempty"`
	Recipients []TraceRecipient `json:"recipients,omitempty"`
}

// TraceRecipient is the state a record gave one recipient.
type TraceRecipient struct {
	Addr        string    `json:"addr"`
	State       string    `json:"state"`
	Attempts    int       `json:"attempts,omitempty"`
	Error       string    `json:"error,omitempty"`
	NextAttempt time.Time `json:"next_attempt,omitzero"`
	// Reported: the failure has been handed to the bounce generator.
	Reported bool `json:"reported,omitempty"`
}

// RetryAllResult answers a flush.
type RetryAllResult struct {
	Messages int `json:"messages"`
}

// SubmitRequest is the envelope of a local submission. The message itself
// follows it on the wire.
type SubmitRequest struct {
	// From is the envelope sender the client asks for (sendmail -f); ""
	// lets the daemon choose (the invoking user at its host name).
	From string `json:"from,omitempty"`
	// NullSender asks for the null reverse-path <> (sendmail -f '<>'),
	// as mail that must not cause bounces uses (vacation replies).
	NullSender bool     `json:"null_sender,omitempty"`
	Recipients []string `json:"recipients"`
	// FullName is the sender's full name (sendmail -F), for a From:
	// header the daemon adds when the message has none.
	FullName string `json:"full_name,omitempty"`
}

// SubmitResult answers a submission.
type SubmitResult struct {
	ID string `json:"id"`
}

// ErrorBody is the JSON body of every error response.
type ErrorBody struct {
	Error string `json:"error"`
	// Reason refines the status where one status covers several
	// cases ("bad-address" for a 400).
	Reason string `json:"reason,omitempty"`
}

// Sentinel errors. A SubmitFunc wraps ErrBadRequest, ErrBadAddress,
// ErrTooLarge or ErrPermission to refuse a submission for a reason the
// client can act on; any other error is answered as temporary
// (ErrUnavailable), and its text stays in the daemon's log. The Client
// returns *Error values that match these with errors.Is, and wraps
// ErrUnreachable when it cannot connect at all.
var (
	ErrBadRequest  = errors.New("bad request")
	ErrBadAddress  = errors.New("bad address")
	ErrNotFound    = errors.New("no such message in the queue")
	ErrConflict    = errors.New("conflict")
	ErrTooLarge    = errors.New("message too large")
	ErrPermission  = errors.New("permission denied")
	ErrUnavailable = errors.New("temporarily unavailable")
	ErrInternal    = errors.New("internal error")
	ErrUnreachable = errors.New("cannot reach the daemon")
)

// Error is an error answered by the daemon.
type Error struct {
	Status int    // HTTP status
	Reason string // ErrorBody.Reason
	Msg    string // the daemon's explanation
}

func (e *Error) Error() string { return e.Msg }

// Is matches e against the sentinel errors by status; a bad address is
// also a bad request.
func (e *Error) Is(target error) bool {
	s := statusErr(e.Status, e.Reason)
	return target == s || s == ErrBadAddress && target == ErrBadRequest
}

// statusErr maps an HTTP status to its sentinel; bad-address answers use
// a reason string to tell them from other bad requests.
func statusErr(status int, reason string) error {
	switch status {
	case 400:
		if reason == reasonBadAddress {
			return ErrBadAddress
		}
		return ErrBadRequest
	case 403:
		return ErrPermission
	case 404:
		return ErrNotFound
	case 409:
		return ErrConflict
	case 413:
		return ErrTooLarge
	case 503:
		return ErrUnavailable
	}
	return ErrInternal
}

const reasonBadAddress = "bad-address"

// UnreachableError says the daemon could not be reached at Path.
type UnreachableError struct {
	Path string
	Err  error
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("cannot reach the daemon at %s: %v", e.Path, e.Err)
}

func (e *UnreachableError) Unwrap() []error { return []error{ErrUnreachable, e.Err} }
