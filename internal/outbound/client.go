// Package outbound delivers queued mail to other mail servers: MX resolution, the SMTP client, connection reuse and TLS policy.
package outbound

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/posthorn/posthorn/internal/bufpool"
	"github.com/posthorn/posthorn/internal/smtp"
)

// Timeouts bound each stage of a client session. RFC 5321 4.5.3.2 gives
// the minimum a client should wait at each stage; those are the defaults.
// Zero fields take the default.
type Timeouts struct {
	Connect   time.Duration // TCP connect; default 30s (Postfix smtp_connect_timeout)
	Greeting  time.Duration // the 220 greeting; 4.5.3.2.1: 5m
	Command   time.Duration // EHLO, STARTTLS and the TLS handshake, AUTH, RSET, QUIT; default 5m
	Mail      time.Duration // MAIL; 4.5.3.2.2: 5m
	Rcpt      time.Duration // RCPT; 4.5.3.2.3: 5m
	DataInit  time.Duration // the 354 to DATA; 4.5.3.2.4: 2m
	DataBlock time.Duration // each write of message data; 4.5.3.2.5: 3m
	DataFinal time.Duration // the reply after the final dot; 4.5.3.2.6: 10m
}

func (t *Timeouts) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&t.Connect, 30*time.Second)
	def(&t.Greeting, 5*time.Minute)
	def(&t.Command, 5*time.Minute)
	def(&t.Mail, 5*time.Minute)
	def(&t.Rcpt, 5*time.Minute)
	def(&t.DataInit, 2*time.Minute)
	def(&t.DataBlock, 3*time.Minute)
	def(&t.DataFinal, 10*time.Minute)
}

// Extensions are the service extensions a server announced in its EHLO
// (or LHLO) reply.
type Extensions struct {
	ESMTP               bool  // EHLO worked (false after the HELO fallback)
	Pipelining          bool  // RFC 2920
	Size                bool  // RFC 1870
	MaxSize             int64 // the SIZE limit; 0 when none was given
	EightBitMIME        bool  // RFC 6152
	SMTPUTF8            bool  // RFC 6531
	DSN                 bool  // RFC 3461
	StartTLS            bool  // RFC 3207
	Chunking            bool  // RFC 3030
	EnhancedStatusCodes bool  // RFC 2034
	RequireTLS          bool  // RFC 8689
	Auth                []string
}

// parseExtensions reads an EHLO reply: the first line is the server's
// name, each further line a keyword and its parameters (RFC 5321 4.1.1.1).
func parseExtensions(r smtp.Reply) Extensions {
	ext := Extensions{ESMTP: true}
	for _, l := range r.Lines[1:] {
		f := strings.Fields(l)
		if len(f) == 0 {
			continue
		}
		kw := strings.ToUpper(f[0])
		args := f[1:]
		// Some old servers write "AUTH=LOGIN PLAIN".
		if k, v, ok := strings.Cut(kw, "="); ok && k == "AUTH" {
			kw = k
			args = append([]string{v}, args...)
		}
		switch kw {
		case "PIPELINING":
			ext.Pipelining = true
		case "SIZE":
			ext.Size = true
			if len(args) > 0 {
				if n, err := strconv.ParseInt(args[0], 10, 64); err == nil && n > 0 {
					ext.MaxSize = n
				}
			}
		case "8BITMIME":
			ext.EightBitMIME = true
		case "SMTPUTF8":
			ext.SMTPUTF8 = true
		case "DSN":
			ext.DSN = true
		case "STARTTLS":
			ext.StartTLS = true
		case "CHUNKING":
			ext.Chunking = true
		case "ENHANCEDSTATUSCODES":
			ext.EnhancedStatusCodes = true
		case "REQUIRETLS":
			ext.RequireTLS = true
		case "AUTH":
			for _, a := range args {
				ext.Auth = append(ext.Auth, strings.ToUpper(a))
			}
		}
	}
	return ext
}

// ClientOptions configure a Client.
type ClientOptions struct {
	// Hostname is our name, sent in EHLO/HELO/LHLO.
	Hostname string
	// LMTP speaks RFC 2033: LHLO instead of EHLO and one reply per
	// accepted recipient after the message data.
	LMTP     bool
	Timeouts Timeouts
	// NoChunking sends DATA even to a server that offers CHUNKING: one
	// that answered BDAT as an unknown command (ErrBDATUnknown).
	NoChunking bool
}

// Errors of the client besides replies (*ReplyError) and network errors.
var (
	// ErrResponseInjection: the server sent more bytes after its 220 to
	// STARTTLS, before the TLS handshake. They are discarded unread and
	// the connection is given up (CVE-2021-38371, RFC 3207 4.2 / 5).
	ErrResponseInjection = errors.New("outbound: data after the STARTTLS reply before the TLS handshake (response injection)")
	// ErrBroken: an earlier error left the connection unusable.
	ErrBroken = errors.New("outbound: connection unusable after an earlier error")
	// ErrBadCommand: a command argument would contain CR or LF.
	ErrBadCommand = errors.New("outbound: command argument contains CR or LF")
	// ErrBDATUnknown: the server offered CHUNKING but answered BDAT as a
	// command it does not know (500, 502, 504), so it took the chunk's
	// octets for commands and the dialogue is out of step: the
	// connection is given up. The message was not taken; send it again
	// with DATA (ClientOptions.NoChunking).
	ErrBDATUnknown = errors.New("outbound: the server offers CHUNKING but does not know BDAT")
	// ErrStale: the RSET that Send put in front of a transaction on a
	// reused connection (ResetFirst) got no 250. Nothing of the
	// transaction took effect: it may be tried again on a new connection.
	ErrStale = errors.New("outbound: reused connection no longer usable")
)

// ReplyError is a reply that refused what the client asked.
type ReplyError struct {
	Command string // "EHLO", "STARTTLS", "AUTH", "greeting", ...
	Reply   smtp.Reply
}

func (e *ReplyError) Error() string {
	return fmt.Sprintf("%s (in reply to %s)", e.Reply.Error(), e.Command)
}

// TLSError is a failed TLS handshake after STARTTLS.
type TLSError struct{ Err error }

func (e *TLSError) Error() string { return "TLS handshake failed: " + e.Err.Error() }
func (e *TLSError) Unwrap() error { return e.Err }

// Client is one SMTP or LMTP client connection. It is not safe for
// concurrent use. Any network or protocol error makes it unusable (see
// Usable); a refusing reply does not.
type Client struct {
	conn     net.Conn
	br       *bufio.Reader
	bw       *bufio.Writer
	o        ClientOptions
	greeting smtp.Reply
	ext      Extensions
	tlsState *tls.ConnectionState
	broken   error
	// writeTimeout, when set, is applied before each write to the
	// connection: the data block timeout.
	writeTimeout time.Duration
	created      time.Time
	resetFirst   bool // the next Send begins with RSET (ResetFirst)
}

// connWriter writes to the client's current connection (which changes
// at STARTTLS), refreshing the write deadline when a block timeout is on.
type connWriter struct{ c *Client }

func (w connWriter) Write(p []byte) (int, error) {
	if w.c.writeTimeout > 0 {
		w.c.conn.SetWriteDeadline(time.Now().Add(w.c.writeTimeout))
	}
	return w.c.conn.Write(p)
}

// Dial connects to addr on network ("tcp", "unix") and reads the
// greeting. A greeting that is not 2xx is returned as a *ReplyError with
// the Client, so the caller can QUIT politely.
func Dial(ctx context.Context, network, addr string, o ClientOptions) (*Client, error) {
	o.Timeouts.setDefaults()
	d := net.Dialer{Timeout: o.Timeouts.Connect}
	conn, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return NewClient(ctx, conn, o)
}

// NewClient takes over conn and reads the greeting (RFC 5321 3.1).
func NewClient(ctx context.Context, conn net.Conn, o ClientOptions) (*Client, error) {
	o.Timeouts.setDefaults()
	c := &Client{conn: conn, o: o, created: time.Now()}
	c.br = bufio.NewReader(conn)
	c.bw = bufio.NewWriter(connWriter{c})
	r, err := c.read(ctx, o.Timeouts.Greeting)
	if err != nil {
		conn.Close()
		return nil, err
	}
	c.greeting = r
	if r.Code != 220 {
		return c, &ReplyError{Command: "greeting", Reply: r}
	}
	return c, nil
}

// Greeting is the server's greeting.
func (c *Client) Greeting() smtp.Reply { return c.greeting }

// Extensions are those announced in the last EHLO/LHLO reply.
func (c *Client) Extensions() Extensions { return c.ext }

// TLS returns the state of the TLS connection, or nil before STARTTLS.
func (c *Client) TLS() *tls.ConnectionState { return c.tlsState }

// RemoteAddr is the server's address.
func (c *Client) RemoteAddr() net.Addr { return c.conn.RemoteAddr() }

// Usable reports whether the connection can still carry commands.
func (c *Client) Usable() bool { return c.broken == nil }

// Err returns the error that made the connection unusable, or nil.
func (c *Client) Err() error { return c.broken }

// Close closes the connection without QUIT.
func (c *Client) Close() error {
	if c.broken == nil {
		c.broken = ErrBroken
	}
	return c.conn.Close()
}

// fail records the first error that breaks the connection and closes it.
func (c *Client) fail(err error) error {
	if c.broken == nil {
		c.broken = err
		c.conn.Close()
	}
	return err
}

// stage sets the deadline for one exchange and makes ctx's end cut it
// short. The returned function undoes the latter.
func (c *Client) stage(ctx context.Context, d time.Duration) func() bool {
	c.conn.SetDeadline(time.Now().Add(d))
	stop := context.AfterFunc(ctx, func() { c.conn.SetDeadline(time.Unix(1, 0)) })
	if ctx.Err() != nil {
		c.conn.SetDeadline(time.Unix(1, 0))
	}
	return stop
}

// ctxErr prefers the context's error over the timeout it caused.
func ctxErr(ctx context.Context, err error) error {
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	return err
}

// read reads one reply within d.
func (c *Client) read(ctx context.Context, d time.Duration) (smtp.Reply, error) {
	if c.broken != nil {
		return smtp.Reply{}, c.broken
	}
	stop := c.stage(ctx, d)
	defer stop()
	r, err := smtp.ReadReply(c.br)
	if err != nil {
		return r, c.fail(ctxErr(ctx, err))
	}
	if r.Code == 421 {
		// RFC 5321 3.8: the server is closing the connection; the reply
		// stands, the connection does not.
		c.fail(&ReplyError{Command: "any command", Reply: r})
	}
	return r, nil
}

// queue buffers one command line.
func (c *Client) queue(line string) error {
	if strings.ContainsAny(line, "\r\n") {
		return ErrBadCommand
	}
	c.bw.WriteString(line)
	c.bw.WriteString("\r\n")
	return nil
}

// flush sends what is buffered within d.
func (c *Client) flush(ctx context.Context, d time.Duration) error {
	if c.broken != nil {
		return c.broken
	}
	stop := c.stage(ctx, d)
	defer stop()
	if err := c.bw.Flush(); err != nil {
		return c.fail(ctxErr(ctx, err))
	}
	return nil
}

// cmd sends one command and reads its reply; d bounds both.
func (c *Client) cmd(ctx context.Context, d time.Duration, line string) (smtp.Reply, error) {
	if c.broken != nil {
		return smtp.Reply{}, c.broken
	}
	if err := c.queue(line); err != nil {
		return smtp.Reply{}, err
	}
	if err := c.flush(ctx, d); err != nil {
		return smtp.Reply{}, err
	}
	return c.read(ctx, d)
}

// Hello sends EHLO (LHLO for LMTP) and falls back to HELO when an SMTP
// server refuses EHLO with a 5xx (RFC 5321 4.1.4).
func (c *Client) Hello(ctx context.Context) error {
	verb := "EHLO"
	if c.o.LMTP {
		verb = "LHLO"
	}
	r, err := c.cmd(ctx, c.o.Timeouts.Command, verb+" "+c.o.Hostname)
	if err != nil {
		return err
	}
	if r.Code == 250 {
		c.ext = parseExtensions(r)
		return nil
	}
	if !r.Permanent() || c.o.LMTP {
		return &ReplyError{Command: verb, Reply: r}
	}
	r, err = c.cmd(ctx, c.o.Timeouts.Command, "HELO "+c.o.Hostname)
	if err != nil {
		return err
	}
	if r.Code != 250 {
		return &ReplyError{Command: "HELO", Reply: r}
	}
	c.ext = Extensions{}
	return nil
}

// StartTLS runs STARTTLS, the handshake with cfg, and EHLO again (RFC
// 3207 4.2). A refusing reply leaves the clear-text connection usable; a
// failed handshake (*TLSError) or bytes sent after the 220
// (ErrResponseInjection) do not.
func (c *Client) StartTLS(ctx context.Context, cfg *tls.Config) error {
	r, err := c.cmd(ctx, c.o.Timeouts.Command, "STARTTLS")
	if err != nil {
		return err
	}
	if r.Code != 220 {
		return &ReplyError{Command: "STARTTLS", Reply: r}
	}
	// CVE-2021-38371: anything already buffered was sent before the
	// handshake, so a man in the middle may have put it there to be read
	// as replies inside TLS. Never read it; give up the connection.
	if n := c.br.Buffered(); n > 0 {
		c.br.Discard(n)
		return c.fail(ErrResponseInjection)
	}
	tc := tls.Client(c.conn, cfg)
	stop := c.stage(ctx, c.o.Timeouts.Command)
	err = tc.HandshakeContext(ctx)
	stop()
	if err != nil {
		return c.fail(&TLSError{Err: ctxErr(ctx, err)})
	}
	st := tc.ConnectionState()
	c.conn, c.tlsState = tc, &st
	c.br.Reset(tc)
	c.ext = Extensions{}
	return c.Hello(ctx)
}

// Auth authenticates with PLAIN when offered, else LOGIN (RFC 4954,
// RFC 4616). Neither the credentials nor the exchanged payloads are ever
// put in an error or a log.
func (c *Client) Auth(ctx context.Context, user, password string) error {
	has := func(m string) bool {
		for _, a := range c.ext.Auth {
			if a == m {
				return true
			}
		}
		return false
	}
	t := c.o.Timeouts.Command
	switch {
	case has("PLAIN"):
		ir := base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + password))
		r, err := c.cmd(ctx, t, "AUTH PLAIN "+ir)
		if err != nil {
			return err
		}
		if r.Code == 334 { // a server that does not take the initial response
			if r, err = c.cmd(ctx, t, ir); err != nil {
				return err
			}
		}
		if r.Code != 235 {
			return &ReplyError{Command: "AUTH", Reply: r}
		}
		return nil
	case has("LOGIN"):
		r, err := c.cmd(ctx, t, "AUTH LOGIN")
		for _, s := range []string{user, password} {
			if err != nil {
				return err
			}
			if r.Code != 334 {
				return &ReplyError{Command: "AUTH", Reply: r}
			}
			r, err = c.cmd(ctx, t, base64.StdEncoding.EncodeToString([]byte(s)))
		}
		if err != nil {
			return err
		}
		if r.Code != 235 {
			return &ReplyError{Command: "AUTH", Reply: r}
		}
		return nil
	}
	return fmt.Errorf("outbound: the server offers no SASL mechanism we speak (PLAIN, LOGIN); it offers %q", strings.Join(c.ext.Auth, " "))
}

// Reset sends RSET (RFC 5321 4.1.1.5); it also tells whether a cached
// connection is still alive.
func (c *Client) Reset(ctx context.Context) error {
	r, err := c.cmd(ctx, c.o.Timeouts.Command, "RSET")
	if err != nil {
		return err
	}
	if r.Code != 250 {
		return c.fail(&ReplyError{Command: "RSET", Reply: r})
	}
	return nil
}

// ResetFirst prepares a connection taken from the pool for its next
// transaction. With PIPELINING the next Send puts an RSET in front of its
// MAIL, in the same write, and reports ErrStale when the connection turns
// out to be dead or refuses the RSET: one round trip for both the check
// and the transaction. Without PIPELINING it sends RSET now (Reset).
func (c *Client) ResetFirst(ctx context.Context) error {
	if !c.ext.Pipelining {
		return c.Reset(ctx)
	}
	c.resetFirst = true
	return nil
}

// Quit sends QUIT, waits for the reply and closes the connection.
func (c *Client) Quit(ctx context.Context) error {
	var err error
	if c.broken == nil {
		_, err = c.cmd(ctx, c.o.Timeouts.Command, "QUIT")
	}
	c.Close()
	return err
}

// Message is one mail transaction.
type Message struct {
	From   string   // reverse-path without <>; "" is the null sender
	Params []string // MAIL parameters, e.g. "SIZE=1234", "BODY=8BITMIME"
	Rcpts  []Rcpt
	// Body is the message; line endings become CRLF and leading dots are
	// doubled on the way (smtp.DataWriter).
	Body io.Reader
}

// Rcpt is one recipient with its RCPT parameters.
type Rcpt struct {
	Addr   string
	Params []string // e.g. "NOTIFY=FAILURE", "ORCPT=rfc822;x+40y"
}

// Response is the final reply about one recipient and the command it
// answered ("MAIL FROM", "RCPT TO", "DATA", "BDAT", or EndOfData or
// BDATLast: see Final). Reply.Code is 0 when no reply came: Send's error
// says why.
type Response struct {
	Command string
	Reply   smtp.Reply
}

// Send runs one transaction: MAIL, RCPT for each recipient and DATA
// (all in one write when the server offers PIPELINING, RFC 2920), then
// the message; to an SMTP server that also offers CHUNKING, MAIL, the
// RCPTs and the message in BDAT chunks instead, a message of up to 64 KiB
// in the same write (sendChunks). It returns one Response per recipient,
// in order. A refusing reply is not an error; the error is about the
// connection (network, timeout, protocol) and then the recipients without
// a reply have Code 0. After Send the connection is ready for another
// transaction, unless it is no longer Usable.
func (c *Client) Send(ctx context.Context, m *Message) ([]Response, error) {
	res := make([]Response, len(m.Rcpts))
	if c.broken != nil {
		return res, c.broken
	}
	mail := "MAIL FROM:<" + m.From + ">"
	for _, p := range m.Params {
		mail += " " + p
	}
	lines := []string{mail}
	for _, r := range m.Rcpts {
		l := "RCPT TO:<" + r.Addr + ">"
		for _, p := range r.Params {
			l += " " + p
		}
		lines = append(lines, l)
	}
	for _, l := range lines {
		if strings.ContainsAny(l, "\r\n") {
			return res, ErrBadCommand
		}
	}
	to := c.o.Timeouts
	ok := func(r smtp.Reply) bool { return r.Code/100 == 2 }
	all := func(cmd string, r smtp.Reply) {
		for i := range res {
			if res[i].Reply.Code == 0 || ok(res[i].Reply) {
				res[i] = Response{Command: cmd, Reply: r}
			}
		}
	}

	if c.ext.Pipelining && c.ext.Chunking && !c.o.LMTP && !c.o.NoChunking {
		return c.sendChunks(ctx, m, lines, res)
	}

	var mailReply, dataReply smtp.Reply
	accepted := 0
	if c.ext.Pipelining {
		// DATA may end a group and RSET may stand anywhere in one (RFC
		// 2920 3.1): one round trip up to the 354.
		resetFirst := c.queueEnvelope(lines)
		c.queue("DATA")
		r, n, err := c.envelopeReplies(ctx, resetFirst, res)
		if err != nil {
			return res, err
		}
		mailReply, accepted = r, n
		if dataReply, err = c.read(ctx, to.DataInit); err != nil {
			return res, err
		}
		if !ok(mailReply) || accepted == 0 {
			if !ok(mailReply) {
				// The RCPT replies are 503s about the missing MAIL;
				// the MAIL reply is the one that says why.
				for i := range res {
					res[i] = Response{Command: "MAIL FROM", Reply: mailReply}
				}
			}
			if dataReply.Code == 354 {
				// A server that says go ahead with nobody to deliver
				// to gets an empty message, which it cannot deliver
				// (RFC 2920 3.1); its reply does not matter.
				return res, c.endEmptyData(ctx)
			}
			if !ok(mailReply) {
				return res, nil
			}
		}
	} else {
		r, err := c.cmd(ctx, to.Mail, lines[0])
		if err != nil {
			return res, err
		}
		mailReply = r
		if !ok(r) {
			all("MAIL FROM", r)
			return res, nil
		}
		for i := range m.Rcpts {
			r, err := c.cmd(ctx, to.Rcpt, lines[i+1])
			if err != nil {
				return res, err
			}
			res[i] = Response{Command: "RCPT TO", Reply: r}
			if ok(r) {
				accepted++
			}
		}
	}
	if accepted == 0 {
		return res, c.Reset(ctx)
	}

	r := dataReply
	if !c.ext.Pipelining {
		var err error
		if r, err = c.cmd(ctx, to.DataInit, "DATA"); err != nil {
			return res, err
		}
	}
	if r.Code/100 == 2 || r.Code/100 == 3 && r.Code != 354 {
		// Neither go-ahead nor refusal: the dialog is out of step.
		return res, c.fail(fmt.Errorf("outbound: unexpected reply to DATA: %s", smtp.Printable(r.Error())))
	}
	if r.Code != 354 {
		all("DATA", r)
		return res, c.Reset(ctx)
	}

	if werr := c.writeBody(ctx, smtp.NewDataWriter(c.bw), c.bw, m.Body, nil); werr != nil {
		// A half-sent message cannot be taken back: the connection goes.
		return res, c.fail(ctxErr(ctx, fmt.Errorf("sending message data: %w", werr)))
	}

	// SMTP: one reply for the whole transaction. LMTP: one per accepted
	// recipient, in the order of the RCPTs (RFC 2033 4.2).
	var shared smtp.Reply
	for i := range res {
		if !ok(res[i].Reply) {
			continue
		}
		if !c.o.LMTP && shared.Code != 0 {
			res[i] = Response{Command: EndOfData, Reply: shared}
			continue
		}
		r, err := c.read(ctx, to.DataFinal)
		if err != nil {
			for j := i; j < len(res); j++ {
				if ok(res[j].Reply) {
					res[j] = Response{Command: EndOfData}
				}
			}
			return res, err
		}
		shared = r
		res[i] = Response{Command: EndOfData, Reply: r}
	}
	return res, nil
}

// writeBody copies body through w (DATA's or BDAT's writer, see
// smtp.DataWriter), flushes bw and then runs after, if any, all under the
// data block timeout, whose write deadline moves with every block written.
func (c *Client) writeBody(ctx context.Context, w *smtp.DataWriter, bw *bufio.Writer, body io.Reader, after func() error) error {
	stop := c.stage(ctx, c.o.Timeouts.DataBlock)
	c.writeTimeout = c.o.Timeouts.DataBlock
	defer func() {
		c.writeTimeout = 0
		stop()
	}()
	_, err := bufpool.Copy(w, body)
	if err == nil {
		err = w.Close()
	}
	if err == nil {
		err = bw.Flush()
	}
	if err == nil && after != nil {
		err = after()
	}
	return err
}

// queueEnvelope buffers, for one pipelined write, RSET when ResetFirst
// asked for it, then MAIL and the RCPTs (lines). It reports whether RSET
// is in front.
func (c *Client) queueEnvelope(lines []string) (resetFirst bool) {
	resetFirst = c.resetFirst
	c.resetFirst = false
	if resetFirst {
		c.queue("RSET")
	}
	for _, l := range lines {
		c.queue(l)
	}
	return resetFirst
}

// envelopeReplies sends what is buffered (queueEnvelope's commands and
// what followed them: DATA, or the first BDAT chunk) and reads the
// replies to RSET, MAIL and each RCPT, which go into res. It returns the
// MAIL reply and how many recipients were accepted. A dead connection
// or a refused RSET comes back as ErrStale when RSET led the group.
func (c *Client) envelopeReplies(ctx context.Context, resetFirst bool, res []Response) (smtp.Reply, int, error) {
	to := c.o.Timeouts
	if err := c.flush(ctx, to.Mail); err != nil {
		if resetFirst {
			err = fmt.Errorf("%w: %w", ErrStale, err)
		}
		return smtp.Reply{}, 0, err
	}
	if resetFirst {
		r, err := c.read(ctx, to.Command)
		if err == nil && r.Code != 250 {
			// Whatever the server makes of the rest of the group, the
			// connection goes: nothing is delivered without its final
			// dot (DATA) or its BDAT LAST.
			err = c.fail(&ReplyError{Command: "RSET", Reply: r})
		}
		if err != nil {
			return smtp.Reply{}, 0, fmt.Errorf("%w: %w", ErrStale, err)
		}
	}
	mail, err := c.read(ctx, to.Mail)
	if err != nil {
		return mail, 0, err
	}
	accepted := 0
	for i := range res {
		r, err := c.read(ctx, to.Rcpt)
		if err != nil {
			return mail, accepted, err
		}
		res[i] = Response{Command: "RCPT TO", Reply: r}
		if r.Code/100 == 2 {
			accepted++
		}
	}
	return mail, accepted, nil
}

// endEmptyData ends with a lone dot a DATA that a server accepted although
// no recipient was (RFC 2920 3.1) and reads the reply, which says nothing
// about any recipient.
func (c *Client) endEmptyData(ctx context.Context) error {
	c.queue(".")
	if err := c.flush(ctx, c.o.Timeouts.DataBlock); err != nil {
		return err
	}
	_, err := c.read(ctx, c.o.Timeouts.DataFinal)
	return err
}
