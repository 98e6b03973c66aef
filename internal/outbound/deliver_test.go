package outbound

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"slices"
	"strings"
	"testing"

	"github.com/posthorn/posthorn/internal/dns"
	"github.com/posthorn/posthorn/internal/dns/dnstest"
	"github.com/posthorn/posthorn/internal/queue"
	"github.com/posthorn/posthorn/internal/smtpserver"
	"github.com/posthorn/posthorn/internal/spool"
	"github.com/posthorn/posthorn/internal/testutil"
)

const plainMsg = "From: a@posthorn.test\r\nTo: b@example.net\r\nSubject: hi\r\n\r\nHello.\r\n.leading dot\r\n..two dots\r\n"

func mx(host string, pref uint16) *net.MX { return &net.MX{Host: host, Pref: pref} }

func TestLookupMX(t *testing.T) {
	r := dnstest.NewResolver(dnstest.Zone{
		"example.net":      {MX: []*net.MX{mx("c.example.net", 20), mx("a.example.net", 10), mx("b.example.net", 10), mx("d.example.net", 30)}},
		"implicit.example": {A: []string{"127.0.0.2"}},
		"null.example":     {MX: []*net.MX{mx(".", 0)}},
		"noaddr.example":   {TXT: []string{"v=spf1 -all"}},
		"servfail.example": {ServFail: true},
		"self.example":     {MX: []*net.MX{mx("other.example", 5), mx("me.example", 10), mx("backup.example", 10), mx("worse.example", 20)}},
		"onlyself.example": {MX: []*net.MX{mx("me.example", 10), mx("worse.example", 20)}},
	})
	ctx := context.Background()
	reverse := func(n int, swap func(i, j int)) {
		for i := 0; i < n/2; i++ {
			swap(i, n-1-i)
		}
	}
	hosts, err := LookupMX(ctx, r, "example.net", "", reverse)
	if want := []string{"b.example.net", "a.example.net", "c.example.net", "d.example.net"}; err != nil || !slices.Equal(hosts, want) {
		t.Errorf("ordered MX: %q, %v; want %q", hosts, err, want)
	}
	// Equal preferences are shuffled: with the real shuffle both orders show up.
	seen := map[string]bool{}
	for i := 0; i < 200 && len(seen) < 2; i++ {
		hosts, _ := LookupMX(ctx, r, "example.net", "", nil)
		seen[hosts[0]] = true
		if hosts[2] != "c.example.net" || hosts[3] != "d.example.net" {
			t.Fatalf("shuffle crossed preferences: %q", hosts)
		}
	}
	if len(seen) != 2 {
		t.Errorf("equal-preference MX hosts never shuffled: %v", seen)
	}
	if hosts, err := LookupMX(ctx, r, "implicit.example", "", nil); err != nil || !slices.Equal(hosts, []string{"implicit.example"}) {
		t.Errorf("implicit MX: %q, %v", hosts, err)
	}
	if _, err := LookupMX(ctx, r, "null.example", "", nil); !errors.Is(err, ErrNullMX) {
		t.Errorf("null MX: %v", err)
	}
	for _, d := range []string{"noaddr.example", "nxdomain.example"} {
		if _, err := LookupMX(ctx, r, d, "", nil); !errors.Is(err, ErrNoDomain) {
			t.Errorf("%s: %v, want ErrNoDomain", d, err)
		}
	}
	if _, err := LookupMX(ctx, r, "servfail.example", "", nil); !dns.IsTemporary(err) {
		t.Errorf("SERVFAIL: %v, want temporary", err)
	}
	if hosts, err := LookupMX(ctx, r, "self.example", "ME.example.", nil); err != nil || !slices.Equal(hosts, []string{"other.example"}) {
		t.Errorf("MX list with ourselves: %q, %v; want only the more preferred host", hosts, err)
	}
	if _, err := LookupMX(ctx, r, "onlyself.example", "me.example", nil); !errors.Is(err, ErrLoop) {
		t.Errorf("we are the best MX: %v, want ErrLoop", err)
	}
}

// TestDeliverOverSTARTTLSToPosthorn: MX records from a real DNS server on
// loopback, posthorn's own server on 127.0.0.2, both recipients of the
// domain in one transaction, STARTTLS, the body arriving byte-exact.
func TestDeliverOverSTARTTLSToPosthorn(t *testing.T) {
	port, lns := listenSamePort(t, "127.0.0.2")
	p := startPosthorn(t, lns[0], smtpserver.RoleSMTP, "example.net other.example", nil)
	srv := dnstest.NewServer(t, dnstest.Zone{
		"example.net":     {MX: []*net.MX{mx("mx.example.net", 10)}},
		"mx.example.net":  {A: []string{"127.0.0.2"}},
		"other.example":   {MX: []*net.MX{mx("mx.example.net", 10)}},
		"posthorn.test":   {A: []string{"127.0.0.1"}},
		"nothing.example": {},
	})
	o := testOptions(t, nil, port)
	o.Resolver = dns.NewClient(dns.ClientOptions{Servers: []string{srv.Addr()}})
	d := newDeliverer(t, o)

	e := env("a@posthorn.test", plainMsg, "b@example.net", "c@Example.NET", "d@other.example")
	out := deliver(d, e, plainMsg)
	wantStatus(t, out, queue.Delivered, queue.Delivered, queue.Delivered)
	det, ok := ParseDetail(out[0].Detail)
	if !ok || det.RemoteMTA != "mx.example.net" || det.RemoteIP != "127.0.0.2" || det.Status != "2.0.0" || !strings.HasPrefix(det.Diagnostic, "250 ") {
		t.Errorf("detail %q parsed as %+v", out[0].Detail, det)
	}
	envs := p.envelopes()
	if len(envs) != 2 {
		t.Fatalf("%d transactions, want 2 (one per domain)", len(envs))
	}
	slices.SortFunc(envs, func(a, b *spool.Envelope) int { return len(b.Recipients) - len(a.Recipients) })
	if len(envs[0].Recipients) != 2 || envs[0].Recipients[0].Addr != "b@example.net" || envs[0].Recipients[1].Addr != "c@Example.NET" {
		t.Errorf("example.net transaction: %+v", envs[0].Recipients)
	}
	for _, e := range envs {
		if e.From != "a@posthorn.test" {
			t.Errorf("sender %q", e.From)
		}
		body := p.body(t, e)
		_, got, ok := strings.Cut(body, "\r\nFrom: ")
		if !ok || "From: "+got != plainMsg {
			t.Errorf("body not byte-exact:\n%q", body)
		}
		if !strings.Contains(body, "with ESMTPS") {
			t.Errorf("not delivered over TLS; Received: %q", body[:strings.Index(body, "\r\nFrom: ")])
		}
	}
}

func TestFirstMXDownSecondUsed(t *testing.T) {
	port, lns := listenSamePort(t, "127.0.0.2")
	f := &fake{}
	f.serve(t, lns[0])
	r := dnstest.NewResolver(dnstest.Zone{
		"example.net":     {MX: []*net.MX{mx("mx1.example.net", 10), mx("mx2.example.net", 20)}},
		"mx1.example.net": {A: []string{"127.0.0.3"}}, // nothing listens there
		"mx2.example.net": {A: []string{"127.0.0.2"}},
	})
	d := newDeliverer(t, testOptions(t, r, port))
	out := deliver(d, env("a@posthorn.test", plainMsg, "b@example.net"), plainMsg)
	wantStatus(t, out, queue.Delivered)
	if !strings.HasPrefix(out[0].Detail, "mx2.example.net[127.0.0.2]: 250 2.0.0 ") {
		t.Errorf("detail %q", out[0].Detail)
	}
	if got := f.messages(); len(got) != 1 || got[0].Body != plainMsg {
		t.Fatalf("messages: %+v", got)
	}
}

func TestAllAddressesOfAHostTried(t *testing.T) {
	port, lns := listenSamePort(t, "127.0.0.5")
	f := &fake{}
	f.serve(t, lns[0])
	r := dnstest.NewResolver(dnstest.Zone{
		"example.net":    {MX: []*net.MX{mx("mx.example.net", 10)}},
		"mx.example.net": {A: []string{"127.0.0.4", "127.0.0.5"}},
	})
	d := newDeliverer(t, testOptions(t, r, port))
	out := deliver(d, env("a@posthorn.test", plainMsg, "b@example.net"), plainMsg)
	wantStatus(t, out, queue.Delivered)
}

func TestNoMXFallsBackToAddress(t *testing.T) {
	port, lns := listenSamePort(t, "127.0.0.2")
	f := &fake{}
	f.serve(t, lns[0])
	r := dnstest.NewResolver(dnstest.Zone{"example.net": {A: []string{"127.0.0.2"}}})
	d := newDeliverer(t, testOptions(t, r, port))
	out := deliver(d, env("a@posthorn.test", plainMsg, "b@example.net"), plainMsg)
	wantStatus(t, out, queue.Delivered)
	if !strings.HasPrefix(out[0].Detail, "example.net[127.0.0.2]: 250") {
		t.Errorf("detail %q", out[0].Detail)
	}
}

func TestDestinationErrors(t *testing.T) {
	port := closedPort(t, "127.0.0.2")
	r := dnstest.NewResolver(dnstest.Zone{
		"null.example":     {MX: []*net.MX{mx(".", 0)}},
		"servfail.example": {ServFail: true},
		"down.example":     {MX: []*net.MX{mx("mx.down.example", 10)}},
		"mx.down.example":  {A: []string{"127.0.0.2"}},
		"gone.example":     {MX: []*net.MX{mx("mx.gone.example", 10)}},
		"mxdns.example":    {MX: []*net.MX{mx("mx.mxdns.example", 10)}},
		"mx.mxdns.example": {Timeout: true},
	})
	d := newDeliverer(t, testOptions(t, r, port))
	for _, tc := range []struct {
		rcpt   string
		status queue.Status
		code   string
	}{
		{"x@null.example", queue.Failed, "5.1.10"},
		{"x@nxdomain.example", queue.Failed, "5.1.2"},
		{"x@servfail.example", queue.Deferred, "4.4.3"},
		{"x@down.example", queue.Deferred, "4.4.1"}, // connection refused
		{"x@gone.example", queue.Failed, "5.4.4"},   // the MX host does not exist
		{"x@mxdns.example", queue.Deferred, "4.4.3"},
	} {
		out := deliver(d, env("a@posthorn.test", plainMsg, tc.rcpt), plainMsg)
		det, _ := ParseDetail(out[0].Detail)
		if out[0].Status != tc.status || det.Status != tc.code {
			t.Errorf("%s: %v %q (status %q), want %v %s", tc.rcpt, out[0].Status, out[0].Detail, det.Status, tc.status, tc.code)
		}
	}
}

func TestMixedRecipientOutcomesInOneTransaction(t *testing.T) {
	port, lns := listenSamePort(t, "127.0.0.2")
	f := &fake{Rcpt: func(a string) string {
		switch {
		case strings.HasPrefix(a, "temp"):
			return "450 4.2.1 mailbox busy"
		case strings.HasPrefix(a, "bad"):
			return "550 5.1.1 no such user"
		}
		return "250 2.1.5 ok"
	}}
	f.serve(t, lns[0])
	r := dnstest.NewResolver(dnstest.Zone{"example.net": {A: []string{"127.0.0.2"}}})
	d := newDeliverer(t, testOptions(t, r, port))
	out := deliver(d, env("a@posthorn.test", plainMsg, "good@example.net", "temp@example.net", "bad@example.net"), plainMsg)
	wantStatus(t, out, queue.Delivered, queue.Deferred, queue.Failed)
	if want := "example.net[127.0.0.2]: 450 4.2.1 mailbox busy"; out[1].Detail != want {
		t.Errorf("deferred detail %q, want %q", out[1].Detail, want)
	}
	det, ok := ParseDetail(out[2].Detail)
	if !ok || det.Status != "5.1.1" || det.Diagnostic != "550 5.1.1 no such user" || det.RemoteMTA != "example.net" {
		t.Errorf("failed detail %q -> %+v", out[2].Detail, det)
	}
	msgs := f.messages()
	if len(msgs) != 1 || len(msgs[0].Rcpts) != 1 || msgs[0].Rcpts[0] != "good@example.net" {
		t.Fatalf("messages: %+v", msgs)
	}
}

func TestTemporaryFailuresDefer(t *testing.T) {
	for name, f := range map[string]*fake{
		"greeting 421": {Greeting: "421 4.3.2 try later"},
		"MAIL 451":     {Mail: "451 4.3.0 local trouble"},
		"DATA 451":     {Data: "451 4.3.0 no"},
		"final 452":    {Final: "452 4.3.1 disk full"},
		"final 554":    {Final: "554 5.7.1 spam"}, // not temporary: a control
	} {
		t.Run(name, func(t *testing.T) {
			port, lns := listenSamePort(t, "127.0.0.2")
			f.serve(t, lns[0])
			r := dnstest.NewResolver(dnstest.Zone{"example.net": {A: []string{"127.0.0.2"}}})
			d := newDeliverer(t, testOptions(t, r, port))
			out := deliver(d, env("a@posthorn.test", plainMsg, "b@example.net", "c@example.net"), plainMsg)
			want := queue.Deferred
			if name == "final 554" {
				want = queue.Failed
			}
			wantStatus(t, out, want, want)
			if !strings.HasPrefix(out[0].Detail, "example.net[127.0.0.2]: 4") && want == queue.Deferred {
				t.Errorf("detail %q", out[0].Detail)
			}
		})
	}
}

func TestNoReplyAfterDataTimesOutDeferred(t *testing.T) {
	port, lns := listenSamePort(t, "127.0.0.2")
	f := &fake{NoFinal: true}
	f.serve(t, lns[0])
	r := dnstest.NewResolver(dnstest.Zone{"example.net": {A: []string{"127.0.0.2"}}})
	o := testOptions(t, r, port)
	o.Timeouts.DataFinal = 1 // expires at once
	d := newDeliverer(t, o)
	out := deliver(d, env("a@posthorn.test", plainMsg, "b@example.net"), plainMsg)
	wantStatus(t, out, queue.Deferred)
	if det, _ := ParseDetail(out[0].Detail); det.Status != "4.4.2" {
		t.Errorf("detail %q", out[0].Detail)
	}
}

func TestCanceledContextDefers(t *testing.T) {
	port, lns := listenSamePort(t, "127.0.0.2")
	(&fake{}).serve(t, lns[0])
	r := dnstest.NewResolver(dnstest.Zone{"example.net": {A: []string{"127.0.0.2"}}})
	d := newDeliverer(t, testOptions(t, r, port))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	e := env("a@posthorn.test", plainMsg, "b@example.net")
	out := d.Deliver(ctx, e, bodyFunc(plainMsg), all(e))
	wantStatus(t, out, queue.Deferred)
}

func TestHELOFallbackWithoutPipelining(t *testing.T) {
	port, lns := listenSamePort(t, "127.0.0.2")
	f := &fake{EHLOReply: "502 5.5.2 EHLO not implemented"}
	f.serve(t, lns[0])
	r := dnstest.NewResolver(dnstest.Zone{"example.net": {A: []string{"127.0.0.2"}}})
	d := newDeliverer(t, testOptions(t, r, port))
	out := deliver(d, env("a@posthorn.test", plainMsg, "b@example.net", "c@example.net"), plainMsg)
	wantStatus(t, out, queue.Delivered, queue.Delivered)
	cmds := f.commands()
	if !slices.Contains(cmds, "1: HELO client.posthorn.test") || !slices.Contains(cmds, "1: MAIL FROM:<a@posthorn.test>") {
		t.Errorf("commands: %q", cmds)
	}
	// Without PIPELINING every command goes on its own.
	for _, c := range f.chunks {
		if strings.Count(c, "\r\n") > 1 && !strings.Contains(c, "Subject:") {
			t.Errorf("commands batched without PIPELINING: %q", c)
		}
	}
}

func TestPipeliningSendsMailRcptsAndDataInOneWrite(t *testing.T) {
	port, lns := listenSamePort(t, "127.0.0.2")
	f := &fake{}
	f.serve(t, lns[0])
	r := dnstest.NewResolver(dnstest.Zone{"example.net": {A: []string{"127.0.0.2"}}})
	d := newDeliverer(t, testOptions(t, r, port))
	out := deliver(d, env("a@posthorn.test", plainMsg, "b@example.net", "c@example.net", "d@example.net"), plainMsg)
	wantStatus(t, out, queue.Delivered, queue.Delivered, queue.Delivered)
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.chunks {
		if strings.HasPrefix(c, "MAIL FROM:") {
			want := "MAIL FROM:<a@posthorn.test> SIZE=" + itoa(len(plainMsg)) + "\r\nRCPT TO:<b@example.net>\r\nRCPT TO:<c@example.net>\r\nRCPT TO:<d@example.net>\r\nDATA\r\n"
			if c != want {
				t.Fatalf("the read with MAIL was %q, want %q", c, want)
			}
			return
		}
	}
	t.Fatalf("no read began with MAIL: %q", f.chunks)
}

// With DATA in the pipelined group, a transaction whose recipients were
// all refused still ends cleanly: a server that refuses the DATA gets an
// RSET (MAIL was accepted), one that refused MAIL nothing more, and one
// that says 354 anyway a lone dot, never the message (RFC 2920 3.1). The
// connection serves the next message either way.
func TestPipelinedDataWithNoRecipientAccepted(t *testing.T) {
	refuse := func(string) string { return "550 5.1.1 no such user" }
	for name, c := range map[string]struct {
		f        *fake
		want     queue.Status
		wantCmds []string // in this order on connection 1, after the refused RCPT
	}{
		"DATA refused":  {&fake{Rcpt: refuse}, queue.Failed, []string{"1: DATA", "1: RSET"}},
		"MAIL refused":  {&fake{Mail: "553 5.7.1 sender refused"}, queue.Failed, []string{"1: DATA", "1: QUIT"}},
		"DATA accepted": {&fake{Rcpt: refuse, DataAlways: true}, queue.Failed, []string{"1: DATA", "1: QUIT"}},
	} {
		t.Run(name, func(t *testing.T) {
			port, lns := listenSamePort(t, "127.0.0.2")
			c.f.serve(t, lns[0])
			r := dnstest.NewResolver(dnstest.Zone{"example.net": {A: []string{"127.0.0.2"}}})
			d := newDeliverer(t, testOptions(t, r, port))
			out := deliver(d, env("a@posthorn.test", plainMsg, "b@example.net"), plainMsg)
			wantStatus(t, out, c.want)
			d.Close()
			cmds := c.f.commands()
			i := slices.Index(cmds, "1: RCPT TO:<b@example.net>")
			if i < 0 || !slices.Equal(cmds[i+1:min(len(cmds), i+1+len(c.wantCmds))], c.wantCmds) {
				t.Errorf("commands %q, want %q after the RCPT", cmds, c.wantCmds)
			}
			for _, m := range c.f.messages() {
				if m.Body != "" {
					t.Errorf("the message was sent although no recipient was accepted: %+v", m)
				}
			}
			if c.f.DataAlways && !slices.Contains(c.f.chunks, ".\r\n") {
				t.Errorf("the 354 was not ended with a lone dot: %q", c.f.chunks)
			}
		})
	}
}

func TestSizeLimitOfServerFailsWithoutSending(t *testing.T) {
	port, lns := listenSamePort(t, "127.0.0.2")
	f := &fake{Ext: []string{"PIPELINING", "SIZE 50", "8BITMIME"}}
	f.serve(t, lns[0])
	r := dnstest.NewResolver(dnstest.Zone{"example.net": {A: []string{"127.0.0.2"}}})
	d := newDeliverer(t, testOptions(t, r, port))
	out := deliver(d, env("a@posthorn.test", plainMsg, "b@example.net"), plainMsg)
	wantStatus(t, out, queue.Failed)
	if det, _ := ParseDetail(out[0].Detail); det.Status != "5.3.4" {
		t.Errorf("detail %q", out[0].Detail)
	}
	for _, c := range f.commands() {
		if strings.HasPrefix(c, "1: MAIL") {
			t.Errorf("MAIL sent for a message over the server's SIZE: %q", c)
		}
	}
}

func TestSMTPUTF8NeededButNotOffered(t *testing.T) {
	port, lns := listenSamePort(t, "127.0.0.2")
	f := &fake{Ext: []string{"PIPELINING", "8BITMIME"}}
	f.serve(t, lns[0])
	r := dnstest.NewResolver(dnstest.Zone{"example.net": {A: []string{"127.0.0.2"}}})
	d := newDeliverer(t, testOptions(t, r, port))

	e := env("a@posthorn.test", plainMsg, "jörg@example.net")
	e.SMTPUTF8 = true
	out := deliver(d, e, plainMsg)
	wantStatus(t, out, queue.Failed)
	if det, _ := ParseDetail(out[0].Detail); det.Status != "5.6.7" {
		t.Errorf("detail %q", out[0].Detail)
	}
	// Non-ASCII only in a header field needs it as well.
	utf8Hdr := "Subject: Grüße\r\n\r\nhi\r\n"
	e = env("a@posthorn.test", utf8Hdr, "b@example.net")
	e.SMTPUTF8 = true
	wantStatus(t, deliver(d, e, utf8Hdr), queue.Failed)

	// A message that asked for SMTPUTF8 but is all ASCII goes without it.
	e = env("a@posthorn.test", plainMsg, "b@example.net")
	e.SMTPUTF8 = true
	wantStatus(t, deliver(d, e, plainMsg), queue.Delivered)
	if m := f.messages(); len(m) != 1 || strings.Contains(m[0].Params, "SMTPUTF8") {
		t.Errorf("messages: %+v", m)
	}
}

func TestSMTPUTF8PassedOnWhenOffered(t *testing.T) {
	port, lns := listenSamePort(t, "127.0.0.2")
	f := &fake{}
	f.serve(t, lns[0])
	r := dnstest.NewResolver(dnstest.Zone{"example.net": {A: []string{"127.0.0.2"}}})
	d := newDeliverer(t, testOptions(t, r, port))
	body := "Subject: Grüße\r\n\r\nGrüße\r\n"
	e := env("jörg@posthorn.test", body, "zoë@example.net")
	e.SMTPUTF8 = true
	wantStatus(t, deliver(d, e, body), queue.Delivered)
	m := f.messages()
	if len(m) != 1 || m[0].From != "jörg@posthorn.test" || !strings.Contains(m[0].Params, "SMTPUTF8") || !strings.Contains(m[0].Params, "BODY=8BITMIME") || m[0].Body != body {
		t.Errorf("messages: %+v", m)
	}
}

func TestDSNParametersPassedOn(t *testing.T) {
	port, lns := listenSamePort(t, "127.0.0.2")
	f := &fake{}
	f.serve(t, lns[0])
	r := dnstest.NewResolver(dnstest.Zone{"example.net": {A: []string{"127.0.0.2"}}})
	d := newDeliverer(t, testOptions(t, r, port))
	e := env("a@posthorn.test", plainMsg, "b@example.net")
	e.Ret, e.EnvID = "HDRS", "id+1=x"
	e.Recipients[0].Notify = "SUCCESS,FAILURE"
	e.Recipients[0].ORcpt = "rfc822;B+x@Example.NET"
	wantStatus(t, deliver(d, e, plainMsg), queue.Delivered)
	m := f.messages()
	if len(m) != 1 || m[0].Params != "SIZE="+itoa(len(plainMsg))+" RET=HDRS ENVID=id+2B1+3Dx" || m[0].Rcpts[0] != "b@example.net NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;B+2Bx@Example.NET" {
		t.Errorf("messages: %+v", m)
	}

	// A server without DSN gets none of them.
	f.Ext = []string{"PIPELINING", "8BITMIME"}
	e.ID = "second"
	wantStatus(t, deliver(newDeliverer(t, testOptions(t, r, port)), e, plainMsg), queue.Delivered)
	m = f.messages()
	if m[1].Params != "" || m[1].Rcpts[0] != "b@example.net" {
		t.Errorf("parameters sent to a server without DSN: %+v", m[1])
	}
}

func TestSTARTTLSUsedWhenOffered(t *testing.T) {
	port, lns := listenSamePort(t, "127.0.0.2")
	cert := testutil.NewCert(t)
	f := &fake{TLS: tlsServerConfig(cert)}
	f.serve(t, lns[0])
	r := dnstest.NewResolver(dnstest.Zone{"example.net": {A: []string{"127.0.0.2"}}})
	d := newDeliverer(t, testOptions(t, r, port))
	wantStatus(t, deliver(d, env("a@posthorn.test", plainMsg, "b@example.net"), plainMsg), queue.Delivered)
	m := f.messages()
	if len(m) != 1 || !m[0].TLS {
		t.Fatalf("not over TLS: %+v", m)
	}
	// EHLO again after TLS (RFC 3207 4.2).
	if cmds := f.commands(); !slices.Equal(cmds[:3], []string{"1: EHLO client.posthorn.test", "1: STARTTLS", "1: EHLO client.posthorn.test"}) {
		t.Errorf("commands %q", cmds)
	}
}

// TestSTARTTLSResponseInjectionDiscarded: a reply pipelined after the 220
// to STARTTLS (CVE-2021-38371) is never read as a reply; the connection
// is given up and, at the "may" level, the host tried again in clear text.
func TestSTARTTLSResponseInjectionDiscarded(t *testing.T) {
	port, lns := listenSamePort(t, "127.0.0.2")
	cert := testutil.NewCert(t)
	f := &fake{TLS: tlsServerConfig(cert), StartTLS: "220 ready\r\n250 injected\r\n"}
	f.serve(t, lns[0])
	r := dnstest.NewResolver(dnstest.Zone{"example.net": {A: []string{"127.0.0.2"}}})
	d := newDeliverer(t, testOptions(t, r, port))
	wantStatus(t, deliver(d, env("a@posthorn.test", plainMsg, "b@example.net"), plainMsg), queue.Delivered)
	cmds := f.commands()
	var first []string
	for _, c := range cmds {
		if strings.HasPrefix(c, "1: ") {
			first = append(first, c)
		}
	}
	if !slices.Equal(first, []string{"1: EHLO client.posthorn.test", "1: STARTTLS"}) {
		t.Errorf("first connection went on after the injection: %q", first)
	}
	m := f.messages()
	if len(m) != 1 || m[0].TLS || m[0].Conn != 2 {
		t.Errorf("want delivery in clear text on a second connection: %+v", m)
	}

	// When TLS is required the injection defers.
	o := testOptions(t, r, port)
	o.TLSPolicy = func(context.Context, string, []string) (TLSPolicy, error) {
		return TLSPolicy{Level: TLSEncrypt, Source: "test"}, nil
	}
	d2 := newDeliverer(t, o)
	out := deliver(d2, env("a@posthorn.test", plainMsg, "b@example.net"), plainMsg)
	wantStatus(t, out, queue.Deferred)
	if !strings.Contains(out[0].Detail, "response injection") {
		t.Errorf("detail %q", out[0].Detail)
	}
}

func TestFailedHandshakeRetriedInClearText(t *testing.T) {
	port, lns := listenSamePort(t, "127.0.0.2")
	cert := testutil.NewCert(t)
	f := &fake{TLS: tlsServerConfig(cert), BreakTLS: true}
	f.serve(t, lns[0])
	r := dnstest.NewResolver(dnstest.Zone{"example.net": {A: []string{"127.0.0.2"}}})
	d := newDeliverer(t, testOptions(t, r, port))
	wantStatus(t, deliver(d, env("a@posthorn.test", plainMsg, "b@example.net"), plainMsg), queue.Delivered)
	m := f.messages()
	if len(m) != 1 || m[0].TLS || m[0].Conn != 2 || f.connCount() != 2 {
		t.Errorf("want a clear-text retry on a second connection: %+v", m)
	}
	for _, c := range f.commands() {
		if c == "2: STARTTLS" {
			t.Error("STARTTLS tried again on the clear-text retry")
		}
	}
}

func TestTLSRequiredLevels(t *testing.T) {
	port, lns := listenSamePort(t, "127.0.0.2", "127.0.0.3")
	cert := testutil.NewCert(t)
	plain := &fake{}
	plain.serve(t, lns[0])
	withTLS := &fake{TLS: tlsServerConfig(cert)}
	withTLS.serve(t, lns[1])
	r := dnstest.NewResolver(dnstest.Zone{
		"plain.example": {A: []string{"127.0.0.2"}},
		"tls.example":   {MX: []*net.MX{mx("localhost", 10), mx("other.tls.example", 20)}},
		"localhost":     {A: []string{"127.0.0.3"}},
	})
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(cert.PEM)
	var pol TLSPolicy
	o := testOptions(t, r, port)
	o.TLSConfig = cert.Client.Clone()
	o.TLSConfig.RootCAs = pool
	o.TLSPolicy = func(_ context.Context, domain string, hosts []string) (TLSPolicy, error) { return pol, nil }
	d := newDeliverer(t, o)
	try := func(rcpt string) queue.Outcome {
		t.Helper()
		return deliver(d, env("a@posthorn.test", plainMsg, rcpt), plainMsg)[0]
	}

	pol = TLSPolicy{Level: TLSEncrypt, Source: "test"}
	if o := try("x@plain.example"); o.Status != queue.Deferred || !strings.HasPrefix(o.Detail, "4.7.4 ") {
		t.Errorf("encrypt without STARTTLS: %+v", o)
	}
	pol = TLSPolicy{Level: TLSNone}
	if o := try("x@tls.example"); o.Status != queue.Delivered || withTLS.messages()[0].TLS {
		t.Errorf("level none: %+v %+v", o, withTLS.messages())
	}
	// verify: the certificate is for "localhost", the MX host's name.
	pol = TLSPolicy{Level: TLSVerify, Source: "test"}
	if o := try("x@tls.example"); o.Status != queue.Delivered || !withTLS.messages()[1].TLS {
		t.Errorf("verify: %+v", o)
	}
	// verify against names the certificate does not carry: no clear-text retry.
	pol = TLSPolicy{Level: TLSVerify, Names: []string{"mx.tls.example"}, Source: "test"}
	n := withTLS.connCount()
	if o := try("x@tls.example"); o.Status != queue.Deferred || !strings.HasPrefix(o.Detail, "4.7.5 ") {
		t.Errorf("verify with wrong names: %+v", o)
	}
	if withTLS.connCount() != n+1 {
		t.Errorf("%d connections for a failed verification, want 1", withTLS.connCount()-n)
	}
	// A VerifyPeer hook (DANE's place) decides instead of PKIX.
	var asked string
	pol = TLSPolicy{Level: TLSVerify, Source: "dane", VerifyPeer: func(host string, cs tlsConnState) error {
		asked = host
		return errors.New("no TLSA record matches")
	}}
	if o := try("x@tls.example"); o.Status != queue.Deferred || asked != "localhost" || !strings.Contains(o.Detail, "no TLSA record matches") {
		t.Errorf("VerifyPeer: %+v (asked %q)", o, asked)
	}
	// AllowHost (MTA-STS's place) filters the MX hosts.
	pol = TLSPolicy{Level: TLSVerify, Source: "mta-sts", AllowHost: func(h string) bool { return h == "mx.elsewhere.example" }}
	if o := try("x@tls.example"); o.Status != queue.Deferred || !strings.Contains(o.Detail, "mta-sts") {
		t.Errorf("AllowHost: %+v", o)
	}
}

func TestEightBitBodyConvertedToQuotedPrintable(t *testing.T) {
	port, lns := listenSamePort(t, "127.0.0.2")
	f := &fake{Ext: []string{"PIPELINING", "SIZE 1000000"}}
	f.serve(t, lns[0])
	r := dnstest.NewResolver(dnstest.Zone{"example.net": {A: []string{"127.0.0.2"}}})
	d := newDeliverer(t, testOptions(t, r, port))

	text := "Grüße aus Köln — ünïcödé\r\n.a line with a leading dot\r\n" + strings.Repeat("é", 60) + "\r\n"
	msg := "From: a@posthorn.test\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" + text
	e := env("a@posthorn.test", msg, "b@example.net")
	e.Body = "8BITMIME"
	wantStatus(t, deliver(d, e, msg), queue.Delivered)
	m := f.messages()
	if len(m) != 1 {
		t.Fatalf("messages %+v", m)
	}
	if strings.Contains(m[0].Params, "BODY=") || !strings.Contains(m[0].Params, "SIZE=") {
		t.Errorf("MAIL parameters %q", m[0].Params)
	}
	got := m[0].Body
	if has8bit([]byte(got)) {
		t.Fatalf("8-bit octets sent to a server without 8BITMIME:\n%s", got)
	}
	pm, err := mail.ReadMessage(strings.NewReader(got))
	if err != nil {
		t.Fatal(err)
	}
	if cte := pm.Header.Get("Content-Transfer-Encoding"); cte != "quoted-printable" {
		t.Errorf("Content-Transfer-Encoding %q", cte)
	}
	dec, err := io.ReadAll(quotedprintable.NewReader(pm.Body))
	if err != nil || string(dec) != text {
		t.Errorf("decoded body %q, %v; want %q", dec, err, text)
	}
}

func TestTo7BitMultipart(t *testing.T) {
	text := "Grüße\r\nzweite Zeile\r\n"
	bin := "\x00\x01\xff\xfe binary"
	msg := "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n" +
		"preamble\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" + text +
		"\r\n--b1\r\nContent-Type: application/octet-stream\r\n\r\n" + bin +
		"\r\n--b1\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\naGk=\r\n" +
		"--b1\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nÄrger\r\n" +
		"\r\n--b1--\r\nepilogue\r\n"
	out := to7bit([]byte(msg))
	if has8bit(out) {
		t.Fatalf("8-bit octets left:\n%s", out)
	}
	pm, err := mail.ReadMessage(strings.NewReader(string(out)))
	if err != nil {
		t.Fatal(err)
	}
	_, params, err := mime.ParseMediaType(pm.Header.Get("Content-Type"))
	if err != nil {
		t.Fatal(err)
	}
	mr := multipart.NewReader(pm.Body, params["boundary"])
	var parts []string
	for {
		p, err := mr.NextRawPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(p)
		switch p.Header.Get("Content-Transfer-Encoding") {
		case "quoted-printable":
			b, err = io.ReadAll(quotedprintable.NewReader(strings.NewReader(string(b))))
		case "base64":
			b, err = decodeBase64(string(b))
		}
		if err != nil {
			t.Fatal(err)
		}
		parts = append(parts, string(b))
	}
	if len(parts) != 4 || parts[0] != text || parts[1] != bin || parts[2] != "hi" {
		t.Fatalf("parts %q", parts)
	}
	inner, err := mail.ReadMessage(strings.NewReader(parts[3]))
	if err != nil {
		t.Fatal(err)
	}
	ib, _ := io.ReadAll(quotedprintable.NewReader(inner.Body))
	if inner.Header.Get("Content-Transfer-Encoding") != "quoted-printable" || string(ib) != "Ärger\r\n" {
		t.Errorf("inner message %q: %q", inner.Header, ib)
	}

	// A message without MIME becomes text/plain with its charset guessed.
	out = to7bit([]byte("Subject: x\r\n\r\nÄrger\r\n"))
	pm, _ = mail.ReadMessage(strings.NewReader(string(out)))
	if pm.Header.Get("Mime-Version") != "1.0" || pm.Header.Get("Content-Type") != "text/plain; charset=utf-8" || pm.Header.Get("Content-Transfer-Encoding") != "quoted-printable" {
		t.Errorf("non-MIME message converted to %q", out)
	}
	// 7-bit messages are left alone.
	if s := "Subject: x\r\n\r\nplain\r\n"; string(to7bit([]byte(s))) != s {
		t.Error("7-bit message changed")
	}
}

func TestConnectionReusedForTheNextMessage(t *testing.T) {
	port, lns := listenSamePort(t, "127.0.0.2")
	p := startPosthorn(t, lns[0], smtpserver.RoleSMTP, "example.net", nil)
	r := dnstest.NewResolver(dnstest.Zone{"example.net": {MX: []*net.MX{mx("mx.example.net", 10)}}, "mx.example.net": {A: []string{"127.0.0.2"}}})
	o := testOptions(t, r, port)
	o.IdleTimeout = 1 << 40 // never closes while the test runs
	d := newDeliverer(t, o)
	for i := range 3 {
		e := env("a@posthorn.test", plainMsg, "b@example.net")
		e.ID = "M" + itoa(i)
		wantStatus(t, deliver(d, e, plainMsg), queue.Delivered)
	}
	if len(p.envelopes()) != 3 || p.accepted() != 1 {
		t.Fatalf("%d messages over %d connections, want 3 over 1", len(p.envelopes()), p.accepted())
	}
}

func TestConnectionNotReusedAfterServerHungUp(t *testing.T) {
	port, lns := listenSamePort(t, "127.0.0.2")
	f := &fake{}
	f.serve(t, lns[0])
	r := dnstest.NewResolver(dnstest.Zone{"example.net": {A: []string{"127.0.0.2"}}})
	o := testOptions(t, r, port)
	o.IdleTimeout = 1 << 40
	d := newDeliverer(t, o)
	wantStatus(t, deliver(d, env("a@posthorn.test", plainMsg, "b@example.net"), plainMsg), queue.Delivered)
	// The server closes the idle connection behind our back.
	for _, list := range d.pool.idle {
		for _, ic := range list {
			ic.c.conn.Close()
		}
	}
	wantStatus(t, deliver(d, env("a@posthorn.test", plainMsg, "b@example.net"), plainMsg), queue.Delivered)
	if f.connCount() != 2 {
		t.Errorf("%d connections, want 2", f.connCount())
	}
}

// A connection from the pool is checked with an RSET that goes in the
// same write as the next transaction when the server pipelines, and on
// its own when it does not.
func TestReusedConnectionChecksWithRSET(t *testing.T) {
	for name, c := range map[string]struct {
		ext  []string
		want string // what a Read on connection 1 begins with
	}{
		"pipelining":    {nil, "RSET\r\nMAIL FROM:<a@posthorn.test>"},
		"no pipelining": {[]string{"8BITMIME"}, "RSET\r\n"},
	} {
		t.Run(name, func(t *testing.T) {
			port, lns := listenSamePort(t, "127.0.0.2")
			f := &fake{Ext: c.ext}
			f.serve(t, lns[0])
			r := dnstest.NewResolver(dnstest.Zone{"example.net": {A: []string{"127.0.0.2"}}})
			o := testOptions(t, r, port)
			o.IdleTimeout = 1 << 40
			d := newDeliverer(t, o)
			for range 2 {
				wantStatus(t, deliver(d, env("a@posthorn.test", plainMsg, "b@example.net"), plainMsg), queue.Delivered)
			}
			if f.connCount() != 1 || len(f.messages()) != 2 {
				t.Fatalf("%d messages over %d connections, want 2 over 1", len(f.messages()), f.connCount())
			}
			if !f.chunk(c.want) {
				t.Errorf("no read began with %q", c.want)
			}
			if c.ext != nil && f.chunk("RSET\r\nMAIL") {
				t.Errorf("RSET pipelined to a server without PIPELINING")
			}
		})
	}
}

// A pooled connection that the server closed, or whose RSET it refuses
// (421 after an idle timeout), is replaced by a new connection within the
// same attempt: the message is delivered once, not deferred.
func TestReusedConnectionFoundDeadIsReplaced(t *testing.T) {
	for name, f := range map[string]*fake{
		"closed by the server": {HangUp: true},
		"RSET refused":         {Rset: "421 4.4.2 idle too long, closing"},
	} {
		t.Run(name, func(t *testing.T) {
			port, lns := listenSamePort(t, "127.0.0.2")
			f.serve(t, lns[0])
			r := dnstest.NewResolver(dnstest.Zone{"example.net": {A: []string{"127.0.0.2"}}})
			o := testOptions(t, r, port)
			o.IdleTimeout = 1 << 40
			d := newDeliverer(t, o)
			for i := range 2 {
				e := env("a@posthorn.test", plainMsg, "b@example.net")
				e.ID = "M" + itoa(i)
				wantStatus(t, deliver(d, e, plainMsg), queue.Delivered)
			}
			msgs := f.messages()
			if len(msgs) != 2 || f.connCount() != 2 {
				t.Fatalf("%d messages over %d connections, want 2 over 2: %+v", len(msgs), f.connCount(), msgs)
			}
			for _, m := range msgs {
				if m.Body == "" || len(m.Rcpts) != 1 {
					t.Errorf("message %+v", m)
				}
			}
		})
	}
}

func TestSmarthostAuthOverSTARTTLS(t *testing.T) {
	port, lns := listenSamePort(t, "127.0.0.2")
	p := startPosthorn(t, lns[0], smtpserver.RoleSubmission, "relay.test", map[string]string{"me@posthorn.test": "s3cret"})
	// The resolver knows nothing: "[host]" is used without any lookup.
	r := dnstest.NewResolver(dnstest.Zone{})
	o := testOptions(t, r, 0)
	o.Smarthost = &Smarthost{Host: "[127.0.0.2]", Port: port, RequireTLS: true, Username: "me@posthorn.test", Password: "s3cret"}
	d := newDeliverer(t, o)
	e := env("me@posthorn.test", plainMsg, "x@one.example", "y@two.example")
	wantStatus(t, deliver(d, e, plainMsg), queue.Delivered, queue.Delivered)
	envs := p.envelopes()
	if len(envs) != 1 || len(envs[0].Recipients) != 2 || envs[0].AuthUser != "me@posthorn.test" {
		t.Fatalf("smarthost got %+v", envs)
	}
	if len(r.Queries()) != 0 {
		t.Errorf("DNS asked for a bracketed smarthost: %q", r.Queries())
	}

	// Wrong password: deferred, and the detail says why.
	o.Smarthost = &Smarthost{Host: "[127.0.0.2]", Port: port, RequireTLS: true, Username: "me@posthorn.test", Password: "wrong"}
	d2 := newDeliverer(t, o)
	out := deliver(d2, env("me@posthorn.test", plainMsg, "x@one.example"), plainMsg)
	wantStatus(t, out, queue.Deferred)
	if !strings.Contains(out[0].Detail, "authentication failed") || strings.Contains(out[0].Detail, "wrong") {
		t.Errorf("detail %q", out[0].Detail)
	}
}

func TestSmarthostWithoutTLS(t *testing.T) {
	port, lns := listenSamePort(t, "127.0.0.2")
	f := &fake{Users: map[string]string{"u": "p"}}
	f.serve(t, lns[0])
	r := dnstest.NewResolver(dnstest.Zone{"relay.test": {MX: []*net.MX{mx("mx.relay.test", 10)}}, "mx.relay.test": {A: []string{"127.0.0.2"}}})
	o := testOptions(t, r, 0)
	// Required TLS that is not offered defers.
	o.Smarthost = &Smarthost{Host: "relay.test", Port: port, RequireTLS: true}
	out := deliver(newDeliverer(t, o), env("a@posthorn.test", plainMsg, "x@one.example"), plainMsg)
	wantStatus(t, out, queue.Deferred)
	// Credentials are not sent in clear text...
	o.Smarthost = &Smarthost{Host: "relay.test", Port: port, Username: "u", Password: "p"}
	out = deliver(newDeliverer(t, o), env("a@posthorn.test", plainMsg, "x@one.example"), plainMsg)
	wantStatus(t, out, queue.Deferred)
	for _, c := range f.commands() {
		if strings.Contains(c, "AUTH") {
			t.Fatalf("AUTH sent in clear text: %q", c)
		}
	}
	// ...unless allowed; the MX of an unbracketed smarthost is used.
	o.Smarthost = &Smarthost{Host: "relay.test", Port: port, Username: "u", Password: "p", AllowPlaintextAuth: true}
	out = deliver(newDeliverer(t, o), env("a@posthorn.test", plainMsg, "x@one.example"), plainMsg)
	wantStatus(t, out, queue.Delivered)
	if m := f.messages(); len(m) != 1 || m[0].Auth != "u" {
		t.Errorf("messages %+v", m)
	}
}

func TestParseSmarthost(t *testing.T) {
	for in, want := range map[string]Smarthost{
		"relay.example.net":        {Host: "relay.example.net", Port: 25},
		"relay.example.net:587":    {Host: "relay.example.net", Port: 587},
		"[relay.example.net]:587":  {Host: "[relay.example.net]", Port: 587},
		"[192.0.2.1]":              {Host: "[192.0.2.1]", Port: 25},
		"[IPv6:2001:db8::1]:2525":  {Host: "[IPv6:2001:db8::1]", Port: 2525},
		"  [relay.example.net]  ":  {Host: "[relay.example.net]", Port: 25},
		"relay.example.net:00025":  {Host: "relay.example.net", Port: 25},
		"[relay.example.net]:0465": {Host: "[relay.example.net]", Port: 465},
	} {
		got, err := ParseSmarthost(in)
		if err != nil || got != want {
			t.Errorf("ParseSmarthost(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "[relay", "[]", "[relay]x", "relay:0", "relay:99999", "bad host", "[a]:x"} {
		if _, err := ParseSmarthost(in); err == nil {
			t.Errorf("ParseSmarthost(%q) succeeded", in)
		}
	}
}

func TestParseDetail(t *testing.T) {
	for in, want := range map[string]Detail{
		"mx1.example.net[192.0.2.1]: 550 5.1.1 user unknown": {Status: "5.1.1", RemoteMTA: "mx1.example.net", RemoteIP: "192.0.2.1", Diagnostic: "550 5.1.1 user unknown"},
		"mx[2001:db8::1]: 451 try later":                     {Status: "4.0.0", RemoteMTA: "mx", RemoteIP: "2001:db8::1", Diagnostic: "451 try later"},
		"5.1.10 null.example: the domain accepts no mail":    {Status: "5.1.10"},
		"4.4.1 connect to mx[127.0.0.2]:25: refused":         {Status: "4.4.1"},
	} {
		got, ok := ParseDetail(in)
		want.Text = in
		if !ok || got != want {
			t.Errorf("ParseDetail(%q) = %+v, %v; want %+v", in, got, ok, want)
		}
	}
	for _, in := range []string{"maildir: disk full", "x[1]: hello", ""} {
		if d, ok := ParseDetail(in); ok || d.Text != in {
			t.Errorf("ParseDetail(%q) = %+v, %v", in, d, ok)
		}
	}
}

func TestLimiter(t *testing.T) {
	l := newLimiter(3, 1)
	rel, err := l.acquire(context.Background(), "a")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := l.acquire(ctx, "a"); err == nil {
		t.Fatal("second delivery to a full destination started")
	}
	relB, err := l.acquire(context.Background(), "b")
	if err != nil {
		t.Fatal("another destination blocked:", err)
	}
	rel()
	rel2, err := l.acquire(ctx, "a")
	if err != nil {
		// The canceled context may lose the race against a free slot
		// either way; with a free slot it must not be needed.
		rel2, err = l.acquire(context.Background(), "a")
		if err != nil {
			t.Fatal(err)
		}
	}
	rel2()
	relB()
	if len(l.per) != 0 || len(l.total) != 0 {
		t.Errorf("limiter not empty after release: %v, %d", l.per, len(l.total))
	}
}

// TestIPv6FirstThenIPv4: a host's AAAA addresses are tried before its A
// addresses, and a dead IPv6 address falls back to IPv4.
func TestIPv6FirstThenIPv4(t *testing.T) {
	ln6, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skip("no IPv6 loopback:", err)
	}
	ln6.Close()
	port, lns := listenSamePort(t, "::1", "127.0.0.2")
	v6, v4 := &fake{}, &fake{}
	v6.serve(t, lns[0])
	v4.serve(t, lns[1])
	r := dnstest.NewResolver(dnstest.Zone{
		"both.example":  {A: []string{"127.0.0.2"}, AAAA: []string{"::1"}},
		"dead6.example": {A: []string{"127.0.0.3"}, AAAA: []string{"::1"}},
	})
	d := newDeliverer(t, testOptions(t, r, port))
	wantStatus(t, deliver(d, env("a@posthorn.test", plainMsg, "x@both.example"), plainMsg), queue.Delivered)
	if len(v6.messages()) != 1 || len(v4.messages()) != 0 {
		t.Fatalf("IPv6 not tried first: v6 %d, v4 %d", len(v6.messages()), len(v4.messages()))
	}
	o := testOptions(t, r, port)
	o.PreferIPv4 = true
	wantStatus(t, deliver(newDeliverer(t, o), env("a@posthorn.test", plainMsg, "x@both.example"), plainMsg), queue.Delivered)
	if len(v4.messages()) != 1 {
		t.Fatal("PreferIPv4 ignored")
	}
	o = testOptions(t, r, port)
	o.Network = "ip4"
	wantStatus(t, deliver(newDeliverer(t, o), env("a@posthorn.test", plainMsg, "x@both.example"), plainMsg), queue.Delivered)
	if len(v4.messages()) != 2 {
		t.Fatal(`Network "ip4" ignored`)
	}
	// Nothing listens on ::1 at this port: refused, then IPv4.
	port2, lns2 := listenSamePort(t, "127.0.0.3")
	v4b := &fake{}
	v4b.serve(t, lns2[0])
	wantStatus(t, deliver(newDeliverer(t, testOptions(t, r, port2)), env("a@posthorn.test", plainMsg, "x@dead6.example"), plainMsg), queue.Delivered)
	if len(v4b.messages()) != 1 {
		t.Fatal("no fallback from IPv6 to IPv4")
	}
}

// has8bit reads eight octets at a time: an 8-bit octet is found at every
// position, in every length, and nothing is found in pure ASCII.
func TestHas8bitAtEveryPosition(t *testing.T) {
	for n := 0; n <= 33; n++ {
		b := bytes.Repeat([]byte{0x7f}, n)
		if has8bit(b) {
			t.Fatalf("ASCII of length %d taken as 8-bit", n)
		}
		for i := range n {
			b[i] = 0x80
			if !has8bit(b) {
				t.Fatalf("0x80 at %d of %d not found", i, n)
			}
			b[i] = 0x7f
		}
	}
}
