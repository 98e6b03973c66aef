package smtpserver

import (
	"errors"
	"strings"
	"time"

	"github.com/posthorn/posthorn/internal/smtp"
)

// Metrics receives the server's measurements (obs.Metrics implements
// it). Listener names are Role.String().
type Metrics interface {
	// Connection: outcome is accepted, refused_limit_total or
	// refused_limit_ip.
	Connection(listener, outcome string)
	SessionStart(listener string)
	// SessionEnd: outcome is how the session ended (see session.end).
	SessionEnd(listener, outcome string)
	// MessageAccepted: size in octets; sinceData from the end of the
	// message data to the 250.
	MessageAccepted(listener string, size int64, sinceData time.Duration)
	MessageRefused(listener, reason string)
	RecipientRefused(listener, reason string)
}

// refusalReason names a refusal for metrics, from its enhanced status
// code (RFC 3463): a small fixed set, so labels stay bounded.
func refusalReason(r smtp.Reply) string {
	switch r.Enhanced {
	case "5.6.11":
		return "bare_cr_lf"
	case "5.3.4", "4.3.4":
		return "size"
	case "5.6.0":
		return "line_length"
	case "5.1.1":
		return "unknown_user"
	case "5.7.1":
		return "policy"
	case "4.5.3", "5.5.3":
		return "too_many_recipients"
	case "4.3.0":
		return "local_error"
	}
	switch {
	case strings.HasPrefix(r.Enhanced, "5.7."), strings.HasPrefix(r.Enhanced, "4.7."):
		return "policy"
	case strings.HasPrefix(r.Enhanced, "5.1."), strings.HasPrefix(r.Enhanced, "5.5."):
		return "address"
	case r.Transient():
		return "temporary"
	}
	return "other"
}

// errReason is refusalReason for a policy error; one that is not a Reply
// is answered 4xx (an internal failure).
func errReason(err error) string {
	var r smtp.Reply
	if !errors.As(err, &r) {
		return "local_error"
	}
	return refusalReason(r)
}

// endOutcome is how the session ended; "closed" when we closed it for a
// reason not counted elsewhere (HTTP on the port, AUTH blocked, a write
// that failed).
func (s *session) endOutcome() string {
	if s.end == "" {
		return "closed"
	}
	return s.end
}

func (s *Server) countConnection(role Role, totalLimit bool) {
	if s.o.Metrics == nil {
		return
	}
	outcome := "refused_limit_ip"
	if totalLimit {
		outcome = "refused_limit_total"
	}
	s.o.Metrics.Connection(role.String(), outcome)
}

// countSession counts a session starting (outcome "") or ending.
func (s *Server) countSession(role Role, outcome string) {
	if s.o.Metrics == nil {
		return
	}
	if outcome == "" {
		s.o.Metrics.Connection(role.String(), "accepted")
		s.o.Metrics.SessionStart(role.String())
		return
	}
	s.o.Metrics.SessionEnd(role.String(), outcome)
}

func (s *Server) countAccepted(role Role, size int64, sinceData time.Duration) {
	if s.o.Metrics != nil {
		s.o.Metrics.MessageAccepted(role.String(), size, sinceData)
	}
}

func (s *Server) countRefused(role Role, reason string) {
	if s.o.Metrics != nil {
		s.o.Metrics.MessageRefused(role.String(), reason)
	}
}

func (s *Server) countRcptRefused(role Role, reason string) {
	if s.o.Metrics != nil {
		s.o.Metrics.RecipientRefused(role.String(), reason)
	}
}
