// Package smtpserver runs posthorn's SMTP listeners: admission control, the session state machine, STARTTLS and AUTH.
package smtpserver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/posthorn/posthorn/internal/policy"
	"github.com/posthorn/posthorn/internal/spool"
)

// Role is what a listener is for.
type Role int

const (
	// RoleSMTP is port 25: mail from other servers; no AUTH, relay only
	// for trusted networks.
	RoleSMTP Role = iota
	// RoleSubmission is port 587: STARTTLS, then AUTH, then mail.
	RoleSubmission
	// RoleSubmissions is port 465: TLS from the first byte (RFC 8314).
	RoleSubmissions
)

func (r Role) String() string {
	switch r {
	case RoleSubmission:
		return "submission"
	case RoleSubmissions:
		return "submissions"
	}
	return "smtp"
}

// Limits bound what one client may do. Zero values take the defaults.
type Limits struct {
	MessageSize      int64         // octets; default 50 MB
	Recipients       int           // per message; default 100 (RFC 5321 4.5.3.1.8 minimum)
	Connections      int           // in total; default 1000
	ConnectionsPerIP int           // default 20
	CommandTimeout   time.Duration // waiting for a command; default 5m (RFC 5321 4.5.3.2.7)
	DataTimeout      time.Duration // waiting for each data block; default 3m (4.5.3.2.5)
	ErrorsPerSession int           // protocol errors before 421 and close; default 20 (Postfix smtpd_hard_error_limit)
	AuthFailuresIP   int           // failed AUTH per IP per AuthFailureWindow; default 5
	LineLength       int           // text line in DATA incl. CRLF; default 1000 (4.5.3.1.6)
	// MinFreeSpace is what the spool's file system must keep free: MAIL
	// is answered 452 4.3.1 below it, or below 1.5 times a declared
	// SIZE. Default 1.5 × MessageSize, at most 1 GiB (Postfix's rule,
	// queue_minfree); negative: no check.
	MinFreeSpace int64
}

// AuthFailureWindow is how long failed AUTH attempts count against an IP.
const AuthFailureWindow = 15 * time.Minute

func (l *Limits) setDefaults() {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&l.Recipients, 100)
	def(&l.Connections, 1000)
	def(&l.ConnectionsPerIP, 20)
	def(&l.ErrorsPerSession, 20)
	def(&l.AuthFailuresIP, 5)
	def(&l.LineLength, 1000)
	if l.MessageSize <= 0 {
		l.MessageSize = 50 << 20
	}
	if l.MinFreeSpace == 0 {
		l.MinFreeSpace = min(l.MessageSize/2*3, 1<<30)
	}
	if l.CommandTimeout <= 0 {
		l.CommandTimeout = 5 * time.Minute
	}
	if l.DataTimeout <= 0 {
		l.DataTimeout = 3 * time.Minute
	}
}

// Authenticator checks a user's password; an error is a temporary
// failure to check (454), not a wrong password.
type Authenticator interface {
	Authenticate(ctx context.Context, user, password string) (bool, error)
}

// Message is a complete message about to be committed, as a Checker sees
// it.
type Message struct {
	Role       Role
	ClientIP   netip.Addr
	Helo       string
	From       string // "" for the null sender
	Recipients []string
	AuthUser   string
	TLS        *tls.ConnectionState
	// Data reads the message as received (after DropHeader).
	Data func() (io.Reader, error)

	// Set by the Checker:
	Prepend    string // header fields to add, below our Received
	Quarantine bool   // deliver to the recipients' Junk folders
}

// Checker inspects a message after its data is complete and before it is
// committed: authentication checks on port 25, signing on submission. An
// smtp.Reply error refuses the message with that reply; any other error
// is answered 451 and logged.
type Checker func(ctx context.Context, m *Message) error

// Options configures a Server.
type Options struct {
	Hostname string
	Spool    *spool.Spool
	// Queued is called after a message is durably committed (the queue
	// takes it from there). It must not block.
	Queued func(env *spool.Envelope)
	Policy *policy.Policy
	// Check runs on every complete message before commit; nil: none.
	Check Checker
	// DropHeader removes header fields from received messages as they
	// stream in (Authentication-Results claiming our authserv-id, RFC
	// 8601 5); nil keeps everything.
	DropHeader func(name, value string) bool
	Auth       Authenticator // nil: AUTH is never offered
	TLS        *tls.Config   // nil: no STARTTLS, and 465 cannot be served
	Limits     Limits
	Admission  Admission // abuse limits beyond Limits (admission.go); zero: off
	Screen     Screen    // DNS lists, reverse DNS, HELO, greylisting on port 25; nil: none
	Logger     *slog.Logger
	Now        func() time.Time
	Metrics    Metrics // nil: none
}

// Server serves SMTP on any number of listeners.
type Server struct {
	o      Options
	log    *slog.Logger
	nextID atomic.Uint64

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	sessions  map[*session]struct{}
	perIP     map[netip.Addr]int
	authFails map[netip.Addr][]time.Time
	adm       *admission
	closing   bool
	wg        sync.WaitGroup
}

// New returns a Server.
func New(o Options) *Server {
	o.Limits.setDefaults()
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.TLS != nil {
		c := o.TLS.Clone()
		c.MinVersion = max(c.MinVersion, tls.VersionTLS12) // DESIGN: TLS 1.2 or newer
		// ALPACA (cross-protocol attacks): a client that offers ALPN
		// protocols but not "smtp" (a browser asking for http/1.1 or
		// h2) fails the handshake with no_application_protocol, so an
		// HTTPS request redirected here never reaches a session. A
		// client offering no ALPN, as MTAs and mail clients do, is
		// not affected.
		c.NextProtos = []string{"smtp"}
		o.TLS = c
	}
	return &Server{
		o:         o,
		log:       o.Logger,
		listeners: map[net.Listener]struct{}{},
		sessions:  map[*session]struct{}{},
		perIP:     map[netip.Addr]int{},
		authFails: map[netip.Addr][]time.Time{},
		adm:       newAdmission(o.Admission),
	}
}

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("smtpserver: server closed")

// Serve accepts connections on ln for role until Shutdown. Temporary
// accept errors (such as running out of file descriptors) are logged and
// retried with a short backoff; they never end the daemon.
func (s *Server) Serve(ln net.Listener, role Role) error {
	if role == RoleSubmissions && s.o.TLS == nil {
		return fmt.Errorf("smtpserver: %s listener %s needs a TLS certificate", role, ln.Addr())
	}
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	s.log.Info("listening", "role", role.String(), "addr", ln.Addr().String())

	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closing := s.closing
			s.mu.Unlock()
			if closing {
				return ErrServerClosed
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			var ne net.Error
			if errors.As(err, &ne) || errors.Is(err, syscallEMFILE) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.log.Warn("accept failed; retrying", "addr", ln.Addr().String(), "err", err, "backoff", backoff)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		s.startSession(c, role)
	}
}

// startSession applies admission control and runs the session.
func (s *Server) startSession(c net.Conn, role Role) {
	ip := remoteIP(c)
	id := fmt.Sprintf("c%x", s.nextID.Add(1))
	s.mu.Lock()
	total := len(s.sessions)
	if s.closing {
		s.mu.Unlock()
		c.Close()
		return
	}
	refuse := ""
	switch {
	case total >= s.o.Limits.Connections:
		refuse = "too many connections; try again later"
	case s.perIP[ip] >= s.o.Limits.ConnectionsPerIP:
		refuse = "too many connections from your address; try again later"
	default:
		refuse = s.admit(ip) // admission.go: per IPv6 /64, connection rate
	}
	if refuse != "" {
		s.mu.Unlock()
		s.countConnection(role, total >= s.o.Limits.Connections)
		s.log.Warn("connection refused", "conn", id, "client", ip.String(), "role", role.String(), "reason", refuse)
		go func() {
			c.SetWriteDeadline(time.Now().Add(5 * time.Second))
			c.Write([]byte("421 4.7.0 " + s.o.Hostname + " " + refuse + "\r\n"))
			c.Close()
		}()
		return
	}
	sess := newSession(s, c, role, id, ip)
	s.sessions[sess] = struct{}{}
	s.perIP[ip]++
	s.wg.Add(1)
	s.mu.Unlock()
	s.countSession(role, "")

	go func() {
		defer s.wg.Done()
		defer func() { s.countSession(role, sess.endOutcome()) }()
		defer func() {
			s.mu.Lock()
			delete(s.sessions, sess)
			if s.perIP[ip]--; s.perIP[ip] <= 0 {
				delete(s.perIP, ip)
			}
			s.released(ip)
			s.mu.Unlock()
		}()
		sess.run()
	}()
}

// Shutdown stops accepting, asks idle sessions to end, and waits for
// sessions in progress until ctx is done; then it closes what is left.
// A message whose DATA is cut off this way was never acknowledged, so the
// client keeps it and retries: nothing is lost.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	for ln := range s.listeners {
		ln.Close()
	}
	for sess := range s.sessions {
		sess.shutdown()
	}
	s.mu.Unlock()

	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.mu.Lock()
		for sess := range s.sessions {
			sess.conn.Close()
		}
		s.mu.Unlock()
		<-done
		return ctx.Err()
	}
}

// authFailed records a failed AUTH and reports whether the IP is now
// over its limit.
func (s *Server) authFailed(ip netip.Addr) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.o.Now()
	s.authFails[ip] = append(recentFails(s.authFails[ip], now), now)
	return len(s.authFails[ip]) >= s.o.Limits.AuthFailuresIP
}

// authBlocked reports whether an IP has used up its AUTH attempts.
func (s *Server) authBlocked(ip netip.Addr) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := recentFails(s.authFails[ip], s.o.Now())
	if len(f) == 0 {
		delete(s.authFails, ip)
	} else {
		s.authFails[ip] = f
	}
	return len(f) >= s.o.Limits.AuthFailuresIP
}

func recentFails(f []time.Time, now time.Time) []time.Time {
	for len(f) > 0 && now.Sub(f[0]) > AuthFailureWindow {
		f = f[1:]
	}
	return f
}

func remoteIP(c net.Conn) netip.Addr {
	if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}
