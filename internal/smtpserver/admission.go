package smtpserver

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/posthorn/posthorn/internal/ratelimit"
	"github.com/posthorn/posthorn/internal/smtp"
)

// Admission holds the abuse limits beyond Limits. Zero fields are off, so
// that a Server built without them behaves as before; the daemon's
// defaults come from its configuration. Clients in trusted networks are
// exempt from the rates and the Screen (Postfix exempts mynetworks from
// its anvil limits too).
type Admission struct {
	// ConnectionsPerNet bounds the connections from one IPv6 /64, where
	// one client has as many addresses as it likes; IPv4 clients are
	// bounded per address by Limits.ConnectionsPerIP.
	ConnectionsPerNet int
	// ConnectionRate is new connections per minute from one client
	// (IPv6: one /64); more are answered 421 4.7.0 and closed.
	ConnectionRate int
	// MessageRate is MAIL commands per minute from one client; more are
	// answered 450 4.7.1.
	MessageRate int
	// RecipientsPerSession bounds the recipients accepted in one
	// connection, over all its messages; more are answered 452 4.5.3.
	RecipientsPerSession int
	// After SoftErrorLimit errors in a session, each further error reply
	// is delayed ErrorDelay times the errors over the limit, up to 30
	// seconds (a tarpit, like Postfix's smtpd_soft_error_limit and
	// smtpd_error_sleep_time).
	SoftErrorLimit int
	ErrorDelay     time.Duration
	// MinDataRate, in octets per second, lets a DATA or BDAT transfer run
	// past Limits.DataTimeout only as fast as it sends: the transfer must
	// end by DataTimeout plus one second per MinDataRate octets received
	// (Postfix's smtpd_min_data_rate). Slower clients get 421 4.4.2.
	MinDataRate int
	// MaxDataMemory bounds the memory of all message transfers at once.
	// Message data is never held whole: it streams through fixed buffers
	// (the command reader, one line of the DATA reader, the header
	// filter's field, the spool file's write buffer) to the spool file,
	// so each transfer costs at most TransferMemory. A DATA or BDAT that
	// would go over the bound is answered 452 4.3.1 and may be retried.
	MaxDataMemory int64
}

// TransferMemory is what one message transfer may hold in RAM at most:
// 16 KiB command reader, 16 KiB DATA line, 64 KiB header field, 64 KiB
// spool write buffer, 32 KiB copy buffer, rounded up.
const TransferMemory = 256 << 10

// maxErrorDelay caps the tarpit delay of one reply.
const maxErrorDelay = 30 * time.Second

// Screening is the screen's view of one session (DNS lists, reverse DNS,
// HELO name, greylisting); nil functions pass. Each returns nil or an
// error, normally an smtp.Reply.
type Screening struct {
	// Connect is asked before the greeting: a 5xx reply replaces the 220
	// and the session then refuses every command but QUIT (RFC 5321
	// 3.1); a 4xx is sent as 421 and the connection closed.
	Connect func(ctx context.Context) error
	Helo    func(ctx context.Context, name string) error
	// Rcpt is asked for each recipient the policy accepted.
	Rcpt func(ctx context.Context, from, rcpt string) error
}

// Screen starts screening a port-25 session from an untrusted client.
type Screen func(ip netip.Addr, log *slog.Logger) Screening

// admission is the server's state for Admission.
type admission struct {
	perNet   map[netip.Prefix]int // guarded by Server.mu
	connRate *ratelimit.Limiter[netip.Addr]
	msgRate  *ratelimit.Limiter[netip.Addr]
	dataMem  atomic.Int64
}

func newAdmission(a Admission) *admission {
	return &admission{
		perNet:   map[netip.Prefix]int{},
		connRate: ratelimit.New[netip.Addr](ratelimit.Options{Rate: a.ConnectionRate}),
		msgRate:  ratelimit.New[netip.Addr](ratelimit.Options{Rate: a.MessageRate}),
	}
}

// clientKey is what limits count a client by: its IPv4 address, or its
// IPv6 /64.
func clientKey(ip netip.Addr) netip.Addr {
	if ip.Is6() && !ip.Is4In6() {
		p, _ := ip.Prefix(64)
		return p.Addr()
	}
	return ip
}

func (s *Server) trusted(ip netip.Addr) bool {
	return s.o.Policy != nil && s.o.Policy.Trusted(ip)
}

// admit applies the per-network count and the connection rate to a new
// connection, with s.mu held; it returns why the connection is refused,
// or "" and counts it.
func (s *Server) admit(ip netip.Addr) string {
	a := &s.o.Admission
	net64 := netip.PrefixFrom(clientKey(ip), 64)
	if ip.Is6() && !ip.Is4In6() && a.ConnectionsPerNet > 0 && s.adm.perNet[net64] >= a.ConnectionsPerNet {
		return "too many connections from your network; try again later"
	}
	if !s.trusted(ip) && !s.adm.connRate.Allow(clientKey(ip), s.o.Now()) {
		return "too many connections from your address in the last minute; slow down and try again later"
	}
	if ip.Is6() && !ip.Is4In6() {
		s.adm.perNet[net64]++
	}
	return ""
}

// released uncounts a connection admitted by admit, with s.mu held.
func (s *Server) released(ip netip.Addr) {
	if !ip.Is6() || ip.Is4In6() {
		return
	}
	net64 := netip.PrefixFrom(clientKey(ip), 64)
	if s.adm.perNet[net64]--; s.adm.perNet[net64] <= 0 {
		delete(s.adm.perNet, net64)
	}
}

// sessionAdmission is a session's state for Admission and the Screen.
type sessionAdmission struct {
	scr      Screening
	screened bool
	blocked  *smtp.Reply // refused at connect: only QUIT is served
	rcpts    int         // recipients accepted in the session
	mem      bool        // holds TransferMemory of the server's budget
	floor    dataFloor
}

// greeting returns the reply to give on connecting, and false when the
// connection is to be closed after it.
func (s *session) greeting() (smtp.Reply, bool) {
	hello := smtp.Reply{Code: 220, Lines: []string{s.srv.o.Hostname + " ESMTP posthorn"}}
	if s.role != RoleSMTP || s.srv.o.Screen == nil || s.srv.trusted(s.ip) {
		return hello, true
	}
	s.adm.scr = s.srv.o.Screen(s.ip, s.log)
	s.adm.screened = true
	if s.adm.scr.Connect == nil {
		return hello, true
	}
	err := s.adm.scr.Connect(context.Background())
	if err == nil {
		return hello, true
	}
	var r smtp.Reply
	if !errors.As(err, &r) || !r.Permanent() {
		if !errors.As(err, &r) {
			s.log.Error("screening failed", "err", err)
			r = smtp.R(421, "4.3.0", "%s cannot serve you right now; please try again later", s.srv.o.Hostname)
		}
		r.Code = 421
		s.log.Info("connection refused", "client", s.ip.String(), "reply", r.Error())
		return r, false
	}
	if r.Code != 554 {
		r.Code = 554 // RFC 5321 3.1: the refusal in place of the greeting
	}
	s.log.Info("connection refused", "client", s.ip.String(), "reply", r.Error())
	s.adm.blocked = &r
	return r, true
}

// blockedReply is the answer to any command but QUIT in a session
// refused at connect.
func (s *session) blockedReply(verb string) (smtp.Reply, bool) {
	if s.adm.blocked == nil || verb == "QUIT" {
		return smtp.Reply{}, false
	}
	return smtp.R(503, "5.7.1", "Service refused at connect (%s); only QUIT is accepted", s.adm.blocked.Text()), true
}

func (s *session) screenHelo(name string) error {
	if !s.adm.screened || s.adm.scr.Helo == nil || s.authUser != "" {
		return nil
	}
	return s.adm.scr.Helo(context.Background(), name)
}

// admitMail applies the message rate.
func (s *session) admitMail() error {
	if s.authUser != "" || s.srv.trusted(s.ip) {
		return nil
	}
	if !s.srv.adm.msgRate.Allow(clientKey(s.ip), s.srv.o.Now()) {
		return smtp.R(450, "4.7.1", "Too many messages from your address in the last minute; slow down and try again later")
	}
	return nil
}

// admitRcpt applies the recipients-per-session limit and the screen to a
// recipient the policy accepted, and counts it.
func (s *session) admitRcpt(from, rcpt string) error {
	if n := s.srv.o.Admission.RecipientsPerSession; n > 0 && s.adm.rcpts >= n {
		return smtp.R(452, "4.5.3", "Too many recipients in this connection (at most %d); send the rest in a new connection", n)
	}
	if s.adm.screened && s.adm.scr.Rcpt != nil && s.authUser == "" {
		if err := s.adm.scr.Rcpt(context.Background(), from, rcpt); err != nil {
			return err
		}
	}
	s.adm.rcpts++
	return nil
}

// tarpit delays an error reply once the session has made more than
// SoftErrorLimit errors; Shutdown cuts the delay short.
func (s *session) tarpit() {
	a := &s.srv.o.Admission
	over := s.errors - a.SoftErrorLimit
	if a.ErrorDelay <= 0 || over <= 0 {
		return
	}
	d := min(time.Duration(over)*a.ErrorDelay, maxErrorDelay)
	s.log.Debug("delaying the error reply", "errors", s.errors, "delay", d)
	for end := time.Now().Add(d); time.Now().Before(end) && !s.closing.Load(); {
		time.Sleep(min(100*time.Millisecond, time.Until(end)))
	}
}

// reserveData takes TransferMemory from the server's budget for the
// transfer about to begin.
func (s *session) reserveData() (smtp.Reply, bool) {
	limit := s.srv.o.Admission.MaxDataMemory
	if limit <= 0 || s.adm.mem {
		return smtp.Reply{}, true
	}
	if s.srv.adm.dataMem.Add(TransferMemory) > limit {
		s.srv.adm.dataMem.Add(-TransferMemory)
		s.log.Warn("message memory bound reached; transfer refused", "max", limit)
		return smtp.R(452, "4.3.1", "Insufficient system resources: too many messages are being received right now; please try again later"), false
	}
	s.adm.mem = true
	return smtp.Reply{}, true
}

// releaseData returns the transfer's memory to the budget.
func (s *session) releaseData() {
	if s.adm.mem {
		s.adm.mem = false
		s.srv.adm.dataMem.Add(-TransferMemory)
	}
}

// storageRoom tells whether the spool's file system has room for a new
// transaction of declared octets (0: no SIZE): Limits.MinFreeSpace free,
// and 1.5 times the declared size. Checked at MAIL, as Postfix does, so
// that a client is told before it sends the data; a failed statfs does not
// refuse (the commit still fails safely if the disk is full).
func (srv *Server) storageRoom(declared int64) (smtp.Reply, bool) {
	reserve := srv.o.Limits.MinFreeSpace
	if srv.o.Spool == nil || reserve < 0 {
		return smtp.Reply{}, true
	}
	free, err := srv.o.Spool.FreeSpace()
	if err != nil {
		return smtp.Reply{}, true
	}
	if free >= reserve && free >= declared/2*3 {
		return smtp.Reply{}, true
	}
	return smtp.R(452, "4.3.1", "Insufficient system storage: the mail queue's disk is nearly full; please try again later"), false
}

// storageReply answers a failure to store a message: 452 4.3.1 when the
// disk is full (RFC 3463: mail system full), else 451 4.3.0.
func storageReply(err error) smtp.Reply {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return smtp.R(452, "4.3.1", "Insufficient system storage: the message was not stored; please try again later")
	}
	return smtp.R(451, "4.3.0", "Cannot store the message right now; please try again later")
}

// dataFloor enforces MinDataRate on one transfer through timeoutConn.
type dataFloor struct {
	on      bool
	rate    int
	start   time.Time
	budget  time.Duration
	n       int64
	binding bool // the last read deadline was the rate's, not the timeout's
}

// startFloor begins a DATA or BDAT transfer.
func (s *session) startFloor() {
	f := &s.adm.floor
	*f = dataFloor{}
	if r := s.srv.o.Admission.MinDataRate; r > 0 {
		*f = dataFloor{on: true, rate: r, start: time.Now(), budget: s.srv.o.Limits.DataTimeout}
	}
	s.tc.floor = f
}

// stopFloor ends the transfer's rate check.
func (s *session) stopFloor() { s.adm.floor.on = false }

// deadline returns the earlier of d and the rate's deadline.
func (f *dataFloor) deadline(d time.Time) time.Time {
	if f == nil || !f.on {
		return d
	}
	limit := f.start.Add(f.budget + time.Duration(f.n)*time.Second/time.Duration(f.rate))
	f.binding = limit.Before(d)
	if f.binding {
		return limit
	}
	return d
}

func (f *dataFloor) count(n int) {
	if f != nil && f.on {
		f.n += int64(n)
	}
}

// timeoutReply is the 421 for a read that timed out.
func (s *session) timeoutReply() smtp.Reply {
	f := &s.adm.floor
	if f.on && f.binding {
		f.on = false
		s.log.Info("data rate too low; closing", "octets", f.n, "min_rate", f.rate)
		return smtp.R(421, "4.4.2", "%s data rate too low (at least %d octets per second); closing connection", s.srv.o.Hostname, f.rate)
	}
	return smtp.R(421, "4.4.2", "%s timeout exceeded; closing connection", s.srv.o.Hostname)
}
