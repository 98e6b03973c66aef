package dsn

import (
	"strings"

	"github.com/posthorn/posthorn/internal/spool"
)

// textWidth is where the human-readable part is wrapped.
const textWidth = 72

// para accumulates the human-readable part: wrapped paragraphs, CRLF.
type para struct{ b strings.Builder }

// p writes a paragraph wrapped at textWidth, every line after the first
// indented by indent spaces (the first by first), and a blank line.
func (t *para) p(first, indent int, text string) {
	t.wrap(first, indent, text)
	t.b.WriteString("\r\n")
}

func (t *para) wrap(first, indent int, text string) {
	pad := strings.Repeat(" ", first)
	n := first
	t.b.WriteString(pad)
	start := true
	for _, w := range words(text, textWidth-indent) {
		wl := len([]rune(w))
		if !start && n+1+wl > textWidth {
			t.b.WriteString("\r\n")
			t.b.WriteString(strings.Repeat(" ", indent))
			n = indent
			start = true
		}
		if !start {
			t.b.WriteByte(' ')
			n++
		}
		t.b.WriteString(w)
		n += wl
		start = false
	}
	t.b.WriteString("\r\n")
}

// humanText is the first part: for the person who sent the message, who
// need not know what an MX or a 5.1.1 is.
func humanText(host string, env *spool.Envelope, rr []rcptReport, k kind, orig original, pmCopy bool) string {
	var t para
	t.p(0, 0, "This is the mail system at "+host+".")

	if pmCopy {
		from := "<" + env.From + ">"
		if env.From == "" {
			from = "the null sender <> (it was itself a delivery report or another automatic message, so no report can go back to its sender)"
		}
		t.p(0, 0, "This is a copy for the postmaster. The message with queue id "+orDash(env.ID)+" was sent by "+from+".")
	}
	switch {
	case pmCopy:
		t.p(0, 0, "The message could not be delivered to the recipients below (or is not delivered yet, as noted).")
	case k == kindFailure:
		t.p(0, 0, "I'm sorry: your message could not be delivered to one or more recipients. Nothing more will be tried for them. The reasons are below.")
	case k == kindDelay:
		until := ""
		for _, r := range rr {
			if r.Action == Delayed && !r.RetryUntil.IsZero() {
				until = r.RetryUntil.Format("Mon, 02 Jan 2006 15:04 MST")
				break
			}
		}
		s := "Your message has not been delivered yet to one or more recipients. This is only a warning: you do not need to send it again. The mail system will keep trying"
		if until != "" {
			s += " until " + until
		}
		s += ", and will tell you if it has to give up."
		t.p(0, 0, s)
	default:
		t.p(0, 0, "This is the report you asked for: your message was delivered as listed below.")
	}

	for _, group := range []struct {
		a     Action
		title string
	}{
		{Failed, "Could not be delivered to:"},
		{Delayed, "Not delivered yet to:"},
		{Delivered, "Delivered to:"},
		{Relayed, "Passed on to a mail system that does not send delivery reports, for:"},
		{Expanded, "Delivered to a mailing list or forwarding address, for:"},
	} {
		var in []rcptReport
		for _, r := range rr {
			if r.Action == group.a {
				in = append(in, r)
			}
		}
		if len(in) == 0 {
			continue
		}
		t.p(0, 0, group.title)
		for _, r := range in {
			t.wrap(4, 8, displayAddr(r))
			if r.Action == Failed || r.Action == Delayed {
				t.wrap(8, 8, "Why: "+explain(r))
				if said := said(r.detail); said != "" {
					t.wrap(8, 10, said)
				}
			}
			t.b.WriteString("\r\n")
		}
	}

	var about []string
	if orig.subject != "" {
		about = append(about, "the subject \""+orig.subject+"\"")
	}
	if !env.Arrival.IsZero() {
		about = append(about, "received here on "+env.Arrival.Format("Mon, 02 Jan 2006 15:04 MST"))
	}
	msg := "your message"
	if pmCopy {
		msg = "the message"
	}
	if len(about) > 0 {
		t.p(0, 0, "This is about "+msg+" with "+strings.Join(about, ", ")+".")
	}

	switch {
	case orig.full:
		t.p(0, 0, "The message is attached at the end, so that you can send it again if you want to.")
	case orig.why == "size":
		t.p(0, 0, "The message was too large to be sent back in full; only its header lines (sender, subject, date...) are attached.")
	case orig.why == "8bit":
		t.p(0, 0, "Only the header lines of the message are attached: its content could not be sent back safely as it is.")
	case len(orig.header) > 0:
		t.p(0, 0, "The header lines of the message (sender, subject, date...) are attached.")
	}
	if k == kindFailure && !pmCopy {
		t.p(0, 0, "If you cannot solve the problem with the explanation above, ask your mail administrator for help and give them this whole report: the technical details in it are for them.")
	}
	return strings.TrimRight(t.b.String(), "\r\n") + "\r\n"
}

// words splits text at spaces, and cuts words longer than max runes.
func words(text string, max int) []string {
	var out []string
	for _, w := range strings.Fields(text) {
		r := []rune(w)
		for len(r) > max {
			out = append(out, string(r[:max]))
			r = r[max:]
		}
		out = append(out, string(r))
	}
	return out
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// displayAddr is the recipient as the sender wrote it when we know that
// (ORCPT), else as we tried it.
func displayAddr(r rcptReport) string {
	a := r.rcpt.Addr
	if typ, orcpt, ok := strings.Cut(r.rcpt.ORcpt, ";"); ok && orcpt != "" && !strings.EqualFold(orcpt, a) && (strings.EqualFold(typ, "rfc822") || strings.EqualFold(typ, "utf-8")) {
		return orcpt + " (delivered as " + a + ")"
	}
	return a
}

// said quotes the server that refused, or the local error, in one line.
func said(d Detail) string {
	switch {
	case d.Code != 0 && d.RemoteHost != "":
		return "The recipient's mail server (" + d.RemoteHost + ") said: " + d.Reply
	case d.Code != 0 && d.RemoteIP != "":
		return "The recipient's mail server (" + d.RemoteIP + ") said: " + d.Reply
	case d.Code != 0:
		return "The mail system said: " + d.Reply
	case d.Text != "":
		return "Error: " + d.Text
	}
	return ""
}

// explain says in plain words what the status means and what to do.
func explain(r rcptReport) string {
	st := r.status
	d := r.detail
	temp := strings.HasPrefix(st, "4.")
	sub := st
	if i := strings.IndexByte(st, '.'); i >= 0 {
		sub = st[i+1:] // "1.1"
	}
	if d.Expired {
		return "The mail system tried for a long time but could not deliver the message" + reason(sub, d) + ", and has now given up. The recipient's mail server may be down or refusing mail for a while. You can try again later, or reach the recipient another way."
	}
	if r.Action == Delayed {
		return "The message could not be delivered yet" + reason(sub, d) + ". This is often temporary; nothing needs to be done for now."
	}
	switch {
	case sub == "1.1":
		return "The address does not exist. Check it for typing mistakes, or ask the recipient for their correct address."
	case sub == "1.2":
		return "The domain name (the part after the @) does not exist or cannot receive mail. Check it for typing mistakes."
	case sub == "1.10":
		return "The domain of this address says it does not accept any mail. Ask the recipient for another address."
	case sub == "1.6":
		return "The recipient has moved and no longer uses this address. Ask them for their new one."
	case sub == "2.1":
		return "The recipient's mailbox is disabled and does not accept messages. Reach the recipient another way."
	case sub == "2.2":
		return "The recipient's mailbox is full. Try again later, or reach the recipient another way."
	case sub == "2.3" || sub == "3.4":
		return "The message is too large for the recipient's mail system. Send it again with smaller attachments, or share large files with a link instead."
	case sub == "6.7" || strings.HasPrefix(sub, "6."):
		return "The recipient's mail system cannot handle something in this message, such as international characters in an address. Try a plain address or simpler content."
	case strings.HasPrefix(sub, "7."):
		return "The recipient's mail system refused the message for security or policy reasons: it may have taken it for spam, or does not trust the server that sent it. Contact the recipient another way, or ask your mail administrator."
	case strings.HasPrefix(sub, "4."):
		return "The recipient's mail server could not be reached. Check the address, or try again later."
	case temp:
		return "The message could not be delivered because of a problem that should have been temporary."
	case d.Code == 0 && d.RemoteIP == "" && d.RemoteHost == "":
		return "A problem in this mail system prevented delivery. Your mail administrator may need to look at it."
	}
	return "The recipient's mail system refused the message permanently."
}

// reason adds a short cause for temporary problems, when there is one.
func reason(sub string, d Detail) string {
	switch {
	case sub == "2.2":
		return " (the recipient's mailbox is full)"
	case strings.HasPrefix(sub, "4.") || d.Code == 0 && (d.RemoteIP != "" || strings.Contains(strings.ToLower(d.Text), "connect")):
		return " (the recipient's mail server could not be reached)"
	case strings.HasPrefix(sub, "7."):
		return " (the recipient's mail server is refusing it for now)"
	}
	return ""
}
