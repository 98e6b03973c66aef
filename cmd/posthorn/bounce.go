package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/posthorn/posthorn/internal/dsn"
	"github.com/posthorn/posthorn/internal/queue"
	"github.com/posthorn/posthorn/internal/spool"
)

// bouncer turns failed recipients into delivery status notifications
// (RFC 3464) queued to the envelope sender like any other message.
type bouncer struct {
	hostname   string
	postmaster string // gets a copy of failures of mail from <>; "" for none
	sp         *spool.Spool
	q          *queue.Manager
	log        *slog.Logger
}

// failed is queue.Options.OnFailed. An error means the report could not
// be queued, and the queue asks again later; a report that cannot be
// built at all is logged and given up (retrying would not help).
func (b *bouncer) failed(env *spool.Envelope, rcpts []int) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	body, err := b.sp.Body(env.ID)
	if err != nil {
		return fmt.Errorf("bounce: cannot read the failed message: %w", err)
	}
	defer body.Close()
	opts := dsn.Options{Hostname: b.hostname}
	var rep *dsn.Report
	if env.From == "" {
		// A message from <> is never bounced (RFC 5321 4.5.5): its
		// failure is logged, and the postmaster may get a copy — except
		// of a failing copy, which would loop.
		b.log.Warn("bounce: message from <> failed; not bounced", "id", env.ID, "rcpts", len(rcpts))
		if b.postmaster == "" || env.Listener == "dsn" {
			return nil
		}
		items := make([]dsn.Item, len(rcpts))
		for i, r := range rcpts {
			items[i] = dsn.Item{Rcpt: r, Action: dsn.Failed}
		}
		rep, err = dsn.BuildPostmasterCopy(opts, b.postmaster, env, items, body)
	} else {
		items := dsn.Failures(env, rcpts)
		if len(items) == 0 {
			return nil // NOTIFY=NEVER, or without FAILURE
		}
		rep, err = dsn.Build(opts, env, items, body)
	}
	if errors.Is(err, dsn.ErrNothingToReport) {
		return nil
	}
	if err != nil {
		b.log.Error("bounce: cannot build the report", "id", env.ID, "err", err)
		return nil
	}
	id, err := enqueue(ctx, b.sp, b.q, rep.Envelope(), bytes.NewReader(rep.Data))
	if err != nil {
		return fmt.Errorf("bounce: cannot queue the report: %w", err)
	}
	b.log.Info("bounce queued", "id", env.ID, "dsn", id, "to", rep.To, "rcpts", len(rcpts))
	return nil
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
