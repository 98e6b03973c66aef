// Package dsn builds delivery status notifications: RFC 3464 reports on failed, delayed and successful deliveries.
//
// A report is a multipart/report; report-type=delivery-status message
// (RFC 6522) from MAILER-DAEMON to the envelope sender with three parts:
//
//  1. text/plain: what happened, in words for the person who sent the
//     message: which recipients, why, and what to do about it;
//  2. message/delivery-status: the same for programs (RFC 3464 2.2, 2.3):
//     Reporting-MTA, Original-Envelope-Id, Arrival-Date, and per recipient
//     Original-Recipient, Final-Recipient, Action, Status, Remote-MTA,
//     Diagnostic-Code, Last-Attempt-Date, Will-Retry-Until;
//  3. the original message (message/rfc822) or only its header
//     (text/rfc822-headers).
//
// # What is returned of the original
//
// Failure reports return the whole message unless the sender asked for
// RET=HDRS, as Postfix does when RET is absent (RFC 3461 4.3 leaves it to
// us), but only up to Options.MaxReturn (1 MiB by default): a larger
// message comes back as its header, which is enough for the sender to
// recognise it and does not bounce megabytes of attachments around. Delay
// and success reports always carry only the header: RET speaks of failed
// DSNs, and the message is still on its way.
//
// # 8-bit and UTF-8
//
// A report is plain 7-bit whenever it can be, so it reaches any server:
// the human-readable part is quoted-printable when it is not ASCII, and
// text in the delivery-status part is cut to ASCII. An original with
// 8-bit octets (8BITMIME, or raw UTF-8 in its header) is then returned as
// its header only, quoted-printable encoded if needed: message/rfc822
// cannot be encoded (RFC 2046 5.2.1), and an 8-bit report could reach a
// hop without 8BITMIME. When the original was an SMTPUTF8 transaction, or
// an address to report is not ASCII, the report follows RFC 6533 instead:
// message/global-delivery-status with utf-8 address types,
// message/global or message/global-headers for the original, and it must
// itself travel with SMTPUTF8 (Report.SMTPUTF8).
//
// # Who gets reports
//
// Reports go to the envelope sender. A message from the null sender <> is
// never reported on (RFC 5321 4.5.5, RFC 3461 6.2): Build refuses it with
// ErrNullSender, so the caller logs the failure and may send
// BuildPostmasterCopy to the postmaster instead. Reports themselves are
// sent from <>. Which recipients a sender wants reports on is their
// NOTIFY parameter: see Wants, Failures, Delays, Successes.
package dsn

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime/quotedprintable"
	"strings"
	"time"

	"github.com/posthorn/posthorn/internal/spool"
)

// Errors of Build.
var (
	// ErrNullSender: the message came from <>; it must never be bounced.
	ErrNullSender = errors.New("dsn: the message is from the null sender <> and is never reported on")
	// ErrNothingToReport: no items.
	ErrNothingToReport = errors.New("dsn: no recipient to report on")
)

// DefaultMaxReturn is the default of Options.MaxReturn.
const DefaultMaxReturn = 1 << 20

// Options configure Build.
type Options struct {
	// Hostname is ours: the Reporting-MTA, the domain of MAILER-DAEMON
	// and of the Message-ID. Required.
	Hostname string
	// MaxReturn is the size above which a failure report carries only the
	// original's header; 0 means DefaultMaxReturn, negative means never
	// the whole message.
	MaxReturn int64
	// Now replaces the clock in tests.
	Now func() time.Time
}

// Report is a notification ready to be queued: from <> to To, with the
// content in Data (CRLF line ends, headers folded).
type Report struct {
	// To is the envelope recipient: the original sender, or the
	// postmaster for a postmaster copy.
	To   string
	Data []byte
	// SMTPUTF8 says the report needs SMTPUTF8 (RFC 6533 form, or To is
	// not ASCII); EightBit that Data has 8-bit octets (BODY=8BITMIME).
	SMTPUTF8 bool
	EightBit bool
	Date     time.Time
}

// Envelope returns the spool envelope for the report: from <> to r.To.
// The caller writes r.Data into a spool.Writer and commits it with this.
func (r *Report) Envelope() spool.Envelope {
	env := spool.Envelope{
		From:       "",
		Recipients: []spool.Recipient{{Addr: r.To}},
		Arrival:    r.Date,
		SMTPUTF8:   r.SMTPUTF8,
		Listener:   "dsn",
	}
	if r.EightBit {
		env.Body = "8BITMIME"
	}
	return env
}

// Build makes the report on items of the message env, to env.From.
// original is the message as spooled; it is read only as far as needed.
// The items are reported as given: choose them with Failures, Delays or
// Successes to honour NOTIFY. A report with failed items is a failure
// report; one with delayed items (and no failed ones) a delay warning;
// otherwise a success report.
func Build(o Options, env *spool.Envelope, items []Item, original io.Reader) (*Report, error) {
	if env.From == "" {
		return nil, ErrNullSender
	}
	return build(o, env, items, original, env.From, false)
}

// BuildPostmasterCopy makes a report on items for the postmaster address
// instead of the sender: what to send when a message from <> fails (which
// Build refuses), or when the postmaster wants copies of bounces. It
// always carries only the original's header (the postmaster needs to see
// what failed, not to read other people's mail) and ignores NOTIFY.
func BuildPostmasterCopy(o Options, postmaster string, env *spool.Envelope, items []Item, original io.Reader) (*Report, error) {
	if postmaster == "" {
		return nil, errors.New("dsn: no postmaster address")
	}
	return build(o, env, items, original, postmaster, true)
}

// kind is the overall nature of a report.
type kind int

const (
	kindFailure kind = iota
	kindDelay
	kindSuccess
)

func reportKind(items []Item) kind {
	k := kindSuccess
	for _, it := range items {
		switch it.Action {
		case Failed:
			return kindFailure
		case Delayed:
			k = kindDelay
		}
	}
	return k
}

// rcptReport is one item with everything worked out.
type rcptReport struct {
	Item
	rcpt   spool.Recipient
	detail Detail
	status string
}

func build(o Options, env *spool.Envelope, items []Item, original io.Reader, to string, pmCopy bool) (*Report, error) {
	if o.Hostname == "" {
		return nil, errors.New("dsn: Options.Hostname is empty")
	}
	if len(items) == 0 {
		return nil, ErrNothingToReport
	}
	if o.MaxReturn == 0 {
		o.MaxReturn = DefaultMaxReturn
	}
	now := time.Now()
	if o.Now != nil {
		now = o.Now()
	}
	rr := make([]rcptReport, len(items))
	global := env.SMTPUTF8 || !isASCII(to) || !isASCII(env.From)
	for k, it := range items {
		if it.Rcpt < 0 || it.Rcpt >= len(env.Recipients) {
			return nil, fmt.Errorf("dsn: recipient index %d out of range", it.Rcpt)
		}
		switch it.Action {
		case Failed, Delayed, Delivered, Relayed, Expanded:
		default:
			return nil, fmt.Errorf("dsn: unknown action %q", it.Action)
		}
		r := env.Recipients[it.Rcpt]
		det := it.Detail
		if det == "" {
			det = r.LastError
		}
		d := ParseDetail(det)
		rr[k] = rcptReport{Item: it, rcpt: r, detail: d, status: d.Status(it.Action)}
		if !isASCII(r.Addr) || !isASCII(r.ORcpt) {
			global = true
		}
	}
	k := reportKind(items)

	wantFull := k == kindFailure && !pmCopy && !strings.EqualFold(env.Ret, "HDRS") && o.MaxReturn > 0
	orig, err := readOriginal(original, wantFull, o.MaxReturn)
	if err != nil {
		return nil, fmt.Errorf("dsn: reading the original message: %w", err)
	}
	if orig.full && orig.eightBit && !global {
		orig.full = false
		orig.why = "8bit"
	}

	host := strings.TrimSuffix(o.Hostname, ".")
	bnd := boundary(orig.header, orig.body)
	var b bytes.Buffer

	// The header (RFC 3464 2, RFC 6522 3, RFC 3834 5).
	writeField(&b, "From", "Mail Delivery System <MAILER-DAEMON@"+host+">")
	writeField(&b, "To", "<"+to+">")
	writeField(&b, "Subject", subject(k, pmCopy))
	writeField(&b, "Date", now.Format(time.RFC1123Z))
	writeField(&b, "Message-ID", "<"+now.UTC().Format("20060102150405")+"."+randomHex(8)+"@"+host+">")
	if id := orig.messageID; id != "" {
		writeField(&b, "In-Reply-To", id)
		writeField(&b, "References", id)
	}
	writeField(&b, "Auto-Submitted", "auto-replied")
	writeField(&b, "MIME-Version", "1.0")
	b.WriteString("Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"" + bnd + "\"\r\n")
	cte := "7bit"
	if global {
		cte = "8bit"
	}
	writeField(&b, "Content-Transfer-Encoding", cte)
	b.WriteString("\r\n")
	b.WriteString("This is a MIME-encapsulated message: a delivery status notification.\r\n")

	// Part 1: for the human.
	text := humanText(host, env, rr, k, orig, pmCopy)
	b.WriteString("\r\n--" + bnd + "\r\n")
	b.WriteString("Content-Description: Notification\r\n")
	if isASCII(text) {
		b.WriteString("Content-Type: text/plain; charset=us-ascii\r\nContent-Transfer-Encoding: 7bit\r\n\r\n")
		b.WriteString(text)
	} else if global {
		b.WriteString("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n")
		b.WriteString(text)
	} else {
		b.WriteString("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n")
		writeQP(&b, []byte(text))
	}

	// Part 2: for programs.
	b.WriteString("\r\n--" + bnd + "\r\n")
	b.WriteString("Content-Description: Delivery report\r\n")
	if global {
		b.WriteString("Content-Type: message/global-delivery-status\r\nContent-Transfer-Encoding: 8bit\r\n\r\n")
	} else {
		b.WriteString("Content-Type: message/delivery-status\r\nContent-Transfer-Encoding: 7bit\r\n\r\n")
	}
	writeStatus(&b, host, env, rr, global)

	// Part 3: the original, or its header.
	b.WriteString("\r\n--" + bnd + "\r\n")
	switch {
	case orig.full:
		b.WriteString("Content-Description: Undelivered Message\r\n")
		if global {
			b.WriteString("Content-Type: message/global\r\nContent-Transfer-Encoding: 8bit\r\n\r\n")
		} else {
			b.WriteString("Content-Type: message/rfc822\r\nContent-Transfer-Encoding: 7bit\r\n\r\n")
		}
		b.Write(orig.header)
		b.WriteString("\r\n")
		b.Write(orig.body)
	default:
		desc := "Undelivered Message Headers"
		if k != kindFailure {
			desc = "Message Headers"
		}
		b.WriteString("Content-Description: " + desc + "\r\n")
		switch {
		case global:
			b.WriteString("Content-Type: message/global-headers\r\nContent-Transfer-Encoding: 8bit\r\n\r\n")
			b.Write(orig.header)
		case orig.eightBitHeader:
			b.WriteString("Content-Type: text/rfc822-headers; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n")
			writeQP(&b, orig.header)
		default:
			b.WriteString("Content-Type: text/rfc822-headers\r\nContent-Transfer-Encoding: 7bit\r\n\r\n")
			b.Write(orig.header)
		}
	}
	if !bytes.HasSuffix(b.Bytes(), []byte("\r\n")) {
		b.WriteString("\r\n")
	}
	b.WriteString("\r\n--" + bnd + "--\r\n")

	data := b.Bytes()
	return &Report{
		To:       to,
		Data:     data,
		SMTPUTF8: global,
		EightBit: !isASCII(string(data)),
		Date:     now,
	}, nil
}

func subject(k kind, pmCopy bool) string {
	s := "Undelivered Mail Returned to Sender"
	switch k {
	case kindDelay:
		s = "Delivery Status Notification (Delay)"
	case kindSuccess:
		s = "Delivery Status Notification (Success)"
	}
	if pmCopy {
		if k == kindFailure {
			return "Postmaster Copy: Undelivered Mail"
		}
		return "Postmaster Copy: " + s
	}
	return s
}

// writeStatus writes the message/delivery-status body (RFC 3464 2.1-2.3):
// the per-message fields, then one block per recipient, blocks separated
// by blank lines.
func writeStatus(b *bytes.Buffer, host string, env *spool.Envelope, rr []rcptReport, global bool) {
	field := func(name, value string) {
		if !global {
			value = toASCII(value)
		}
		writeField(b, name, value)
	}
	field("Reporting-MTA", "dns; "+host)
	if env.ID != "" {
		field("X-Posthorn-Queue-ID", env.ID)
	}
	if env.EnvID != "" {
		field("Original-Envelope-Id", env.EnvID)
	}
	if !env.Arrival.IsZero() {
		field("Arrival-Date", env.Arrival.Format(time.RFC1123Z))
	}
	for _, r := range rr {
		b.WriteString("\r\n")
		if typ, addr, ok := strings.Cut(r.rcpt.ORcpt, ";"); ok && typ != "" && addr != "" {
			field("Original-Recipient", strings.ToLower(typ)+";"+addr)
		}
		field("Final-Recipient", addrType(r.rcpt.Addr)+"; "+r.rcpt.Addr)
		field("Action", string(r.Action))
		field("Status", r.status)
		d := r.detail
		switch {
		case d.RemoteHost != "":
			field("Remote-MTA", "dns; "+d.RemoteHost)
		case d.RemoteIP != "":
			field("Remote-MTA", "dns; ["+d.RemoteIP+"]")
		}
		switch {
		case d.Code != 0:
			field("Diagnostic-Code", "smtp; "+d.Reply)
		case d.Raw != "" && (r.Action == Failed || r.Action == Delayed):
			// Not an SMTP reply: a local or connection error, in our own
			// diagnostic type as Postfix writes "X-Postfix;".
			field("Diagnostic-Code", "X-Posthorn; "+d.Raw)
		}
		if !r.rcpt.LastAttempt.IsZero() {
			field("Last-Attempt-Date", r.rcpt.LastAttempt.Format(time.RFC1123Z))
		}
		if r.Action == Delayed && !r.RetryUntil.IsZero() {
			field("Will-Retry-Until", r.RetryUntil.Format(time.RFC1123Z))
		}
	}
}

// addrType is the address type of RFC 3464 2.3.2: rfc822 for ASCII
// addresses, utf-8 for the others (RFC 6533 3).
func addrType(addr string) string {
	if isASCII(addr) {
		return "rfc822"
	}
	return "utf-8"
}

// boundary returns a MIME boundary that does not occur in the content.
// "=_" cannot occur in quoted-printable text, and the random part makes a
// clash with anything else unlikely; we check anyway.
func boundary(parts ...[]byte) string {
	for {
		bnd := "=_posthorn_" + randomHex(12)
		clash := false
		for _, p := range parts {
			if bytes.Contains(p, []byte(bnd)) {
				clash = true
			}
		}
		if !clash {
			return bnd
		}
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// writeQP writes p quoted-printable encoded, with CRLF line ends.
func writeQP(b *bytes.Buffer, p []byte) {
	w := quotedprintable.NewWriter(b)
	w.Write(p)
	w.Close()
	// The writer emits CRLF for the hard line breaks of text (CRLF input)
	// and for its soft breaks.
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// toASCII replaces every non-ASCII character with '?'.
func toASCII(s string) string {
	if isASCII(s) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if r >= 0x80 {
			r = '?'
		}
		b.WriteRune(r)
	}
	return b.String()
}
