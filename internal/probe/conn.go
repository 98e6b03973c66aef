package probe

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/posthorn/posthorn/internal/smtp"
)

// maxTranscript bounds the transcript kept per host.
const maxTranscript = 400

// conn is one SMTP client connection of the probe: every read and write
// has the step timeout, cut short by the total deadline, and the dialog is
// recorded. The probe never authenticates, so no secret is ever written.
type conn struct {
	ctx   context.Context
	nc    net.Conn
	br    *bufio.Reader
	step  time.Duration
	log   *[]string
	stop  func() bool
	label string // prefix in the transcript, e.g. "relay"
}

// dial connects to addr and reads the greeting. implicitTLS wraps the
// connection in TLS first (port 465).
func (p *prober) dial(ctx context.Context, addr, label string, implicit *tls.Config) (*conn, smtp.Reply, time.Duration, error) {
	cctx, cancel := context.WithTimeout(ctx, p.o.ConnectTimeout)
	defer cancel()
	start := time.Now()
	p.connected = false
	nc, err := p.o.Dial(cctx, "tcp", addr)
	if err != nil {
		return nil, smtp.Reply{}, 0, err
	}
	took := time.Since(start)
	p.connected = true
	c := &conn{ctx: ctx, nc: nc, step: p.o.StepTimeout, log: p.transcript, label: label}
	// The total deadline interrupts a blocked read at once.
	c.stop = context.AfterFunc(ctx, func() { nc.SetDeadline(time.Unix(1, 0)) }) //nolint:errcheck
	if implicit != nil {
		tc := tls.Client(nc, implicit)
		c.deadline()
		if err := tc.HandshakeContext(ctx); err != nil {
			c.close()
			return nil, smtp.Reply{}, took, fmt.Errorf("TLS handshake: %w", err)
		}
		c.nc = tc
	}
	c.br = bufio.NewReader(c.nc)
	c.note("connected to %s in %s", addr, took.Round(time.Millisecond))
	r, err := c.read()
	if err != nil {
		c.close()
		return nil, r, took, fmt.Errorf("reading the greeting: %w", err)
	}
	return c, r, took, nil
}

func (c *conn) deadline() {
	d := time.Now().Add(c.step)
	if cd, ok := c.ctx.Deadline(); ok && cd.Before(d) {
		d = cd
	}
	c.nc.SetDeadline(d) //nolint:errcheck // a closed conn fails the next read anyway
}

// pastDeadline reports whether the total deadline has passed (the
// connection's deadline may fire a moment before the context's timer).
func (c *conn) pastDeadline() bool {
	if c.ctx.Err() != nil {
		return true
	}
	d, ok := c.ctx.Deadline()
	return ok && !time.Now().Before(d)
}

func (c *conn) record(dir, line string) {
	if c.log == nil || len(*c.log) >= maxTranscript {
		return
	}
	if c.label != "" {
		dir = c.label + " " + dir
	}
	*c.log = append(*c.log, dir+" "+line)
}

func (c *conn) note(format string, args ...any) {
	c.record("--", fmt.Sprintf(format, args...))
}

// read reads one reply within the step timeout.
func (c *conn) read() (smtp.Reply, error) {
	c.deadline()
	r, err := smtp.ReadReply(c.br)
	if err != nil {
		if c.pastDeadline() {
			err = fmt.Errorf("total deadline reached: %w", err)
		}
		c.note("error: %v", err)
		return r, err
	}
	for i, l := range r.Lines {
		sep := " "
		if i < len(r.Lines)-1 {
			sep = "-"
		}
		text := l
		if r.Enhanced != "" {
			text = r.Enhanced + " " + l
		}
		c.record("S:", fmt.Sprintf("%d%s%s", r.Code, sep, printable(text)))
	}
	return r, nil
}

// cmd sends one command line and reads the reply.
func (c *conn) cmd(line string) (smtp.Reply, error) {
	if strings.ContainsAny(line, "\r\n") {
		return smtp.Reply{}, errors.New("probe: command contains CR or LF")
	}
	c.record("C:", line)
	c.deadline()
	if _, err := c.nc.Write([]byte(line + "\r\n")); err != nil {
		c.note("error: %v", err)
		return smtp.Reply{}, err
	}
	return c.read()
}

// starttls upgrades the connection; the caller has had 220 to STARTTLS.
func (c *conn) starttls(cfg *tls.Config) (*tls.Conn, error) {
	tc := tls.Client(c.nc, cfg)
	c.deadline()
	if err := tc.HandshakeContext(c.ctx); err != nil {
		c.note("TLS handshake failed: %v", err)
		return nil, err
	}
	st := tc.ConnectionState()
	c.note("TLS %s %s", tls.VersionName(st.Version), tls.CipherSuiteName(st.CipherSuite))
	c.nc = tc
	c.br = bufio.NewReader(tc)
	return tc, nil
}

// quit says QUIT (best effort) and closes.
func (c *conn) quit() {
	if c.ctx.Err() == nil {
		c.step = min(c.step, 5*time.Second)
		c.cmd("QUIT") //nolint:errcheck // closing anyway
	}
	c.close()
}

func (c *conn) close() {
	if c.stop != nil {
		c.stop()
	}
	c.nc.Close()
}

// wire is a reply in wire-like form for Evidence: "code enh text" lines
// joined with "\n".
func wire(r smtp.Reply) string {
	var b strings.Builder
	for i, l := range r.Lines {
		if i > 0 {
			b.WriteByte('\n')
		}
		fmt.Fprintf(&b, "%d ", r.Code)
		if r.Enhanced != "" {
			b.WriteString(r.Enhanced + " ")
		}
		b.WriteString(l)
	}
	return b.String()
}

// printable keeps a server's text safe for a terminal: control characters
// become '?', and very long lines are cut.
func printable(s string) string {
	b := []byte(s)
	for i, ch := range b {
		if ch < 0x20 || ch == 0x7f {
			b[i] = '?'
		}
	}
	if len(b) > 512 {
		b = append(b[:512], "..."...)
	}
	return strings.ToValidUTF8(string(b), "?")
}
