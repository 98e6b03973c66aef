package dsn

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"github.com/posthorn/posthorn/internal/spool"
)

var now = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func opts() Options {
	return Options{Hostname: "mx.example.com", Now: func() time.Time { return now }}
}

const origMsg = "From: Alice <alice@example.com>\r\n" +
	"To: Bob <bob@example.org>\r\n" +
	"Subject: Lunch\r\n" +
	"Message-ID: <m1@example.com>\r\n" +
	"\r\n" +
	"Shall we have lunch on Friday?\r\n" +
	"-- \r\nAlice\r\n"

func failedEnv() *spool.Envelope {
	return &spool.Envelope{
		ID: "QID1", From: "alice@example.com", Arrival: now.Add(-time.Hour), EnvID: "alice-42",
		Recipients: []spool.Recipient{
			{Addr: "bob@example.org", ORcpt: "rfc822;Bob.Smith@example.org", RecipientState: spool.RecipientState{
				Status: spool.Failed, LastAttempt: now,
				LastError: "mx1.example.org[192.0.2.1]: 550 5.1.1 <bob@example.org>: user unknown"}},
			{Addr: "carol@example.net", RecipientState: spool.RecipientState{Status: spool.Delivered}},
			{Addr: "dave@example.net", RecipientState: spool.RecipientState{
				Status: spool.Failed, LastAttempt: now,
				LastError: "maildir: open /var/mail/dave/tmp: permission denied"}},
		},
	}
}

// parsed is a report taken apart with Go's own MIME parsers.
type parsed struct {
	msg        *mail.Message
	reportType string
	parts      []part
	perMessage textproto.MIMEHeader
	perRcpt    []textproto.MIMEHeader
}

type part struct {
	ctype  string
	params map[string]string
	header textproto.MIMEHeader
	body   []byte
}

func parse(t *testing.T, data []byte) parsed {
	t.Helper()
	checkWire(t, data)
	m, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("net/mail: %v", err)
	}
	mt, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil {
		t.Fatalf("Content-Type: %v", err)
	}
	if mt != "multipart/report" {
		t.Fatalf("Content-Type %q, want multipart/report", mt)
	}
	p := parsed{msg: m, reportType: params["report-type"]}
	mr := multipart.NewReader(m.Body, params["boundary"])
	for {
		pt, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("multipart: %v", err)
		}
		body, err := io.ReadAll(pt)
		if err != nil {
			t.Fatalf("multipart part: %v", err)
		}
		ct, cp, err := mime.ParseMediaType(pt.Header.Get("Content-Type"))
		if err != nil {
			t.Fatalf("part Content-Type %q: %v", pt.Header.Get("Content-Type"), err)
		}
		p.parts = append(p.parts, part{ctype: ct, params: cp, header: pt.Header, body: body})
	}
	if len(p.parts) != 3 {
		t.Fatalf("%d parts, want 3", len(p.parts))
	}
	// The delivery-status body: blocks of header fields (RFC 3464 2.1).
	tr := textproto.NewReader(bufio.NewReader(bytes.NewReader(p.parts[1].body)))
	for i := 0; ; i++ {
		h, err := tr.ReadMIMEHeader()
		if len(h) > 0 {
			if i == 0 {
				p.perMessage = h
			} else {
				p.perRcpt = append(p.perRcpt, h)
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("delivery-status block %d: %v", i, err)
		}
	}
	return p
}

// checkWire checks CRLF everywhere and line lengths.
func checkWire(t *testing.T, data []byte) {
	t.Helper()
	for i, c := range data {
		if c == '\n' && (i == 0 || data[i-1] != '\r') {
			t.Fatalf("bare LF at offset %d", i)
		}
		if c == '\r' && (i+1 >= len(data) || data[i+1] != '\n') {
			t.Fatalf("bare CR at offset %d", i)
		}
	}
	for n, l := range strings.Split(string(data), "\r\n") {
		if len(l) > 998 {
			t.Fatalf("line %d has %d octets", n+1, len(l))
		}
	}
	if !bytes.HasSuffix(data, []byte("\r\n")) {
		t.Fatal("does not end with CRLF")
	}
}

func TestFailureReportStructure(t *testing.T) {
	env := failedEnv()
	r, err := Build(opts(), env, Failures(env, []int{0, 2}), strings.NewReader(origMsg))
	if err != nil {
		t.Fatal(err)
	}
	if r.To != "alice@example.com" || r.SMTPUTF8 || r.EightBit {
		t.Fatalf("report To %q SMTPUTF8 %v EightBit %v", r.To, r.SMTPUTF8, r.EightBit)
	}
	p := parse(t, r.Data)
	h := p.msg.Header
	for k, want := range map[string]string{
		"To":             "<alice@example.com>",
		"Subject":        "Undelivered Mail Returned to Sender",
		"Auto-Submitted": "auto-replied",
		"MIME-Version":   "1.0",
		"In-Reply-To":    "<m1@example.com>",
	} {
		if got := h.Get(k); got != want {
			t.Errorf("%s: %q, want %q", k, got, want)
		}
	}
	from, err := mail.ParseAddress(h.Get("From"))
	if err != nil || from.Address != "MAILER-DAEMON@mx.example.com" || from.Name != "Mail Delivery System" {
		t.Errorf("From %q: %v %v", h.Get("From"), from, err)
	}
	if d, err := h.Date(); err != nil || !d.Equal(now) {
		t.Errorf("Date %q: %v", h.Get("Date"), err)
	}
	if id := h.Get("Message-ID"); !strings.HasPrefix(id, "<") || !strings.HasSuffix(id, "@mx.example.com>") {
		t.Errorf("Message-ID %q", id)
	}
	if p.reportType != "delivery-status" {
		t.Errorf("report-type %q", p.reportType)
	}
	if p.parts[0].ctype != "text/plain" || p.parts[1].ctype != "message/delivery-status" || p.parts[2].ctype != "message/rfc822" {
		t.Fatalf("part types %s, %s, %s", p.parts[0].ctype, p.parts[1].ctype, p.parts[2].ctype)
	}
	text := string(p.parts[0].body)
	for _, want := range []string{"bob@example.org", "dave@example.net", "does not exist", "550 5.1.1", "Lunch", "mx1.example.org"} {
		if !strings.Contains(strings.Join(strings.Fields(text), " "), want) {
			t.Errorf("human-readable part lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "carol") {
		t.Error("human-readable part mentions a recipient not reported on")
	}

	pm := p.perMessage
	if pm.Get("Reporting-MTA") != "dns; mx.example.com" || pm.Get("Original-Envelope-Id") != "alice-42" {
		t.Errorf("per-message fields %v", pm)
	}
	if d, err := mail.ParseDate(pm.Get("Arrival-Date")); err != nil || !d.Equal(env.Arrival) {
		t.Errorf("Arrival-Date %q: %v", pm.Get("Arrival-Date"), err)
	}
	if len(p.perRcpt) != 2 {
		t.Fatalf("%d recipient blocks, want 2", len(p.perRcpt))
	}
	bob, dave := p.perRcpt[0], p.perRcpt[1]
	for k, want := range map[string]string{
		"Original-Recipient": "rfc822;Bob.Smith@example.org",
		"Final-Recipient":    "rfc822; bob@example.org",
		"Action":             "failed",
		"Status":             "5.1.1",
		"Remote-MTA":         "dns; mx1.example.org",
		"Diagnostic-Code":    "smtp; 550 5.1.1 <bob@example.org>: user unknown",
	} {
		if got := bob.Get(k); got != want {
			t.Errorf("bob %s: %q, want %q", k, got, want)
		}
	}
	if d, err := mail.ParseDate(bob.Get("Last-Attempt-Date")); err != nil || !d.Equal(now) {
		t.Errorf("Last-Attempt-Date %q: %v", bob.Get("Last-Attempt-Date"), err)
	}
	for k, want := range map[string]string{
		"Final-Recipient": "rfc822; dave@example.net",
		"Action":          "failed",
		"Status":          "5.0.0",
		"Diagnostic-Code": "X-Posthorn; maildir: open /var/mail/dave/tmp: permission denied",
	} {
		if got := dave.Get(k); got != want {
			t.Errorf("dave %s: %q, want %q", k, got, want)
		}
	}
	if dave.Get("Original-Recipient") != "" || dave.Get("Remote-MTA") != "" {
		t.Errorf("dave has fields he should not: %v", dave)
	}

	// The original comes back whole (RET absent: FULL, as Postfix).
	if got := string(p.parts[2].body); got != origMsg {
		t.Errorf("returned message:\n%q\nwant\n%q", got, origMsg)
	}
	inner, err := mail.ReadMessage(bytes.NewReader(p.parts[2].body))
	if err != nil || inner.Header.Get("Subject") != "Lunch" {
		t.Errorf("returned message does not parse: %v", err)
	}
}

func TestRetHdrsVersusFull(t *testing.T) {
	for _, tc := range []struct {
		ret       string
		maxReturn int64
		wantType  string
		wantBody  bool
	}{
		{"", 0, "message/rfc822", true},
		{"FULL", 0, "message/rfc822", true},
		{"HDRS", 0, "text/rfc822-headers", false},
		{"FULL", 50, "text/rfc822-headers", false}, // larger than MaxReturn
		{"FULL", -1, "text/rfc822-headers", false}, // never the whole message
	} {
		env := failedEnv()
		env.Ret = tc.ret
		o := opts()
		o.MaxReturn = tc.maxReturn
		r, err := Build(o, env, Failures(env, []int{0}), strings.NewReader(origMsg))
		if err != nil {
			t.Fatal(err)
		}
		p := parse(t, r.Data)
		orig := p.parts[2]
		if orig.ctype != tc.wantType {
			t.Errorf("RET=%q MaxReturn=%d: original as %s, want %s", tc.ret, tc.maxReturn, orig.ctype, tc.wantType)
		}
		hasBody := strings.Contains(string(orig.body), "lunch on Friday")
		if hasBody != tc.wantBody {
			t.Errorf("RET=%q MaxReturn=%d: body returned %v, want %v", tc.ret, tc.maxReturn, hasBody, tc.wantBody)
		}
		if !strings.Contains(string(orig.body), "Subject: Lunch\r\n") || !strings.Contains(string(orig.body), "Message-ID: <m1@example.com>") {
			t.Errorf("RET=%q: header not returned: %q", tc.ret, orig.body)
		}
		if !tc.wantBody {
			h, err := textproto.NewReader(bufio.NewReader(bytes.NewReader(append(orig.body, '\r', '\n')))).ReadMIMEHeader()
			if err != nil || h.Get("Subject") != "Lunch" {
				t.Errorf("text/rfc822-headers does not parse: %v %v", h, err)
			}
		}
	}
}

func TestLargeOriginalIsNotReadWhole(t *testing.T) {
	env := failedEnv()
	body := strings.Repeat("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\r\n", 40000) // 2.6 MB
	src := &countingReader{r: strings.NewReader(origMsg + body)}
	r, err := Build(opts(), env, Failures(env, []int{0}), src)
	if err != nil {
		t.Fatal(err)
	}
	p := parse(t, r.Data)
	if p.parts[2].ctype != "text/rfc822-headers" {
		t.Fatalf("a message over MaxReturn came back as %s", p.parts[2].ctype)
	}
	if src.n > DefaultMaxReturn+1 {
		t.Fatalf("read %d octets of the original, more than needed", src.n)
	}
	if !strings.Contains(string(p.parts[0].body), "too large") {
		t.Error("the human-readable part does not say why only the header is attached")
	}
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

func TestWants(t *testing.T) {
	for _, tc := range []struct {
		notify string
		a      Action
		want   bool
	}{
		{"", Failed, true},
		{"", Delayed, false},
		{"", Delivered, false},
		{"NEVER", Failed, false},
		{"NEVER", Delayed, false},
		{"SUCCESS", Failed, false},
		{"SUCCESS", Delivered, true},
		{"SUCCESS", Relayed, true},
		{"SUCCESS", Expanded, true},
		{"FAILURE", Failed, true},
		{"FAILURE", Delayed, false},
		{"FAILURE,DELAY", Delayed, true},
		{"delay,failure", Failed, true},
		{"SUCCESS,FAILURE,DELAY", Delivered, true},
		{"DELAY", Failed, false},
	} {
		if got := Wants(tc.notify, tc.a); got != tc.want {
			t.Errorf("Wants(%q, %s) = %v", tc.notify, tc.a, got)
		}
	}
}

func TestNotifyFiltering(t *testing.T) {
	env := &spool.Envelope{From: "alice@example.com", Recipients: []spool.Recipient{
		{Addr: "a@example.org"},                          // default: failures only
		{Addr: "b@example.org", Notify: "NEVER"},         // nothing
		{Addr: "c@example.org", Notify: "SUCCESS"},       // successes only
		{Addr: "d@example.org", Notify: "FAILURE,DELAY"}, // failures and delays
	}}
	all := []int{0, 1, 2, 3}
	rcpts := func(items []Item) (s []string) {
		for _, it := range items {
			s = append(s, env.Recipients[it.Rcpt].Addr)
		}
		return s
	}
	if got := strings.Join(rcpts(Failures(env, all)), " "); got != "a@example.org d@example.org" {
		t.Errorf("Failures: %s", got)
	}
	until := now.Add(96 * time.Hour)
	delays := Delays(env, all, until)
	if got := strings.Join(rcpts(delays), " "); got != "d@example.org" {
		t.Errorf("Delays: %s", got)
	}
	if delays[0].Action != Delayed || !delays[0].RetryUntil.Equal(until) {
		t.Errorf("delay item %+v", delays[0])
	}
	if got := strings.Join(rcpts(Successes(env, all, Delivered)), " "); got != "c@example.org" {
		t.Errorf("Successes: %s", got)
	}
	if _, err := Build(opts(), env, Failures(env, []int{1}), strings.NewReader(origMsg)); !errors.Is(err, ErrNothingToReport) {
		t.Errorf("NOTIFY=NEVER only: %v, want ErrNothingToReport", err)
	}
}

func TestNullSenderNeverBounced(t *testing.T) {
	env := failedEnv()
	env.From = ""
	if _, err := Build(opts(), env, Failures(env, []int{0}), strings.NewReader(origMsg)); !errors.Is(err, ErrNullSender) {
		t.Fatalf("Build for <>: %v, want ErrNullSender", err)
	}
	// The postmaster copy goes out instead, with the header only.
	r, err := BuildPostmasterCopy(opts(), "postmaster@example.com", env, []Item{{Rcpt: 0, Action: Failed}}, strings.NewReader(origMsg))
	if err != nil {
		t.Fatal(err)
	}
	if r.To != "postmaster@example.com" {
		t.Errorf("postmaster copy to %q", r.To)
	}
	if e := r.Envelope(); e.From != "" || len(e.Recipients) != 1 || e.Recipients[0].Addr != "postmaster@example.com" {
		t.Errorf("postmaster copy envelope %+v", e)
	}
	p := parse(t, r.Data)
	if got := p.msg.Header.Get("To"); got != "<postmaster@example.com>" {
		t.Errorf("To %q", got)
	}
	if got := p.msg.Header.Get("Subject"); got != "Postmaster Copy: Undelivered Mail" {
		t.Errorf("Subject %q", got)
	}
	if p.parts[2].ctype != "text/rfc822-headers" || strings.Contains(string(p.parts[2].body), "lunch") {
		t.Errorf("postmaster copy returns %s with the body", p.parts[2].ctype)
	}
	if !strings.Contains(strings.Join(strings.Fields(string(p.parts[0].body)), " "), "null sender") {
		t.Errorf("postmaster copy does not say the sender was <>:\n%s", p.parts[0].body)
	}
	if p.perRcpt[0].Get("Status") != "5.1.1" {
		t.Errorf("postmaster copy status %q", p.perRcpt[0].Get("Status"))
	}
}

func TestReportEnvelopeIsFromNullSender(t *testing.T) {
	env := failedEnv()
	r, err := Build(opts(), env, Failures(env, []int{0}), strings.NewReader(origMsg))
	if err != nil {
		t.Fatal(err)
	}
	e := r.Envelope()
	if e.From != "" || len(e.Recipients) != 1 || e.Recipients[0].Addr != "alice@example.com" || e.SMTPUTF8 || e.Body != "" || !e.Arrival.Equal(now) {
		t.Errorf("envelope %+v", e)
	}
}

func TestLongDiagnosticFolded(t *testing.T) {
	words := strings.Repeat("this server has a very long reply to give ", 60)
	long := "mx1.example.org[192.0.2.1]: 550 5.7.1 " + strings.TrimSpace(words)
	noSpace := "mx1.example.org[192.0.2.1]: 550 5.7.1 " + strings.Repeat("x", 2500)
	multi := "mx1.example.org[192.0.2.1]: 550-5.7.1 first line\r\n550-5.7.1 second line\n550 5.7.1 third line"
	env := failedEnv()
	env.Recipients[0].LastError = long
	env.Recipients[2].LastError = noSpace
	env.Recipients = append(env.Recipients, spool.Recipient{Addr: "erin@example.org", RecipientState: spool.RecipientState{Status: spool.Failed, LastError: multi}})
	r, err := Build(opts(), env, Failures(env, []int{0, 2, 3}), strings.NewReader(origMsg))
	if err != nil {
		t.Fatal(err)
	}
	p := parse(t, r.Data) // checks the 998 limit and CRLF
	// Folded at spaces within 78 octets.
	status := string(p.parts[1].body)
	for _, l := range strings.Split(status, "\r\n") {
		if len(l) > 78 && strings.Contains(strings.TrimSpace(l), " ") {
			t.Errorf("line of %d octets with a space to fold at: %q", len(l), l)
		}
	}
	// Unfolded, the diagnostic is the reply.
	if got, want := p.perRcpt[0].Get("Diagnostic-Code"), "smtp; 550 5.7.1 "+strings.TrimSpace(words); got != want {
		t.Errorf("unfolded Diagnostic-Code:\n%q\nwant\n%q", got, want)
	}
	if p.perRcpt[0].Get("Status") != "5.7.1" {
		t.Errorf("Status %q", p.perRcpt[0].Get("Status"))
	}
	nospace := strings.ReplaceAll(p.perRcpt[1].Get("Diagnostic-Code"), " ", "")
	if !strings.Contains(nospace, strings.Repeat("x", 2500)) {
		t.Error("a long word was lost rather than cut")
	}
	if got := p.perRcpt[2].Get("Diagnostic-Code"); got != "smtp; 550-5.7.1 first line 550-5.7.1 second line 550 5.7.1 third line" {
		t.Errorf("multi-line reply: %q", got)
	}
}

func TestEnvIDRoundTrip(t *testing.T) {
	for _, id := range []string{"alice-42", "QQ.1234@client.example", "x"} {
		env := failedEnv()
		env.EnvID = id
		r, err := Build(opts(), env, Failures(env, []int{0}), strings.NewReader(origMsg))
		if err != nil {
			t.Fatal(err)
		}
		if got := parse(t, r.Data).perMessage.Get("Original-Envelope-Id"); got != id {
			t.Errorf("Original-Envelope-Id %q, want %q", got, id)
		}
	}
	env := failedEnv()
	env.EnvID = ""
	r, _ := Build(opts(), env, Failures(env, []int{0}), strings.NewReader(origMsg))
	if got := parse(t, r.Data).perMessage.Values("Original-Envelope-Id"); len(got) != 0 {
		t.Errorf("Original-Envelope-Id without ENVID: %q", got)
	}
}

func TestBareLineEndsInOriginalBecomeCRLF(t *testing.T) {
	env := failedEnv()
	msg := "Subject: bare\nX-A: 1\r\n\nline one\nline two\rline three\r\n"
	r, err := Build(opts(), env, Failures(env, []int{0}), strings.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	p := parse(t, r.Data)
	if got, want := string(p.parts[2].body), "Subject: bare\r\nX-A: 1\r\n\r\nline one\r\nline two\r\nline three\r\n"; got != want {
		t.Errorf("returned %q, want %q", got, want)
	}
}

func TestEightBitOriginalWithoutSMTPUTF8(t *testing.T) {
	env := failedEnv()
	env.Body = "8BITMIME"
	msg := "Subject: Caf\xc3\xa9\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nCr\xc3\xa8me br\xc3\xbbl\xc3\xa9e\r\n"
	r, err := Build(opts(), env, Failures(env, []int{0}), strings.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	if r.EightBit || r.SMTPUTF8 {
		t.Fatalf("report for a non-SMTPUTF8 message is 8-bit (%v) or SMTPUTF8 (%v)", r.EightBit, r.SMTPUTF8)
	}
	p := parse(t, r.Data)
	o := p.parts[2]
	if o.ctype != "text/rfc822-headers" {
		t.Fatalf("8-bit original returned as %s", o.ctype)
	}
	// multipart decodes the quoted-printable for us.
	if got := string(o.body); got != "Subject: Caf\xc3\xa9\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n" {
		t.Errorf("headers %q", got)
	}
	if !strings.Contains(string(p.parts[0].body), "Caf\xc3\xa9") {
		t.Errorf("the subject is not in the human-readable part:\n%s", p.parts[0].body)
	}
	// An 8-bit body with a 7-bit header: header as is, 7bit.
	msg = "Subject: plain\r\n\r\nCr\xc3\xa8me\r\n"
	r, _ = Build(opts(), env, Failures(env, []int{0}), strings.NewReader(msg))
	if r.EightBit {
		t.Fatal("8-bit report")
	}
	p = parse(t, r.Data)
	if p.parts[2].ctype != "text/rfc822-headers" || string(p.parts[2].body) != "Subject: plain\r\n" {
		t.Errorf("got %s %q", p.parts[2].ctype, p.parts[2].body)
	}
}

func TestSMTPUTF8ReportIsRFC6533(t *testing.T) {
	env := &spool.Envelope{
		From: "jos\xc3\xa9@example.com", SMTPUTF8: true, Arrival: now,
		Recipients: []spool.Recipient{{Addr: "m\xc3\xbcller@b\xc3\xbccher.example", RecipientState: spool.RecipientState{
			Status: spool.Failed, LastError: "mx.b\xc3\xbccher.example[192.0.2.7]: 550 5.1.1 unbekannt"}}},
	}
	msg := "From: jos\xc3\xa9@example.com\r\nSubject: Gr\xc3\xbc\xc3\x9fe\r\n\r\nHallo\r\n"
	r, err := Build(opts(), env, Failures(env, []int{0}), strings.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	if !r.SMTPUTF8 || !r.EightBit {
		t.Fatalf("SMTPUTF8 %v EightBit %v", r.SMTPUTF8, r.EightBit)
	}
	if e := r.Envelope(); !e.SMTPUTF8 || e.Body != "8BITMIME" {
		t.Errorf("envelope %+v", e)
	}
	p := parse(t, r.Data)
	if p.parts[1].ctype != "message/global-delivery-status" || p.parts[2].ctype != "message/global" {
		t.Fatalf("parts %s, %s", p.parts[1].ctype, p.parts[2].ctype)
	}
	if got := p.perRcpt[0].Get("Final-Recipient"); got != "utf-8; m\xc3\xbcller@b\xc3\xbccher.example" {
		t.Errorf("Final-Recipient %q", got)
	}
	if string(p.parts[2].body) != msg {
		t.Errorf("original %q", p.parts[2].body)
	}
	if p.msg.Header.Get("To") != "<jos\xc3\xa9@example.com>" {
		t.Errorf("To %q", p.msg.Header.Get("To"))
	}
}

func TestDelayReport(t *testing.T) {
	env := failedEnv()
	env.Ret = "FULL"
	env.Recipients[0].Notify = "DELAY,FAILURE"
	env.Recipients[0].Status = spool.Pending
	env.Recipients[0].LastError = "mx1.example.org[192.0.2.1]: 451 4.3.0 try again later"
	until := env.Arrival.Add(5 * 24 * time.Hour)
	items := Delays(env, []int{0, 2}, until) // dave did not ask for DELAY
	if len(items) != 1 {
		t.Fatalf("%d items", len(items))
	}
	r, err := Build(opts(), env, items, strings.NewReader(origMsg))
	if err != nil {
		t.Fatal(err)
	}
	p := parse(t, r.Data)
	if got := p.msg.Header.Get("Subject"); got != "Delivery Status Notification (Delay)" {
		t.Errorf("Subject %q", got)
	}
	b := p.perRcpt[0]
	if b.Get("Action") != "delayed" || b.Get("Status") != "4.3.0" || b.Get("Diagnostic-Code") != "smtp; 451 4.3.0 try again later" {
		t.Errorf("recipient block %v", b)
	}
	if d, err := mail.ParseDate(b.Get("Will-Retry-Until")); err != nil || !d.Equal(until) {
		t.Errorf("Will-Retry-Until %q: %v", b.Get("Will-Retry-Until"), err)
	}
	// Even with RET=FULL, only the header: RET is about failures.
	if p.parts[2].ctype != "text/rfc822-headers" {
		t.Errorf("delay report returns %s", p.parts[2].ctype)
	}
	if !strings.Contains(string(p.parts[0].body), "do not need to send it again") {
		t.Errorf("delay text:\n%s", p.parts[0].body)
	}
}

func TestSuccessReport(t *testing.T) {
	env := failedEnv()
	env.Recipients[1].Notify = "SUCCESS"
	items := Successes(env, []int{1}, Delivered)
	items = append(items, Item{Rcpt: 0, Action: Relayed, Detail: "mx1.example.org[192.0.2.1]: 250 2.0.0 Ok: queued as 4Xyz"})
	r, err := Build(opts(), env, items, strings.NewReader(origMsg))
	if err != nil {
		t.Fatal(err)
	}
	p := parse(t, r.Data)
	if got := p.msg.Header.Get("Subject"); got != "Delivery Status Notification (Success)" {
		t.Errorf("Subject %q", got)
	}
	c, b := p.perRcpt[0], p.perRcpt[1]
	if c.Get("Action") != "delivered" || c.Get("Status") != "2.0.0" || c.Get("Diagnostic-Code") != "" {
		t.Errorf("delivered block %v", c)
	}
	if b.Get("Action") != "relayed" || b.Get("Status") != "2.0.0" || b.Get("Remote-MTA") != "dns; mx1.example.org" {
		t.Errorf("relayed block %v", b)
	}
	if p.parts[2].ctype != "text/rfc822-headers" {
		t.Errorf("success report returns %s", p.parts[2].ctype)
	}
}

func TestBuildRefusesBadInput(t *testing.T) {
	env := failedEnv()
	if _, err := Build(opts(), env, nil, strings.NewReader(origMsg)); !errors.Is(err, ErrNothingToReport) {
		t.Errorf("no items: %v", err)
	}
	if _, err := Build(opts(), env, []Item{{Rcpt: 7, Action: Failed}}, strings.NewReader(origMsg)); err == nil {
		t.Error("index out of range accepted")
	}
	if _, err := Build(opts(), env, []Item{{Rcpt: 0, Action: "exploded"}}, strings.NewReader(origMsg)); err == nil {
		t.Error("unknown action accepted")
	}
	if _, err := Build(Options{}, env, Failures(env, []int{0}), strings.NewReader(origMsg)); err == nil {
		t.Error("no hostname accepted")
	}
	// No original at all (the body is gone): still a report.
	r, err := Build(opts(), env, Failures(env, []int{0}), nil)
	if err != nil {
		t.Fatal(err)
	}
	parse(t, r.Data)
}

func TestHeaderInjectionImpossible(t *testing.T) {
	env := failedEnv()
	env.EnvID = "id\r\nBcc: victim@example.net"
	env.Recipients[0].LastError = "mx[192.0.2.1]: 550 5.1.1 bad\r\nX-Injected: yes\r\n\r\nbody"
	r, err := Build(opts(), env, Failures(env, []int{0}), strings.NewReader(origMsg))
	if err != nil {
		t.Fatal(err)
	}
	p := parse(t, r.Data)
	if p.perMessage.Get("Bcc") != "" || p.perRcpt[0].Get("X-Injected") != "" || len(p.perRcpt) != 1 {
		t.Errorf("a field was injected: %v %v", p.perMessage, p.perRcpt)
	}
}

func TestWriteFieldFolding(t *testing.T) {
	var b bytes.Buffer
	writeField(&b, "Subject", strings.Repeat("word ", 40))
	for _, l := range strings.Split(strings.TrimSuffix(b.String(), "\r\n"), "\r\n") {
		if len(l) > 78 {
			t.Errorf("line of %d octets: %q", len(l), l)
		}
	}
	b.Reset()
	writeField(&b, "X", "short")
	if b.String() != "X: short\r\n" {
		t.Errorf("%q", b.String())
	}
}
