package smtpserver

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/posthorn/posthorn/internal/testutil"
)

// recorder is a Metrics that counts events as "name listener label".
type recorder struct {
	mu     sync.Mutex
	counts map[string]int
	ended  chan struct{}
}

func (r *recorder) add(format string, a ...any) {
	r.mu.Lock()
	r.counts[fmt.Sprintf(format, a...)]++
	r.mu.Unlock()
}
func (r *recorder) get(k string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.counts[k]
}
func (r *recorder) Connection(l, o string)     { r.add("conn %s %s", l, o) }
func (r *recorder) SessionStart(l string)      { r.add("start %s", l) }
func (r *recorder) SessionEnd(l, o string)     { r.add("end %s %s", l, o); r.ended <- struct{}{} }
func (r *recorder) MessageRefused(l, x string) { r.add("refused %s %s", l, x) }
func (r *recorder) RecipientRefused(l, x string) {
	r.add("rcpt_refused %s %s", l, x)
}
func (r *recorder) MessageAccepted(l string, size int64, d time.Duration) {
	if d <= 0 || d > time.Minute {
		r.add("bad duration %s", d)
	}
	r.add("accepted %s %d", l, size)
}

func TestMetricsCountSessionsMessagesAndRefusals(t *testing.T) {
	rec := &recorder{counts: map[string]int{}, ended: make(chan struct{}, 10)}
	h := newHarness(t, func(o *Options) { o.Metrics = rec; o.Limits.MessageSize = 200 })
	c := testutil.Dial(t, h.addr[RoleSMTP])
	c.ExpectCmd("EHLO client.example.org", 250, "")
	c.ExpectCmd("MAIL FROM:<a@example.org>", 250, "")
	c.ExpectCmd("RCPT TO:<nobody@example.test>", 550, "5.1.1")
	c.ExpectCmd("RCPT TO:<x@elsewhere.example>", 550, "5.7.1")
	c.ExpectCmd("RCPT TO:<alice@example.test>", 250, "")
	c.ExpectCmd("DATA", 354, "")
	c.ExpectCmd(msg+".", 250, "")
	c.ExpectCmd("MAIL FROM:<a@example.org> SIZE=1000", 552, "5.3.4")
	c.ExpectCmd("MAIL FROM:<a@example.org>", 250, "")
	c.ExpectCmd("RCPT TO:<alice@example.test>", 250, "")
	c.ExpectCmd("DATA", 354, "")
	c.ExpectCmd(strings.Repeat("x", 300)+"\r\n.", 552, "5.3.4")
	c.ExpectCmd("QUIT", 221, "")
	<-rec.ended

	c = testutil.Dial(t, h.addr[RoleSMTP])
	c.ExpectCmd("EHLO client.example.org", 250, "")
	c.Conn.Close()
	<-rec.ended

	for k, want := range map[string]int{
		"conn smtp accepted":                        2,
		"start smtp":                                2,
		"end smtp quit":                             1,
		"end smtp disconnect":                       1,
		"rcpt_refused smtp unknown_user":            1,
		"rcpt_refused smtp policy":                  1,
		fmt.Sprintf("accepted smtp %d", len(msg)-1): 1, // one dot unstuffed
		"refused smtp size":                         2,
	} {
		if got := rec.get(k); got != want {
			t.Errorf("%q = %d, want %d (all: %v)", k, got, want, rec.counts)
		}
	}
	if n := len(rec.counts); n != 8 {
		t.Errorf("unexpected events: %v", rec.counts)
	}
}
