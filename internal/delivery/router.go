// Package delivery routes each recipient of a queued message to the agent that delivers it.
package delivery

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"

	"github.com/posthorn/posthorn/internal/directory"
	"github.com/posthorn/posthorn/internal/lmtp"
	"github.com/posthorn/posthorn/internal/maildir"
	"github.com/posthorn/posthorn/internal/queue"
	"github.com/posthorn/posthorn/internal/spool"
)

// Options configures a Router.
type Options struct {
	Directory *directory.Directory
	// MailRoot holds the Maildirs: MailRoot/<domain>/<local-part>/.
	MailRoot string
	Maildir  *maildir.Deliverer
	// LMTP delivers to mailboxes of domains whose delivery is "lmtp:...".
	LMTP *lmtp.Deliverer
	// Remote delivers recipients at other domains; nil leaves them queued
	// (deferred) until a remote agent is configured.
	Remote queue.DeliverFunc
	// Forward queues a copy of the message for addresses an alias points
	// to at other domains; nil defers such recipients.
	Forward func(ctx context.Context, env *spool.Envelope, body func() (io.ReadCloser, error), to []string) error
	// ReverseSRS maps an SRS address of ours back to the address it
	// stands for: bounces to forwarded mail go back to the original
	// sender through Forward. nil: no SRS.
	ReverseSRS func(addr string) (orig string, isSRS bool, err error)
	Logger     *slog.Logger
}

// Router is a queue.DeliverFunc: local recipients go to their Maildirs,
// forwarded ones back into the queue, remote ones to Options.Remote.
type Router struct{ o Options }

// New returns a Router.
func New(o Options) *Router {
	if o.Maildir == nil {
		o.Maildir = &maildir.Deliverer{}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Router{o: o}
}

// Deliver implements queue.DeliverFunc.
func (r *Router) Deliver(ctx context.Context, env *spool.Envelope, body func() (io.ReadCloser, error), rcpts []int) []queue.Outcome {
	out := make([]queue.Outcome, len(rcpts))
	var remote []int // positions in rcpts
	lb := lmtpBatches{}
	// Maildirs written in this attempt: a mailbox reached by two
	// recipients (an alias and its member) gets one copy, as with
	// Postfix's duplicate filter.
	written := map[string]bool{}
	for i, idx := range rcpts {
		addr := env.Recipients[idx].Addr
		domain := addr[strings.LastIndexByte(addr, '@')+1:]
		if !r.o.Directory.IsLocalDomain(domain) {
			remote = append(remote, i)
			continue
		}
		out[i] = r.deliverLocal(ctx, env, body, addr, i, lb, written)
	}
	r.deliverLMTP(ctx, env, body, rcpts, lb, out)
	if len(remote) > 0 {
		if r.o.Remote == nil {
			for _, i := range remote {
				out[i] = queue.Outcome{Status: queue.Deferred, Detail: "remote delivery is not enabled yet; the message stays queued"}
			}
		} else {
			idx := make([]int, len(remote))
			for j, i := range remote {
				idx[j] = rcpts[i]
			}
			for j, o := range r.o.Remote(ctx, env, body, idx) {
				out[remote[j]] = o
			}
		}
	}
	return out
}

// lmtpBatches gathers the LMTP mailboxes of one message by delivery
// target ("lmtp:unix:/run/dovecot/lmtp"), so that each target gets one
// transaction with every mailbox as a RCPT (as Postfix's lmtp client
// does), instead of a connection per mailbox.
type lmtpBatches map[string]*lmtpBatch

type lmtpBatch struct {
	mailboxes []string         // each mailbox once
	want      map[string][]int // mailbox -> positions in rcpts of the recipients that reach it
}

func (b lmtpBatches) add(delivery, mailbox string, pos int) {
	t := b[delivery]
	if t == nil {
		t = &lmtpBatch{want: map[string][]int{}}
		b[delivery] = t
	}
	if _, ok := t.want[mailbox]; !ok {
		t.mailboxes = append(t.mailboxes, mailbox)
	}
	t.want[mailbox] = append(t.want[mailbox], pos)
}

// deliverLMTP runs the batches: a recipient stays Delivered only if each
// of its LMTP mailboxes took the message; otherwise it gets the first
// mailbox's failure and is retried (or bounced) as a whole.
func (r *Router) deliverLMTP(ctx context.Context, env *spool.Envelope, body func() (io.ReadCloser, error), rcpts []int, lb lmtpBatches, out []queue.Outcome) {
	for delivery, b := range lb {
		outs := r.o.LMTP.DeliverMailboxes(ctx, env, body, delivery, b.mailboxes)
		for k, mailbox := range b.mailboxes {
			for _, pos := range b.want[mailbox] {
				if outs[k].Status != queue.Delivered {
					if out[pos].Status == queue.Delivered {
						out[pos] = outs[k]
					}
					continue
				}
				r.o.Logger.Info("delivered", "id", env.ID, "rcpt", env.Recipients[rcpts[pos]].Addr, "mailbox", mailbox, "agent", delivery)
			}
		}
	}
}

// deliverLocal delivers to every mailbox an address resolves to: Maildirs
// at once, LMTP mailboxes through lb (when everything else succeeded),
// forwards through Options.Forward. If any mailbox fails temporarily the
// whole recipient is retried: a mailbox that already got it may get it
// twice, which at-least-once allows.
func (r *Router) deliverLocal(ctx context.Context, env *spool.Envelope, body func() (io.ReadCloser, error), addr string, pos int, lb lmtpBatches, written map[string]bool) queue.Outcome {
	if r.o.ReverseSRS != nil {
		if orig, isSRS, err := r.o.ReverseSRS(addr); isSRS {
			if err != nil {
				return queue.Outcome{Status: queue.Failed, Detail: "550 5.7.1 invalid SRS address: " + err.Error()}
			}
			if r.o.Forward == nil {
				return queue.Outcome{Status: queue.Deferred, Detail: "forwarding is not enabled; the message stays queued"}
			}
			if err := r.o.Forward(ctx, env, body, []string{orig}); err != nil {
				return queue.Outcome{Status: queue.Deferred, Detail: "forwarding: " + err.Error()}
			}
			r.o.Logger.Info("returned to the original sender", "id", env.ID, "rcpt", addr, "to", orig)
			return queue.Outcome{Status: queue.Delivered, Detail: "relayed to " + orig}
		}
	}
	res, err := r.o.Directory.Resolve(addr)
	switch {
	case errors.Is(err, directory.ErrUnknownUser):
		// Accepted at RCPT time, gone since (account deleted).
		return queue.Outcome{Status: queue.Failed, Detail: "550 5.1.1 no such user here"}
	case err != nil:
		return queue.Outcome{Status: queue.Deferred, Detail: "directory lookup failed: " + err.Error()}
	}
	var viaLMTP []directory.Mailbox
	for _, m := range res.Local {
		if strings.HasPrefix(m.Delivery, "lmtp:") {
			if r.o.LMTP == nil {
				return queue.Outcome{Status: queue.Deferred, Detail: "LMTP delivery is not configured; the message stays queued"}
			}
			viaLMTP = append(viaLMTP, m)
			continue
		}
		if m.Delivery != "" && m.Delivery != "maildir" {
			return queue.Outcome{Status: queue.Deferred, Detail: fmt.Sprintf("delivery %q is not available in this version; the message stays queued", m.Delivery)}
		}
		if written[m.Address()] {
			r.o.Logger.Info("delivered", "id", env.ID, "rcpt", addr, "mailbox", m.Address(), "agent", "maildir", "duplicate", true)
			continue
		}
		path, err := r.toMaildir(ctx, env, body, m)
		if err != nil {
			r.o.Logger.Warn("maildir delivery failed", "id", env.ID, "rcpt", addr, "mailbox", m.Address(), "err", err)
			return queue.Outcome{Status: queue.Deferred, Detail: "maildir: " + err.Error()}
		}
		written[m.Address()] = true
		r.o.Logger.Info("delivered", "id", env.ID, "rcpt", addr, "mailbox", m.Address(), "agent", "maildir", "path", path)
	}
	if len(res.Forward) > 0 {
		if r.o.Forward == nil {
			return queue.Outcome{Status: queue.Deferred, Detail: "forwarding is not enabled; the message stays queued"}
		}
		if err := r.o.Forward(ctx, env, body, res.Forward); err != nil {
			return queue.Outcome{Status: queue.Deferred, Detail: "forwarding: " + err.Error()}
		}
		r.o.Logger.Info("forwarded", "id", env.ID, "rcpt", addr, "to", strings.Join(res.Forward, ","))
	}
	// Every mailbox must take it; an LMTP failure becomes this
	// recipient's outcome in deliverLMTP.
	for _, m := range viaLMTP {
		lb.add(m.Delivery, m.Address(), pos)
	}
	return queue.Outcome{Status: queue.Delivered, Detail: "delivered"}
}

func (r *Router) toMaildir(ctx context.Context, env *spool.Envelope, body func() (io.ReadCloser, error), m directory.Mailbox) (string, error) {
	rc, err := body()
	if err != nil {
		return "", err
	}
	defer rc.Close()
	dir := filepath.Join(r.o.MailRoot, m.Domain, m.LocalPart)
	// RFC 5321 4.4: the final delivery adds Return-Path; Delivered-To
	// (as Postfix and qmail write it) lets loops be seen.
	hdr := "Return-Path: <" + env.From + ">\r\nDelivered-To: " + m.Address() + "\r\n"
	folder := ""
	if env.Quarantine {
		folder = ".Junk" // Maildir++: shown as "Junk" by IMAP servers
	}
	return r.o.Maildir.Deliver(ctx, dir, folder, []byte(hdr), rc)
}
