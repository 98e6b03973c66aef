// Package lmtp hands messages to a local mail store over LMTP (RFC 2033), as Dovecot takes them.
package lmtp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/posthorn/posthorn/internal/outbound"
	"github.com/posthorn/posthorn/internal/queue"
	"github.com/posthorn/posthorn/internal/spool"
)

// Target is where an LMTP server listens.
type Target struct {
	Network string // "unix" or "tcp"
	Address string // socket path, or host:port
}

// String gives the target in configuration form, "lmtp:unix:/path".
func (t Target) String() string { return "lmtp:" + t.Network + ":" + t.Address }

// ParseTarget reads a domain's delivery setting: "lmtp:unix:/path/to/socket"
// or "lmtp:tcp:host:port".
func ParseTarget(s string) (Target, error) {
	rest, ok := strings.CutPrefix(s, "lmtp:")
	if !ok {
		return Target{}, fmt.Errorf("lmtp: %q: expected lmtp:unix:/path or lmtp:tcp:host:port", s)
	}
	network, addr, _ := strings.Cut(rest, ":")
	switch network {
	case "unix":
		if !filepath.IsAbs(addr) {
			return Target{}, fmt.Errorf("lmtp: %q: the socket path must be absolute", s)
		}
	case "tcp":
		host, port, err := net.SplitHostPort(addr)
		if err != nil || host == "" {
			return Target{}, fmt.Errorf("lmtp: %q: expected host:port after lmtp:tcp:", s)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return Target{}, fmt.Errorf("lmtp: %q: bad port", s)
		}
	default:
		return Target{}, fmt.Errorf("lmtp: %q: unknown network %q (unix or tcp)", s, network)
	}
	return Target{Network: network, Address: addr}, nil
}

// Options configure a Deliverer.
type Options struct {
	// Hostname is our name in LHLO.
	Hostname string
	// Timeouts of the client; zero fields take the SMTP defaults.
	Timeouts outbound.Timeouts
	Logger   *slog.Logger
}

// Deliverer delivers over LMTP. It keeps no connection between calls.
type Deliverer struct {
	o   Options
	log *slog.Logger
}

// New returns a Deliverer.
func New(o Options) *Deliverer {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Deliverer{o: o, log: o.Logger}
}

// DeliverMailboxes delivers to mailboxes in one transaction: delivery is
// the domain's delivery setting ("lmtp:unix:/run/dovecot/lmtp") and each
// address the one to give in RCPT — the whole address, local-part@domain,
// which Dovecot takes as its user name when the userdb is keyed by
// address. A delivery setting that does not parse defers them all.
func (d *Deliverer) DeliverMailboxes(ctx context.Context, env *spool.Envelope, body func() (io.ReadCloser, error), delivery string, addrs []string) []queue.Outcome {
	t, err := ParseTarget(delivery)
	if err != nil {
		out := make([]queue.Outcome, len(addrs))
		for i := range out {
			out[i] = queue.Outcome{Status: queue.Deferred, Detail: "4.3.5 " + err.Error()}
		}
		return out
	}
	return d.Deliver(ctx, t, env, body, addrs)
}

// Deliver sends the message to t for rcpts in one transaction and returns
// one outcome per recipient: RFC 2033 4.2 gives each accepted recipient
// its own reply after the data. Details read "lmtp:unix:/path: 250 2.0.0
// ..." for a reply, and begin with an enhanced status code otherwise.
func (d *Deliverer) Deliver(ctx context.Context, t Target, env *spool.Envelope, body func() (io.ReadCloser, error), rcpts []string) []queue.Outcome {
	out := make([]queue.Outcome, len(rcpts))
	settle := func(st queue.Status, detail string) []queue.Outcome {
		for i := range out {
			out[i] = queue.Outcome{Status: st, Detail: detail}
		}
		d.logAll(env, rcpts, out)
		return out
	}
	where := t.String()
	c, err := outbound.Dial(ctx, t.Network, t.Address, outbound.ClientOptions{Hostname: d.o.Hostname, LMTP: true, Timeouts: d.o.Timeouts})
	if err == nil {
		err = c.Hello(ctx)
	}
	if err != nil {
		var re *outbound.ReplyError
		if errors.As(err, &re) {
			c.Quit(ctx)
			// A refusal before the transaction is the server's trouble,
			// not the recipients': retry.
			return settle(queue.Deferred, where+": "+outbound.ReplyLine(re.Reply))
		}
		if c != nil {
			c.Close()
		}
		return settle(queue.Deferred, "4.4.1 "+where+": "+err.Error())
	}
	defer c.Quit(context.WithoutCancel(ctx))

	ext := c.Extensions()
	var params []string
	if ext.Size && env.Size > 0 {
		params = append(params, "SIZE="+strconv.FormatInt(env.Size, 10))
	}
	if env.Body == "8BITMIME" && ext.EightBitMIME {
		params = append(params, "BODY=8BITMIME")
	}
	if env.SMTPUTF8 && ext.SMTPUTF8 {
		params = append(params, "SMTPUTF8")
	}
	m := &outbound.Message{From: env.From, Params: params}
	for _, r := range rcpts {
		m.Rcpts = append(m.Rcpts, outbound.Rcpt{Addr: r})
	}
	rc, err := body()
	if err != nil {
		return settle(queue.Deferred, "4.3.0 reading the queued message: "+err.Error())
	}
	defer rc.Close()
	m.Body = rc
	resps, err := c.Send(ctx, m)
	for i, r := range resps {
		switch {
		case r.Final() && r.Reply.Code >= 200 && r.Reply.Code < 300:
			out[i] = queue.Outcome{Status: queue.Delivered, Detail: where + ": " + outbound.ReplyLine(r.Reply)}
		case r.Reply.Permanent():
			out[i] = queue.Outcome{Status: queue.Failed, Detail: where + ": " + outbound.ReplyLine(r.Reply)}
		case r.Reply.Transient():
			out[i] = queue.Outcome{Status: queue.Deferred, Detail: where + ": " + outbound.ReplyLine(r.Reply)}
		default:
			why := "no reply"
			if err != nil {
				why = err.Error()
			}
			out[i] = queue.Outcome{Status: queue.Deferred, Detail: "4.4.2 " + where + ": lost connection or no answer during the transaction: " + why}
		}
	}
	d.logAll(env, rcpts, out)
	return out
}

func (d *Deliverer) logAll(env *spool.Envelope, rcpts []string, out []queue.Outcome) {
	for i, o := range out {
		d.log.Info("lmtp delivery", "id", env.ID, "rcpt", rcpts[i], "status", o.Status, "detail", o.Detail)
	}
}
