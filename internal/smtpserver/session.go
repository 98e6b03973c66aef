package smtpserver

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime/debug"
	"runtime/trace"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/posthorn/posthorn/internal/auth"
	"github.com/posthorn/posthorn/internal/bufpool"
	"github.com/posthorn/posthorn/internal/message"
	"github.com/posthorn/posthorn/internal/policy"
	"github.com/posthorn/posthorn/internal/smtp"
	"github.com/posthorn/posthorn/internal/spool"
)

// session is one SMTP connection. It runs on one goroutine; only
// shutdown is called from elsewhere.
type session struct {
	srv  *Server
	conn net.Conn
	tc   *timeoutConn
	br   *bufio.Reader
	out  []byte // replies not yet flushed (pipelining: RFC 2920)
	role Role
	id   string
	ip   netip.Addr
	log  *slog.Logger

	tls      *tls.ConnectionState
	helo     string
	esmtp    bool
	authUser string
	errors   int
	messages int
	closing  atomic.Bool
	idle     atomic.Bool // waiting for a command outside a transaction
	adm      sessionAdmission
	end      string // how the session ended, for metrics

	tx *transaction
}

// transaction is the state between MAIL and the end of DATA/BDAT LAST.
type transaction struct {
	from   smtp.Address
	env    spool.Envelope
	w      *spool.Writer
	dst    io.Writer // where message data goes: w, through the header filter
	filter *message.HeaderFilter
	bdat   bool  // BDAT used: DATA may not follow (RFC 3030 2)
	failed error // a BDAT chunk failed: the rest are read and discarded
	size   int64
}

// readers recycles the sessions' 16 KiB read buffers: a session per
// message is common (most senders do not reuse connections).
var readers = bufpool.NewReaderPool(16 << 10)

func newSession(s *Server, c net.Conn, role Role, id string, ip netip.Addr) *session {
	tc := &timeoutConn{Conn: c}
	br := readers.Get(tc)
	return &session{
		srv:  s,
		conn: c,
		tc:   tc,
		br:   br,
		role: role,
		id:   id,
		ip:   ip,
		log:  s.log.With("conn", id),
	}
}

// errClose ends the session after its reply is flushed.
var errClose = errors.New("close session")

func (s *session) run() {
	start := time.Now()
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("panic in session; closing it", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			s.end = "panic"
		}
		s.abortTx()
		s.conn.SetDeadline(time.Now().Add(time.Second))
		s.conn.Close()
		readers.Put(s.br)
		s.br = nil
		attrs := []any{"client", s.ip.String(), "role", s.role.String(), "helo", s.helo,
			"messages", s.messages, "errors", s.errors, "duration", time.Since(start).Round(time.Millisecond)}
		if s.tls != nil {
			attrs = append(attrs, "tls", tls.VersionName(s.tls.Version))
		}
		if s.authUser != "" {
			attrs = append(attrs, "user", s.authUser)
		}
		s.log.Info("connection closed", attrs...)
	}()
	s.log.Info("connection", "client", s.ip.String(), "role", s.role.String(), "local", s.conn.LocalAddr().String())

	lim := &s.srv.o.Limits
	if s.role == RoleSubmissions {
		if !s.handshake() {
			s.end = "tls_failed"
			return
		}
	}
	greeting, ok := s.greeting() // admission.go: 554 or 421 when screened out
	s.reply(greeting)
	if !ok {
		s.flush()
		return
	}
	for {
		// Replies to a pipelined batch go out together, once the client
		// has nothing more buffered (RFC 2920 3.1).
		if s.br.Buffered() == 0 && !s.flush() {
			return
		}
		// Shutdown ends sessions between transactions; one in progress
		// runs on until it finishes or Shutdown's deadline passes.
		s.idle.Store(s.tx == nil)
		if s.closing.Load() && s.tx == nil {
			s.reply(smtp.R(421, "4.3.2", "%s shutting down; please try again later", s.srv.o.Hostname))
			s.flush()
			s.end = "shutdown"
			return
		}
		s.tc.timeout = lim.CommandTimeout
		line, err := smtp.ReadCommandLine(s.br, smtp.CommandLineLimit)
		s.idle.Store(false)
		if err != nil && s.closing.Load() && s.tx == nil {
			s.reply(smtp.R(421, "4.3.2", "%s shutting down; please try again later", s.srv.o.Hostname))
			s.flush()
			s.end = "shutdown"
			return
		}
		switch {
		case err == nil:
		case errors.Is(err, smtp.ErrLineTooLong):
			if s.protocolError(smtp.R(500, "5.5.6", "Command line too long (at most %d octets)", smtp.CommandLineLimit)) {
				return
			}
			continue
		case errors.Is(err, smtp.ErrBareLF), errors.Is(err, smtp.ErrBareCR):
			if s.protocolError(smtp.R(500, "5.5.2", "Syntax error: command lines must end with CRLF")) {
				return
			}
			continue
		default:
			s.ioError(err, "reading command")
			return
		}
		if err := s.command(line); err != nil {
			if errors.Is(err, errClose) {
				s.flush()
				return
			}
			s.ioError(err, "")
			return
		}
	}
}

// ioError logs why a connection ended.
func (s *session) ioError(err error, during string) {
	var ne net.Error
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
		s.end = "disconnect"
		if s.tx != nil {
			s.log.Info("client disconnected during a transaction", "during", during)
		}
	case errors.As(err, &ne) && ne.Timeout():
		s.end = "timeout"
		s.log.Info("timeout; closing", "during", during)
		s.reply(s.timeoutReply())
		s.flush()
	default:
		s.end = "error"
		s.log.Info("connection error", "during", during, "err", err)
	}
}

// reply queues a reply; it is written whole, with its batch, at flush.
func (s *session) reply(r smtp.Reply) {
	s.out = r.AppendWire(s.out)
}

// flush writes the queued replies in one write.
func (s *session) flush() bool {
	if len(s.out) == 0 {
		return true
	}
	s.conn.SetWriteDeadline(time.Now().Add(s.srv.o.Limits.CommandTimeout))
	_, err := s.conn.Write(s.out)
	s.out = s.out[:0]
	if err != nil {
		s.log.Info("write failed", "err", err)
		return false
	}
	return true
}

// protocolError queues a refusal and reports whether the session must end
// because the client made too many errors.
func (s *session) protocolError(r smtp.Reply) bool {
	s.errors++
	s.tarpit()
	s.reply(r)
	if s.errors >= s.srv.o.Limits.ErrorsPerSession {
		s.reply(smtp.R(421, "4.7.0", "%s too many errors; closing connection", s.srv.o.Hostname))
		s.flush()
		s.log.Info("too many errors; closing", "errors", s.errors)
		s.end = "errors"
		return true
	}
	return false
}

// command runs one command line. A returned error ends the session.
func (s *session) command(line string) error {
	if smtp.LooksLikeHTTP(line) {
		// Cross-protocol attack (ALPACA) or a confused browser.
		s.log.Warn("HTTP request on SMTP port; closing", "line", smtp.Printable(line))
		s.reply(smtp.R(554, "5.7.0", "This is an SMTP server, not HTTP; closing connection"))
		return errClose
	}
	cmd, err := smtp.ParseCommand(line)
	if err != nil {
		return s.refuse(smtp.R(500, "5.5.2", "Syntax error: command not recognized"))
	}
	if r, blocked := s.blockedReply(cmd.Verb); blocked {
		return s.refuse(r)
	}
	switch cmd.Verb {
	case "EHLO":
		return s.cmdHello(cmd.Arg, true)
	case "HELO":
		return s.cmdHello(cmd.Arg, false)
	case "MAIL":
		return s.cmdMail(cmd.Arg)
	case "RCPT":
		return s.cmdRcpt(cmd.Arg)
	case "DATA":
		return s.cmdData(cmd.Arg)
	case "BDAT":
		return s.cmdBdat(cmd.Arg)
	case "RSET":
		s.abortTx()
		s.reply(smtp.R(250, "2.0.0", "Ok"))
	case "NOOP":
		s.reply(smtp.R(250, "2.0.0", "Ok"))
	case "QUIT":
		s.end = "quit"
		s.reply(smtp.R(221, "2.0.0", "%s closing connection", s.srv.o.Hostname))
		return errClose
	case "VRFY":
		// RFC 5321 3.5.3: 252 neither confirms nor denies; no enumeration.
		s.reply(smtp.R(252, "2.5.0", "Cannot VRFY user; send mail and it will be delivered if the address exists"))
	case "EXPN":
		s.reply(smtp.R(502, "5.5.1", "EXPN is not available"))
	case "HELP":
		s.reply(smtp.R(214, "2.0.0", "See RFC 5321; commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY STARTTLS AUTH"))
	case "STARTTLS":
		return s.cmdStartTLS(cmd.Arg)
	case "AUTH":
		return s.cmdAuth(cmd.Arg)
	default:
		return s.refuse(smtp.R(500, "5.5.2", "Command not recognized"))
	}
	return nil
}

// refuse is protocolError for command handlers.
func (s *session) refuse(r smtp.Reply) error {
	if s.protocolError(r) {
		return errClose
	}
	return nil
}

func (s *session) canStartTLS() bool {
	return s.srv.o.TLS != nil && s.tls == nil
}

// canAuth: AUTH only on submission ports, and only over TLS — never on 25
// and never in clear text.
func (s *session) canAuth() bool {
	return s.srv.o.Auth != nil && s.role != RoleSMTP && s.tls != nil && s.authUser == ""
}

func (s *session) cmdHello(arg string, esmtp bool) error {
	arg = strings.TrimSpace(arg)
	if arg == "" {
		return s.refuse(smtp.R(501, "5.5.4", "Syntax: %s your.host.name", map[bool]string{true: "EHLO", false: "HELO"}[esmtp]))
	}
	if !smtp.IsHeloName(arg) {
		return s.refuse(smtp.R(501, "5.5.4", "Invalid host name %q: give your fully qualified domain name or an address literal", smtp.Printable(arg)))
	}
	if err := s.screenHelo(arg); err != nil {
		return s.policyError(err)
	}
	s.abortTx()
	s.helo, s.esmtp = arg, esmtp
	if !esmtp {
		s.reply(smtp.Reply{Code: 250, Lines: []string{s.srv.o.Hostname}})
		return nil
	}
	lines := []string{s.srv.o.Hostname + " greets " + arg,
		"PIPELINING",
		"SIZE " + strconv.FormatInt(s.srv.o.Limits.MessageSize, 10),
		"8BITMIME",
		"ENHANCEDSTATUSCODES",
		"SMTPUTF8",
		"CHUNKING",
		"DSN",
	}
	if s.canStartTLS() {
		lines = append(lines, "STARTTLS")
	}
	if s.canAuth() {
		lines = append(lines, "AUTH PLAIN LOGIN")
	}
	if s.tls != nil {
		lines = append(lines, "REQUIRETLS") // RFC 8689 2: only over TLS
	}
	s.reply(smtp.Reply{Code: 250, Lines: lines})
	return nil
}

func (s *session) client() policy.Client {
	return policy.Client{IP: s.ip, Submission: s.role != RoleSMTP, AuthUser: s.authUser, TLS: s.tls != nil}
}

func (s *session) cmdMail(arg string) error {
	if s.helo == "" {
		return s.refuse(smtp.R(503, "5.5.1", "Say EHLO first"))
	}
	if s.tx != nil {
		return s.refuse(smtp.R(503, "5.5.1", "Nested MAIL command: finish or RSET the current transaction"))
	}
	// SMTPUTF8 (RFC 6531) must be known before parsing a UTF-8 path.
	utf8 := false
	if i := strings.IndexByte(arg, '>'); i >= 0 {
		for _, f := range strings.Fields(arg[i+1:]) {
			if strings.EqualFold(f, "SMTPUTF8") {
				utf8 = true
			}
		}
	}
	pa, err := smtp.ParseMailArgs(arg, "FROM:", utf8)
	if err != nil {
		return s.refuse(pathError(err, "sender"))
	}
	if !pa.Addr.IsNull() && pa.Addr.Domain == "" {
		return s.refuse(smtp.R(501, "5.1.7", "Sender address needs a domain"))
	}
	env := spool.Envelope{From: pa.Addr.String(), SMTPUTF8: utf8}
	var declared int64 // SIZE=
	for _, p := range pa.Params {
		switch p.Key {
		case "SIZE":
			n, err := strconv.ParseInt(p.Value, 10, 64)
			if err != nil || n < 0 {
				return s.refuse(smtp.R(501, "5.5.4", "Bad SIZE value"))
			}
			declared = n
			if n > s.srv.o.Limits.MessageSize {
				s.srv.countRefused(s.role, "size")
				s.reply(smtp.R(552, "5.3.4", "Message size %d exceeds the limit of %d octets", n, s.srv.o.Limits.MessageSize))
				return nil
			}
		case "BODY":
			switch v := strings.ToUpper(p.Value); v {
			case "7BIT", "8BITMIME":
				env.Body = v
			default:
				return s.refuse(smtp.R(555, "5.5.4", "BODY=%s is not supported; use 7BIT or 8BITMIME", smtp.Printable(p.Value)))
			}
		case "SMTPUTF8":
			if !p.Bare {
				return s.refuse(smtp.R(555, "5.5.4", "SMTPUTF8 takes no value"))
			}
		case "RET":
			switch v := strings.ToUpper(p.Value); v {
			case "FULL", "HDRS":
				env.Ret = v
			default:
				return s.refuse(smtp.R(501, "5.5.4", "RET must be FULL or HDRS"))
			}
		case "ENVID":
			v, err := smtp.DecodeXtext(p.Value)
			if err != nil || len(v) > 100 {
				return s.refuse(smtp.R(501, "5.5.4", "Bad ENVID: it must be xtext of at most 100 characters (RFC 3461 4.4)"))
			}
			env.EnvID = v
		case "REQUIRETLS":
			// RFC 8689 3: only over TLS, where it is advertised; no value.
			if s.tls == nil {
				return s.refuse(smtp.R(530, "5.7.10", "REQUIRETLS needs TLS: issue STARTTLS first"))
			}
			if !p.Bare {
				return s.refuse(smtp.R(555, "5.5.4", "REQUIRETLS takes no value"))
			}
			env.RequireTLS = true
		case "AUTH":
			// RFC 4954 5: the original submitter; accepted and not trusted.
			if _, err := smtp.DecodeXtext(p.Value); err != nil && p.Value != "<>" {
				return s.refuse(smtp.R(501, "5.5.4", "Bad AUTH parameter"))
			}
		default:
			return s.refuse(smtp.R(555, "5.5.4", "Parameter %s is not supported", smtp.Printable(p.Key)))
		}
	}
	if !utf8 && env.SMTPUTF8 {
		env.SMTPUTF8 = false
	}
	if r, ok := s.srv.storageRoom(declared); !ok {
		s.log.Warn("spool file system nearly full: MAIL refused", "client", s.ip.String(), "reply", r.Error())
		s.srv.countRefused(s.role, "storage")
		s.reply(r)
		return nil
	}
	if err := s.srv.o.Policy.Sender(context.Background(), s.client(), pa.Addr); err != nil {
		s.log.Info("sender refused", "client", s.ip.String(), "from", smtp.Printable(env.From), "reply", err.Error())
		s.srv.countRefused(s.role, errReason(err))
		return s.policyError(err)
	}
	if err := s.admitMail(); err != nil {
		return s.policyError(err)
	}
	env.Arrival = s.srv.o.Now()
	env.ClientAddr = s.ip.String()
	env.Helo = s.helo
	env.AuthUser = s.authUser
	env.Listener = s.role.String()
	s.tx = &transaction{from: pa.Addr, env: env}
	s.reply(smtp.R(250, "2.1.0", "Sender ok"))
	return nil
}

// policyError replies with a policy decision. Anything that is not an
// smtp.Reply is an internal failure: 4xx, and the text stays in our log.
func (s *session) policyError(err error) error {
	var r smtp.Reply
	if !errors.As(err, &r) {
		s.log.Error("policy check failed", "err", err)
		r = smtp.Temporary
	}
	if r.Permanent() {
		return s.refuse(r)
	}
	s.reply(r)
	return nil
}

func pathError(err error, what string) smtp.Reply {
	switch {
	case errors.Is(err, smtp.ErrNeedSMTPUTF8):
		return smtp.R(553, "5.6.7", "Non-ASCII %s address needs the SMTPUTF8 parameter", what)
	case errors.Is(err, smtp.ErrPathTooLong):
		return smtp.R(501, "5.1.3", "The %s address is too long", what)
	}
	detail := strings.TrimPrefix(err.Error(), smtp.ErrPathSyntax.Error()+": ")
	code := "5.1.3"
	if what == "sender" {
		code = "5.1.7"
	}
	if strings.Contains(detail, "parameter") || strings.Contains(detail, "value") {
		code = "5.5.4"
	}
	return smtp.R(501, code, "Syntax error in %s: %s", what, detail)
}

func (s *session) cmdRcpt(arg string) error {
	if s.tx == nil {
		return s.refuse(smtp.R(503, "5.5.1", "Need MAIL before RCPT"))
	}
	pa, err := smtp.ParseMailArgs(arg, "TO:", s.tx.env.SMTPUTF8)
	if err != nil {
		return s.refuse(pathError(err, "recipient"))
	}
	if pa.Addr.IsNull() {
		return s.refuse(smtp.R(501, "5.1.3", "Empty recipient address"))
	}
	if len(s.tx.env.Recipients) >= s.srv.o.Limits.Recipients {
		// RFC 5321 4.5.3.1.10: 452, and the client sends the rest later.
		s.srv.countRcptRefused(s.role, "too_many_recipients")
		s.reply(smtp.R(452, "4.5.3", "Too many recipients; send the rest in another transaction"))
		return nil
	}
	rcpt := spool.Recipient{}
	for _, p := range pa.Params {
		switch p.Key {
		case "NOTIFY":
			v := strings.ToUpper(p.Value)
			if !validNotify(v) {
				return s.refuse(smtp.R(501, "5.5.4", "NOTIFY must be NEVER or a list of SUCCESS, FAILURE, DELAY"))
			}
			rcpt.Notify = v
		case "ORCPT":
			typ, val, ok := strings.Cut(p.Value, ";")
			dec, err := smtp.DecodeXtext(val)
			if !ok || typ == "" || err != nil || len(p.Value) > 500 {
				return s.refuse(smtp.R(501, "5.5.4", "Bad ORCPT: it must be addr-type;xtext (RFC 3461 4.2)"))
			}
			rcpt.ORcpt = strings.ToLower(typ) + ";" + dec
		default:
			return s.refuse(smtp.R(555, "5.5.4", "Parameter %s is not supported", smtp.Printable(p.Key)))
		}
	}
	addr, err := s.srv.o.Policy.Recipient(context.Background(), s.client(), pa.Addr)
	if err != nil {
		s.log.Info("recipient refused", "client", s.ip.String(), "from", smtp.Printable(s.tx.env.From), "rcpt", smtp.Printable(pa.Addr.String()), "reply", err.Error())
		s.srv.countRcptRefused(s.role, errReason(err))
		return s.policyError(err)
	}
	if err := s.admitRcpt(s.tx.env.From, addr); err != nil {
		return s.policyError(err)
	}
	rcpt.Addr = addr
	s.tx.env.Recipients = append(s.tx.env.Recipients, rcpt)
	s.reply(smtp.R(250, "2.1.5", "Recipient ok"))
	return nil
}

func validNotify(v string) bool {
	if v == "NEVER" {
		return true
	}
	seen := map[string]bool{}
	for _, f := range strings.Split(v, ",") {
		if f != "SUCCESS" && f != "FAILURE" && f != "DELAY" || seen[f] {
			return false
		}
		seen[f] = true
	}
	return len(seen) > 0
}

// beginData checks that a transaction can take message data and opens
// its spool file with our Received header at the top.
func (s *session) beginData(verb string) (smtp.Reply, bool) {
	if s.tx == nil {
		return smtp.R(503, "5.5.1", "Need MAIL and RCPT before %s", verb), false
	}
	if len(s.tx.env.Recipients) == 0 {
		return smtp.R(554, "5.5.1", "No valid recipients"), false
	}
	if s.tx.w != nil {
		return smtp.Reply{}, true
	}
	if r, ok := s.reserveData(); !ok {
		return r, false
	}
	w, err := s.srv.o.Spool.Create()
	if err != nil {
		s.log.Error("spool create failed", "err", err)
		s.releaseData()
		return storageReply(err), false
	}
	s.tx.w = w
	s.tx.dst = w
	if s.srv.o.DropHeader != nil {
		s.tx.filter = &message.HeaderFilter{W: w, Drop: s.srv.o.DropHeader}
		s.tx.dst = s.tx.filter
	}
	return smtp.Reply{}, true
}

func (s *session) cmdData(arg string) error {
	if arg != "" {
		return s.refuse(smtp.R(501, "5.5.4", "DATA takes no argument"))
	}
	if s.tx != nil && s.tx.bdat {
		return s.refuse(smtp.R(503, "5.5.1", "DATA cannot follow BDAT in one transaction"))
	}
	if r, ok := s.beginData("DATA"); !ok {
		return s.refuse(r)
	}
	s.reply(smtp.R(354, "", "End data with <CR><LF>.<CR><LF>"))
	if !s.flush() {
		return io.ErrClosedPipe
	}
	s.tc.timeout = s.srv.o.Limits.DataTimeout
	dr := smtp.NewDataReader(s.br, s.srv.o.Limits.MessageSize, s.srv.o.Limits.LineLength)
	s.startFloor()
	region := trace.StartRegion(context.Background(), regionData)
	_, err := bufpool.Copy(s.tx.dst, dr)
	region.End()
	if err == nil || !isNetErr(err) {
		s.stopFloor()
	}
	var r smtp.Reply
	switch {
	case err == nil:
		s.tx.size = dr.Size()
		r = s.commit()
	case errors.Is(err, smtp.ErrDataBareLF), errors.Is(err, smtp.ErrDataBareCR):
		// SMTP smuggling defence: never accept ambiguous line endings.
		r = smtp.R(550, "5.6.11", "Message refused: bare CR or LF in message data; lines must end with CRLF (RFC 5321 2.3.8)")
	case errors.Is(err, smtp.ErrDataTooLarge):
		r = smtp.R(552, "5.3.4", "Message exceeds the size limit of %d octets", s.srv.o.Limits.MessageSize)
	case errors.Is(err, smtp.ErrDataLongLine):
		r = smtp.R(550, "5.6.0", "Message refused: a line is longer than %d octets (RFC 5321 4.5.3.1.6); wrap lines or use quoted-printable", s.srv.o.Limits.LineLength)
	default:
		var ne net.Error
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.As(err, &ne) || errors.Is(err, net.ErrClosed) {
			s.log.Info("message not received: connection lost during DATA", "err", err)
			s.abortTx()
			return err
		}
		// The spool failed while the data kept coming: read on to stay in
		// sync, then ask the client to retry.
		s.log.Error("spool write failed", "err", err)
		io.Copy(io.Discard, dr)
		s.stopFloor()
		r = storageReply(err)
	}
	if !r.Positive() {
		s.logRefused(r)
		s.abortTx()
	}
	s.reply(r)
	return nil
}

// cmdBdat handles RFC 3030 chunks. The chunk's octets are always read
// first, whatever the reply, so the dialog stays in sync.
func (s *session) cmdBdat(arg string) error {
	f := strings.Fields(arg)
	last := len(f) == 2 && strings.EqualFold(f[1], "LAST")
	n, err := strconv.ParseInt(firstOr(f, ""), 10, 64)
	if err != nil || n < 0 || len(f) > 2 || len(f) == 2 && !last {
		// Without a valid size the chunk cannot be skipped: the only safe
		// answer is to end the session.
		s.reply(smtp.R(501, "5.5.4", "Syntax: BDAT size [LAST]; closing connection"))
		return errClose
	}
	s.tc.timeout = s.srv.o.Limits.DataTimeout
	var refusal smtp.Reply
	var w io.Writer = io.Discard
	if r, ok := s.beginData("BDAT"); !ok {
		refusal = r
	} else if s.tx.failed != nil {
		refusal = smtp.R(503, "5.5.1", "Earlier chunk refused; RSET and start again")
	} else {
		s.tx.bdat = true
		if s.tx.size+n > s.srv.o.Limits.MessageSize {
			s.tx.failed = smtp.ErrDataTooLarge
			refusal = smtp.R(552, "5.3.4", "Message exceeds the size limit of %d octets", s.srv.o.Limits.MessageSize)
		} else {
			w = s.tx.dst
		}
	}
	s.startFloor()
	region := trace.StartRegion(context.Background(), regionData)
	copied, err := bufpool.CopyN(w, s.br, n)
	region.End()
	if err == nil || !isNetErr(err) {
		s.stopFloor()
	}
	if err != nil {
		if copied < n && (errors.Is(err, io.EOF) || isNetErr(err)) {
			s.log.Info("message not received: connection lost during BDAT", "err", err)
			s.abortTx()
			return err
		}
		s.log.Error("spool write failed", "err", err)
		bufpool.CopyN(io.Discard, s.br, n-copied)
		s.stopFloor()
		refusal = storageReply(err)
		if s.tx != nil {
			s.tx.failed = err
		}
	}
	if refusal.Code != 0 {
		if s.tx != nil && refusal.Code != 503 {
			s.logRefused(refusal)
		}
		if s.tx != nil && last {
			s.abortTx()
		}
		return s.refuse(refusal)
	}
	s.tx.size += n
	if !last {
		s.reply(smtp.R(250, "2.0.0", "%d octets received", n))
		return nil
	}
	r := s.commit()
	if !r.Positive() {
		s.logRefused(r)
		s.abortTx()
	}
	s.reply(r)
	return nil
}

func isNetErr(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, net.ErrClosed)
}

func firstOr(f []string, d string) string {
	if len(f) > 0 {
		return f[0]
	}
	return d
}

// Execution-trace regions around the two parts of a message's way to its
// 250: reading its data (after the 354, or each BDAT chunk) and
// committing it. With a Go execution trace running (/debug/pprof/trace on
// the metrics listener when POSTHORN_PPROF=1), `go tool trace` splits
// each region's time into running, waiting for the network, for a lock,
// in system calls and for a CPU ("User-defined regions"): the profile
// behind bench/results' notes on the saturated p99. Without a trace a
// region costs one check.
const (
	regionData   = "smtp.data"
	regionCommit = "smtp.commit"
)

// commit checks the message, makes it durable and hands it to the
// queue; only then is the client told 250.
func (s *session) commit() smtp.Reply {
	start := time.Now() // the end of the message data
	defer trace.StartRegion(context.Background(), regionCommit).End()
	tx := s.tx
	env := tx.env
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if tx.filter != nil {
		if err := tx.filter.Close(); err != nil {
			s.log.Error("spool write failed", "id", tx.w.ID(), "err", err)
			return storageReply(err)
		}
	}
	if tx.w.StartsFolded() {
		// The Received and Authentication-Results fields we put in front
		// would take this line into their values: a sender could write
		// into our Authentication-Results.
		return smtp.R(550, "5.6.0", "Message refused: it begins with a folded line (space or tab), not a header field (RFC 5322 2.2.3)")
	}
	info := message.ReceivedInfo{
		Helo: s.helo, ClientIP: s.ip.String(), By: s.srv.o.Hostname, ESMTP: s.esmtp,
		TLS: s.tls, Auth: s.authUser != "", UTF8: env.SMTPUTF8, ID: tx.w.ID(), Date: s.srv.o.Now(),
	}
	if len(env.Recipients) == 1 {
		info.For = env.Recipients[0].Addr
	}
	env.Prepend = string(message.Received(info))
	if s.srv.o.Check != nil {
		m := &Message{Role: s.role, ClientIP: s.ip, Helo: s.helo, From: env.From, AuthUser: s.authUser, TLS: s.tls, Data: tx.w.Written}
		for _, r := range env.Recipients {
			m.Recipients = append(m.Recipients, r.Addr)
		}
		if err := s.srv.o.Check(ctx, m); err != nil {
			var r smtp.Reply
			if errors.As(err, &r) {
				return r
			}
			s.log.Error("message check failed", "id", tx.w.ID(), "err", err)
			if r := storageReply(err); r.Code == 452 {
				return r // the disk filled up as the message was flushed to be checked
			}
			return smtp.R(451, "4.3.0", "Cannot check the message right now; please try again later")
		}
		env.Prepend += m.Prepend
		env.Quarantine = m.Quarantine
	}
	if err := tx.w.Commit(ctx, &env); err != nil {
		s.log.Error("spool commit failed; message not accepted", "id", tx.w.ID(), "err", err)
		return storageReply(err)
	}
	s.releaseData()
	s.tx = nil
	s.messages++
	s.srv.countAccepted(s.role, env.Size, time.Since(start))
	attrs := []any{"id", env.ID, "client", s.ip.String(), "from", env.From, "rcpts", len(env.Recipients), "size", env.Size, "role", s.role.String()}
	if s.tls != nil {
		attrs = append(attrs, "tls", tls.VersionName(s.tls.Version))
	}
	if s.authUser != "" {
		attrs = append(attrs, "user", s.authUser)
	}
	if env.Quarantine {
		attrs = append(attrs, "quarantine", true)
	}
	s.log.Info("message accepted", attrs...)
	if s.srv.o.Queued != nil {
		s.srv.o.Queued(&env)
	}
	return smtp.R(250, "2.0.0", "Ok: queued as %s", env.ID)
}

func (s *session) logRefused(r smtp.Reply) {
	if s.tx == nil {
		return
	}
	s.srv.countRefused(s.role, refusalReason(r))
	s.log.Info("message refused", "client", s.ip.String(), "from", smtp.Printable(s.tx.env.From),
		"rcpts", len(s.tx.env.Recipients), "reply", r.Error())
}

// abortTx drops the transaction and any spool file it started.
func (s *session) abortTx() {
	s.releaseData()
	if s.tx != nil && s.tx.w != nil {
		s.tx.w.Abort()
	}
	s.tx = nil
}

func (s *session) cmdStartTLS(arg string) error {
	if arg != "" {
		return s.refuse(smtp.R(501, "5.5.4", "STARTTLS takes no argument"))
	}
	if !s.canStartTLS() {
		return s.refuse(smtp.R(503, "5.5.1", "TLS not available or already active"))
	}
	s.reply(smtp.R(220, "2.0.0", "Ready to start TLS"))
	if !s.flush() {
		return io.ErrClosedPipe
	}
	// CVE-2011-0411: whatever the client pipelined after STARTTLS arrived
	// in clear text and must not be executed inside the TLS session.
	if n := s.br.Buffered(); n > 0 {
		s.log.Warn("discarding data pipelined after STARTTLS", "bytes", n)
		s.br.Discard(n)
	}
	if !s.handshake() {
		return errClose
	}
	return nil
}

// handshake runs the server side of TLS on the connection and resets the
// session to its initial state (RFC 3207 4.2).
func (s *session) handshake() bool {
	tconn := tls.Server(s.conn, s.srv.o.TLS)
	ctx, cancel := context.WithTimeout(context.Background(), s.srv.o.Limits.CommandTimeout)
	defer cancel()
	if err := tconn.HandshakeContext(ctx); err != nil {
		s.log.Info("TLS handshake failed", "err", err)
		return false
	}
	st := tconn.ConnectionState()
	s.tls = &st
	s.conn = tconn
	s.tc.Conn = tconn
	s.br.Reset(s.tc)
	s.helo, s.esmtp, s.authUser = "", false, ""
	s.abortTx()
	s.log.Info("TLS established", "version", tls.VersionName(st.Version), "cipher", tls.CipherSuiteName(st.CipherSuite))
	return true
}

// shutdown asks the session to end at the next command boundary; an idle
// session blocked reading a command is woken at once.
func (s *session) shutdown() {
	s.closing.Store(true)
	if s.idle.Load() {
		s.tc.wake()
	}
}

func (s *session) cmdAuth(arg string) error {
	if !s.canAuth() {
		if s.authUser != "" {
			return s.refuse(smtp.R(503, "5.5.1", "Already authenticated"))
		}
		if s.role != RoleSMTP && s.tls == nil && s.srv.o.TLS != nil {
			return s.refuse(smtp.R(530, "5.7.0", "Must issue STARTTLS first: no AUTH in clear text"))
		}
		return s.refuse(smtp.R(503, "5.5.1", "AUTH not available on this port; use the submission port"))
	}
	if s.tx != nil {
		return s.refuse(smtp.R(503, "5.5.1", "AUTH not allowed during a mail transaction"))
	}
	if s.srv.authBlocked(clientKey(s.ip)) {
		s.reply(smtp.R(421, "4.7.0", "Too many failed logins from your address; try again later"))
		return errClose
	}
	mech, initial, hasInitial := strings.Cut(arg, " ")
	mech = strings.ToUpper(mech)
	var tempErr error
	sasl, err := auth.NewSASL(mech, func(user, pass string) bool {
		ok, err := s.srv.o.Auth.Authenticate(context.Background(), user, pass)
		if err != nil {
			tempErr = err
		}
		return ok
	})
	if err != nil {
		return s.refuse(smtp.R(504, "5.5.4", "Unrecognized authentication mechanism; use PLAIN or LOGIN"))
	}
	var resp []byte
	if hasInitial {
		resp = []byte(initial)
	}
	for {
		challenge, done, err := sasl.Next(resp)
		if done {
			return s.authResult(mech, sasl.User(), err, tempErr)
		}
		s.reply(smtp.Reply{Code: 334, Lines: []string{string(challenge)}})
		if !s.flush() {
			return io.ErrClosedPipe
		}
		s.tc.timeout = s.srv.o.Limits.CommandTimeout
		line, err := smtp.ReadCommandLine(s.br, smtp.CommandLineLimit)
		switch {
		case err == nil:
		case errors.Is(err, smtp.ErrLineTooLong), errors.Is(err, smtp.ErrBareLF), errors.Is(err, smtp.ErrBareCR):
			line = "!" // not base64: the exchange fails as malformed
		default:
			return err
		}
		resp = []byte(line)
	}
}

// authResult answers the end of a SASL exchange (RFC 4954 6).
func (s *session) authResult(mech, user string, err, tempErr error) error {
	switch {
	case err == nil:
		s.authUser = user
		s.log.Info("authenticated", "user", user, "mech", mech)
		s.reply(smtp.R(235, "2.7.0", "Authentication successful"))
		return nil
	case tempErr != nil:
		s.log.Error("account lookup failed", "err", tempErr)
		s.reply(smtp.R(454, "4.7.0", "Temporary authentication failure; try again later"))
		return nil
	case errors.Is(err, auth.ErrCanceled):
		return s.refuse(smtp.R(501, "5.7.0", "Authentication cancelled"))
	case errors.Is(err, auth.ErrBadBase64), errors.Is(err, auth.ErrMalformed):
		return s.refuse(smtp.R(501, "5.5.2", "Cannot decode the authentication response"))
	}
	// The password never reaches a log; failures count against the IP.
	s.log.Warn("authentication failed", "client", s.ip.String(), "mech", mech)
	if s.srv.authFailed(clientKey(s.ip)) {
		s.reply(smtp.R(535, "5.7.8", "Authentication credentials invalid"))
		s.reply(smtp.R(421, "4.7.0", "Too many failed logins from your address; try again later"))
		return errClose
	}
	return s.refuse(smtp.R(535, "5.7.8", "Authentication credentials invalid"))
}

// timeoutConn sets a read deadline before every read, so each stage of the
// dialog has its own timeout (RFC 5321 4.5.3.2) rather than one for the
// whole transfer; wake makes a blocked read return at once.
type timeoutConn struct {
	net.Conn
	timeout time.Duration
	woken   atomic.Bool
	floor   *dataFloor // admission.go: minimum data rate during DATA/BDAT
}

func (c *timeoutConn) Read(p []byte) (int, error) {
	if c.woken.Load() {
		return 0, os.ErrDeadlineExceeded
	}
	if c.timeout > 0 {
		c.Conn.SetReadDeadline(c.floor.deadline(time.Now().Add(c.timeout)))
	}
	n, err := c.Conn.Read(p)
	c.floor.count(n)
	return n, err
}

func (c *timeoutConn) wake() {
	c.woken.Store(true)
	c.Conn.SetReadDeadline(time.Now())
}
