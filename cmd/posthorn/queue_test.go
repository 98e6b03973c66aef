package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/posthorn/posthorn/internal/ctl"
	"github.com/posthorn/posthorn/internal/queue"
	"github.com/posthorn/posthorn/internal/spool"
)

// ctlDaemon is the part of a daemon the client commands talk to: a
// spool, a queue whose deliveries all defer, and the ctl server, in this
// process.
type ctlDaemon struct {
	t        *testing.T
	config   string
	dataDir  string
	sp       *spool.Spool
	q        *queue.Manager
	attempts chan string
	subs     chan ctlSubmission
}

type ctlSubmission struct {
	ctl.Submission
	body string
	id   string
}

func startCtlDaemon(t *testing.T, extraConfig string) *ctlDaemon {
	t.Helper()
	return startCtlDaemonWith(t, extraConfig, func(d *ctlDaemon) ctl.SubmitFunc { return d.submit })
}

func startCtlDaemonWith(t *testing.T, extraConfig string, submit func(*ctlDaemon) ctl.SubmitFunc) *ctlDaemon {
	t.Helper()
	dir := t.TempDir()
	d := &ctlDaemon{t: t, dataDir: filepath.Join(dir, "data"), attempts: make(chan string, 10), subs: make(chan ctlSubmission, 10)}
	d.config = filepath.Join(dir, "posthorn.toml")
	cfg := fmt.Sprintf("hostname = \"mx.example.test\"\ndata_dir = %q\n%s", d.dataDir, extraConfig)
	if err := os.WriteFile(d.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(d.dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	sp, err := spool.Open(spool.Options{Dir: filepath.Join(d.dataDir, "spool")})
	if err != nil {
		t.Fatal(err)
	}
	d.sp = sp
	d.q = queue.New(queue.Options{
		Spool: sp,
		Deliver: func(_ context.Context, env *spool.Envelope, _ func() (io.ReadCloser, error), rcpts []int) []queue.Outcome {
			d.attempts <- env.ID
			out := make([]queue.Outcome, len(rcpts))
			for i := range out {
				out[i] = queue.Outcome{Status: queue.Deferred, Detail: "451 4.7.1 greylisted,\r\n try again later"}
			}
			return out
		},
		FirstRetry: time.Hour,
	})
	ctx, cancel := context.WithCancel(context.Background())
	if err := d.q.Start(ctx); err != nil {
		t.Fatal(err)
	}
	srv := ctl.NewServer(ctl.Options{Spool: sp, Queue: d.q, Submit: submit(d), MessageSize: 1 << 20})
	if err := srv.Listen(ctl.AdminSocket(d.dataDir), ctl.SubmitSocket(d.dataDir)); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
		d.q.Stop(context.Background())
		sp.Close()
	})
	return d
}

// submit stands in for the SubmitFunc of serve: it spools the message
// without queueing it, so that its state stays as the test left it.
func (d *ctlDaemon) submit(ctx context.Context, s ctl.Submission) (string, error) {
	w, err := d.sp.Create()
	if err != nil {
		return "", err
	}
	defer w.Abort()
	var buf bytes.Buffer
	if _, err := io.Copy(io.MultiWriter(w, &buf), s.Body); err != nil {
		return "", err
	}
	env := &spool.Envelope{From: s.From, Arrival: time.Now(), Listener: "local"}
	if env.From == "" && !s.NullSender {
		env.From = s.User + "@mx.example.test"
	}
	for _, r := range s.Recipients {
		env.Recipients = append(env.Recipients, spool.Recipient{Addr: r})
	}
	if err := w.Commit(ctx, env); err != nil {
		return "", err
	}
	d.subs <- ctlSubmission{s, buf.String(), env.ID}
	return env.ID, nil
}

// queueCmd runs `posthorn queue ARGS -c CONFIG` in this process.
func (d *ctlDaemon) queueCmd(args ...string) (stdout, stderr string, code int) {
	var o, e bytes.Buffer
	code = runQueue(context.Background(), append(args, "-c", d.config), &o, &e)
	return o.String(), e.String(), code
}

func (d *ctlDaemon) sendmail(stdin string, args ...string) (stderr string, code int) {
	var o, e bytes.Buffer
	code = runSendmail(context.Background(), append([]string{"-C", d.config}, args...), strings.NewReader(stdin), &o, &e)
	return e.String(), code
}

func (d *ctlDaemon) enqueue(from string, rcpts ...string) string {
	d.t.Helper()
	stderr, code := d.sendmail("Subject: test\nTo: "+strings.Join(rcpts, ", ")+"\n\nhello\n", append([]string{"-f", from}, rcpts...)...)
	if code != 0 {
		d.t.Fatalf("sendmail exit %d: %s", code, stderr)
	}
	return (<-d.subs).id
}

func TestWriteListFitsEightyColumns(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	msgs := []ctl.Message{
		{
			ID: "0n4s8c1ab2cd3ef4", From: "a-rather-long-sender-address-for-a-mailing-list@lists.example.org",
			Arrival: now.Add(-2*time.Hour - 5*time.Minute), Size: 4200, NextAttempt: now.Add(12 * time.Minute),
			Recipients: []ctl.Recipient{
				{Addr: "bob@example.net", State: ctl.StateDeferred, Attempts: 3,
					LastError: "451 4.7.1 <bob@example.net>: Recipient address rejected: greylisted for 300 seconds, see https://example.net/greylisting.html"},
				{Addr: "carol@example.com", State: ctl.StateDelivered, Attempts: 1},
				{Addr: strings.Repeat("x", 90) + "@example.com", State: ctl.StatePending},
			},
		},
		{ID: "0n4s8c1ab2cd3ef5", From: "", Arrival: now.Add(-3 * 24 * time.Hour), Size: 3 << 20, Held: true,
			Recipients: []ctl.Recipient{{Addr: "x@example.org", State: ctl.StateFailed, Attempts: 1, LastError: "550 5.1.1 no such user"}}},
	}
	var b bytes.Buffer
	writeList(&b, msgs, now, 80)
	out := b.String()
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if n := utf8.RuneCountInString(line); n > 80 {
			t.Errorf("line of %d columns: %q", n, line)
		}
	}
	for _, want := range []string{
		"QUEUE ID            AGE   SIZE  SENDER / RECIPIENTS",
		"0n4s8c1ab2cd3ef4  2h05m   4.1K  a-rather-long-sender-address-for...  next in 12m\n",
		"  bob@example.net" + strings.Repeat(" ", 43) + "deferred, 3 attempts\n",
		"      451 4.7.1 <bob@example.net>: Recipient address rejected: greylisted for...\n",
		"  carol@example.com" + strings.Repeat(" ", 52) + "delivered\n",
		"  xxxxxxxxxx",
		"...  pending\n",
		"0n4s8c1ab2cd3ef5  3d00h   3.0M  <>",
		"on hold\n",
		"  x@example.org", "failed, 1 attempt\n", "      550 5.1.1 no such user\n",
		"-- 2 messages, 3.0M, 1 on hold\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("listing lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "carol@example.com: ") {
		t.Error("delivered recipient shows an error")
	}
}

func TestQueueCommandsAgainstTheDaemon(t *testing.T) {
	d := startCtlDaemon(t, "")
	out, _, code := d.queueCmd("list")
	if code != 0 || out != "The queue is empty.\n" {
		t.Fatalf("empty list: %d %q", code, out)
	}
	a := d.enqueue("alice@example.org", "bob@example.net", "carol@example.net")
	b := d.enqueue("dave@example.org", "erin@example.net")

	out, errOut, code := d.queueCmd("list", "--json")
	if code != 0 {
		t.Fatalf("list --json: %d %s", code, errOut)
	}
	var msgs []ctl.Message
	if err := json.Unmarshal([]byte(out), &msgs); err != nil {
		t.Fatalf("list --json is not JSON: %v\n%s", err, out)
	}
	if len(msgs) != 2 || msgs[0].ID != a || msgs[1].ID != b || msgs[0].Recipients[1].Addr != "carol@example.net" {
		t.Fatalf("list --json: %+v", msgs)
	}

	// retry (several ids), then the state shows in list, show and trace.
	out, _, code = d.queueCmd("retry", a, strings.ToUpper(b))
	if code != 0 || out != a+": to be attempted now\n"+b+": to be attempted now\n" {
		t.Fatalf("retry: %d %q", code, out)
	}
	<-d.attempts
	<-d.attempts
	waitSettled(t, d, a)
	waitSettled(t, d, b)
	out, _, _ = d.queueCmd("list")
	if !strings.Contains(out, "  bob@example.net") || !strings.Contains(out, "deferred, 1 attempt\n") ||
		!strings.Contains(out, "      451 4.7.1 greylisted, try again later\n") || !strings.Contains(out, "next in 59m") {
		t.Fatalf("list after a deferral:\n%s", out)
	}
	out, _, code = d.queueCmd("show", a)
	if code != 0 || !strings.Contains(out, "Queue ID:   "+a) || !strings.Contains(out, "Sender:     <alice@example.org>") ||
		!strings.Contains(out, "  carol@example.net: deferred, 1 attempt, last ") ||
		!strings.HasSuffix(out, "\n\nSubject: test\r\nTo: bob@example.net, carol@example.net\r\n\r\n") {
		t.Fatalf("show:\n%s", out)
	}
	out, _, _ = d.queueCmd("show", "--body", a)
	if !strings.HasSuffix(out, "\r\n\r\nhello\r\n") {
		t.Fatalf("show --body:\n%s", out)
	}
	out, _, _ = d.queueCmd("show", a, "--json")
	var m ctl.Message
	if err := json.Unmarshal([]byte(out), &m); err != nil || m.ID != a {
		t.Fatalf("show --json: %v\n%s", err, out)
	}

	// hold, a refused retry, release, delete.
	if out, _, code = d.queueCmd("hold", a); code != 0 || out != a+": on hold\n" {
		t.Fatalf("hold: %d %q", code, out)
	}
	_, errOut, code = d.queueCmd("retry", a)
	if code != 1 || !strings.Contains(errOut, "is on hold") {
		t.Fatalf("retry of a held message: %d %q", code, errOut)
	}
	if out, _, _ = d.queueCmd("list"); !strings.Contains(out, "on hold\n") {
		t.Fatalf("list of a held message:\n%s", out)
	}
	if _, _, code = d.queueCmd("release", a); code != 0 {
		t.Fatal("release failed")
	}
	<-d.attempts
	waitSettled(t, d, a)
	out, _, code = d.queueCmd("trace", a)
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if code != 0 || len(lines) != 8 || !strings.Contains(lines[0], "arrived via local: sender <alice@example.org>") ||
		!strings.Contains(lines[1], "bob@example.net: deferred (attempt 1): 451 4.7.1 greylisted, try again later; next attempt ") ||
		!strings.HasSuffix(lines[3], "put on hold") || !strings.HasSuffix(lines[4], "released from hold") ||
		!strings.Contains(lines[6], "carol@example.net: deferred (attempt 2)") || !strings.HasPrefix(lines[7], "next attempt ") {
		t.Fatalf("trace (%d lines):\n%s", len(lines), out)
	}
	out, _, _ = d.queueCmd("trace", "--json", a)
	var tr ctl.Trace
	if err := json.Unmarshal([]byte(out), &tr); err != nil || len(tr.Events) != 4 {
		t.Fatalf("trace --json: %v\n%s", err, out)
	}

	out, _, code = d.queueCmd("retry", "--all")
	if code != 0 || out != "2 messages to be attempted now\n" {
		t.Fatalf("retry --all: %d %q", code, out)
	}
	<-d.attempts
	<-d.attempts
	out, errOut, code = d.queueCmd("delete", a, "0000000000000000", b)
	if code != 1 || out != a+": deleted\n"+b+": deleted\n" || errOut != "posthorn: 0000000000000000: no such message in the queue\n" {
		t.Fatalf("delete: %d %q %q", code, out, errOut)
	}
	if out, _, _ = d.queueCmd("list"); out != "The queue is empty.\n" {
		t.Fatalf("after delete:\n%s", out)
	}
}

func waitSettled(t *testing.T, d *ctlDaemon, id string) {
	t.Helper()
	for {
		st, ok := d.q.Status(id)
		if !ok || !st.Running {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

func TestQueueUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{}, {"frobnicate"}, {"show"}, {"show", "a", "b"}, {"retry"}, {"retry", "--all", "x"},
		{"list", "--body"}, {"hold"}, {"list", "x"}, {"hold", "--json", "x"}, {"list", "--nope"},
	} {
		var o, e bytes.Buffer
		if code := runQueue(context.Background(), args, &o, &e); code != 2 || !strings.Contains(e.String(), "Usage:") {
			t.Errorf("queue %q: exit %d, stderr %q", args, code, e.String())
		}
	}
}

func TestQueueWithoutDaemonSaysSo(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "posthorn.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("data_dir = %q\n", dir)), 0o600)
	var o, e bytes.Buffer
	code := runQueue(context.Background(), []string{"list", "-c", cfg}, &o, &e)
	want := "posthorn: cannot reach the daemon at " + filepath.Join(dir, "ctl.sock") + ": is posthorn serve running?"
	if code != 1 || !strings.HasPrefix(e.String(), want) || strings.Count(e.String(), "\n") != 1 {
		t.Fatalf("exit %d, stderr %q", code, e.String())
	}
}
