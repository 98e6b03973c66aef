package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/posthorn/posthorn/internal/dsn"
	"github.com/posthorn/posthorn/internal/queue"
	"github.com/posthorn/posthorn/internal/spool"
)

// bouncer turns failed, delayed and (when asked) delivered recipients into
// delivery status notifications (RFC 3464) queued to the envelope sender
// like any other message.
type bouncer struct {
	hostname   string
	postmaster string // gets a copy of failures of mail from <>; "" for none
	lifetime   time.Duration
	isLocal    func(domain string) bool
	sp         *spool.Spool
	q          *queue.Manager
	log        *slog.Logger
}

// delayed is queue.Options.OnDelayed: a warning for recipients whose
// NOTIFY asks for DELAY (RFC 3461 4.1).
func (b *bouncer) delayed(env *spool.Envelope, rcpts []int) error {
	if env.From == "" {
		return nil
	}
	return b.send(env, dsn.Delays(env, rcpts, env.Arrival.Add(b.lifetime)), "delay")
}

// delivered is queue.Options.OnDelivered: a success report for
// recipients whose NOTIFY asks for SUCCESS: "delivered" for mail we
// delivered ourselves, "relayed" for mail handed to a server without DSN
// support, which drops NOTIFY (RFC 3461 5.2.2). A server with DSN got
// NOTIFY passed on and reports itself (4.1).
func (b *bouncer) delivered(env *spool.Envelope, rcpts []int) error {
	if env.From == "" {
		return nil
	}
	var local, relayed []int
	for _, i := range rcpts {
		r := env.Recipients[i]
		switch {
		case b.isLocal(r.Addr[strings.LastIndexByte(r.Addr, '@')+1:]):
			local = append(local, i)
		case r.Relayed:
			relayed = append(relayed, i)
		}
	}
	items := append(dsn.Successes(env, local, dsn.Delivered), dsn.Successes(env, relayed, dsn.Relayed)...)
	return b.send(env, items, "success")
}

// send builds and queues a report on items, if there are any.
func (b *bouncer) send(env *spool.Envelope, items []dsn.Item, kind string) error {
	if len(items) == 0 {
		return nil
	}
	body, err := b.sp.Body(env.ID)
	if err != nil {
		return fmt.Errorf("%s report: cannot read the message: %w", kind, err)
	}
	defer body.Close()
	rep, err := dsn.Build(dsn.Options{Hostname: b.hostname}, env, items, body)
	if err != nil {
		b.log.Error("cannot build the report", "kind", kind, "id", env.ID, "err", err)
		return nil
	}
	return b.queue(env, rep, kind, len(items))
}

// queue puts a built report into the queue.
func (b *bouncer) queue(env *spool.Envelope, rep *dsn.Report, kind string, n int) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	id, err := enqueue(ctx, b.sp, b.q, rep.Envelope(), bytes.NewReader(rep.Data))
	if err != nil {
		return fmt.Errorf("%s: cannot queue it: %w", kind, err)
	}
	b.log.Info("report queued", "kind", kind, "id", env.ID, "dsn", id, "to", rep.To, "rcpts", n)
	return nil
}

// failed is queue.Options.OnFailed. An error means the report could not
// be queued, and the queue asks again later; a report that cannot be
// built at all is logged and given up (retrying would not help).
func (b *bouncer) failed(env *spool.Envelope, rcpts []int) error {
	if env.From != "" {
		return b.send(env, dsn.Failures(env, rcpts), "failure")
	}
	// A message from <> is never bounced (RFC 5321 4.5.5): its failure is
	// logged, and the postmaster may get a copy — except of a failing
	// copy, which would loop.
	b.log.Warn("bounce: message from <> failed; not bounced", "id", env.ID, "rcpts", len(rcpts))
	if b.postmaster == "" || env.Listener == "dsn" {
		return nil
	}
	body, err := b.sp.Body(env.ID)
	if err != nil {
		return fmt.Errorf("postmaster copy: cannot read the message: %w", err)
	}
	defer body.Close()
	items := make([]dsn.Item, len(rcpts))
	for i, r := range rcpts {
		items[i] = dsn.Item{Rcpt: r, Action: dsn.Failed}
	}
	rep, err := dsn.BuildPostmasterCopy(dsn.Options{Hostname: b.hostname}, b.postmaster, env, items, body)
	if err != nil {
		b.log.Error("cannot build the postmaster copy", "id", env.ID, "err", err)
		return nil
	}
	return b.queue(env, rep, "postmaster copy", len(items))
}

// enqueue commits a message we generate (a bounce, a forwarded copy) to
// the spool and hands it to the queue.
func enqueue(ctx context.Context, sp *spool.Spool, q *queue.Manager, env spool.Envelope, body io.Reader) (string, error) {
	w, err := sp.Create()
	if err != nil {
		return "", err
	}
	defer w.Abort()
	if _, err := io.Copy(w, body); err != nil {
		return "", err
	}
	if env.Arrival.IsZero() {
		env.Arrival = time.Now()
	}
	if err := w.Commit(ctx, &env); err != nil {
		return "", err
	}
	q.Submit(env.ID)
	return env.ID, nil
}
