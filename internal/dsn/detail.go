package dsn

import (
	"net/netip"
	"strings"

	"github.com/posthorn/posthorn/internal/smtp"
)

// Detail is what a queue outcome's detail string says about a delivery
// attempt, taken apart for a report.
type Detail struct {
	// RemoteHost and RemoteIP name the server that answered, when the
	// detail names one ("mx1.example.net[192.0.2.1]: ...").
	RemoteHost string
	RemoteIP   string
	// Code is the SMTP reply code (250, 450, 550 ...), 0 when the detail
	// is not an SMTP reply (a local error, a connection failure).
	Code int
	// Enhanced is the RFC 3463 status code of the reply ("5.1.1"), "" when
	// it had none.
	Enhanced string
	// Reply is the whole reply, "550 5.1.1 user unknown", when Code != 0.
	Reply string
	// Text is the detail without the host prefix: the reply text, or the
	// local error.
	Text string
	// Expired says the queue gave up because the message was too long in
	// the queue; the fields above then describe the last error.
	Expired bool
	// Raw is the whole detail string, cleaned of control characters.
	Raw string
}

// ParseDetail takes apart a queue.Outcome.Detail (also recorded as a
// recipient's LastError). It understands, in any combination:
//
//	550 5.1.1 <bob@example.org>: no such user        a reply
//	550-5.1.1 first line 550 5.1.1 second line       a multi-line reply, lines joined
//	mx1.example.net[192.0.2.1]: 550 5.1.1 ...         the server that replied
//	mx1.example.net[192.0.2.1]:25: 451 4.3.0 ...      ... with a port
//	[2001:db8::1]: 421 4.7.0 ...                       ... known only by address
//	connect to mx1.example.net[192.0.2.1]:25: connection refused
//	expired: still undeliverable after 120h0m0s in the queue; last error: <any of these>
//	5.1.2 example.org: no MX and no address records   our own failure, led by its status
//	4.4.1 connect to mx1.example.net[192.0.2.1]:25: connection refused
//	maildir: open ...: permission denied              a local error
//
// Anything it does not recognise ends up in Text whole: it never fails.
func ParseDetail(s string) Detail {
	s = clean(s)
	d := Detail{Raw: s}
	rest := s
	if e, ok := strings.CutPrefix(rest, "expired:"); ok {
		d.Expired = true
		rest = strings.TrimSpace(e)
		if i := strings.Index(rest, "last error:"); i >= 0 {
			rest = strings.TrimSpace(rest[i+len("last error:"):])
		}
	}
	// The reply starts at the first three-digit code at the start of the
	// text or after ": ".
	replyAt := -1
	for i := 0; i < len(rest); i++ {
		if (i == 0 || i >= 2 && rest[i-2:i] == ": ") && isReplyStart(rest[i:]) {
			replyAt = i
			break
		}
	}
	prefix := rest
	if code, text, ok := strings.Cut(rest, " "); ok && replyAt < 0 && smtp.IsEnhancedCode(code) {
		// A failure of our own, led by its status code:
		// "5.1.10 example.com: the domain accepts no mail".
		d.Enhanced, rest, prefix = code, text, text
	}
	if replyAt >= 0 {
		prefix = rest[:replyAt]
		d.Reply = strings.TrimSpace(rest[replyAt:])
		d.Code = int(rest[replyAt]-'0')*100 + int(rest[replyAt+1]-'0')*10 + int(rest[replyAt+2]-'0')
		d.Enhanced, d.Text = splitReply(d.Reply)
	} else {
		d.Text = rest
	}
	d.RemoteHost, d.RemoteIP = findHost(prefix)
	if replyAt < 0 && d.RemoteIP != "" {
		// "mx[ip]: connection refused": the text is what follows the host.
		if _, after, ok := strings.Cut(rest, "]"); ok {
			after = strings.TrimLeft(after, ":0123456789 ")
			if after != "" {
				d.Text = after
			}
		}
	}
	return d
}

// isReplyStart reports "DDD" followed by space, '-' or the end, with a
// first digit of 2, 4 or 5 (RFC 5321 4.2).
func isReplyStart(s string) bool {
	if len(s) < 3 {
		return false
	}
	if s[0] != '2' && s[0] != '4' && s[0] != '5' || s[1] < '0' || s[1] > '5' || s[2] < '0' || s[2] > '9' {
		return false
	}
	return len(s) == 3 || s[3] == ' ' || s[3] == '-'
}

// splitReply returns the enhanced code and the text of "550 5.1.1 text",
// "550-5.1.1 text 550 5.1.1 more" (a multi-line reply with its lines
// joined) or "550 text". The enhanced code must agree with the reply
// code's class (RFC 3463 2, RFC 2034 4).
func splitReply(reply string) (enhanced, text string) {
	code := reply[:3]
	fields := strings.Fields(strings.TrimPrefix(reply[3:], "-"))
	if len(fields) > 0 && smtp.IsEnhancedCode(fields[0]) && fields[0][0] == code[0] {
		enhanced, fields = fields[0], fields[1:]
	}
	words := make([]string, 0, len(fields))
	for i := 0; i < len(fields); i++ {
		f := fields[i]
		next := ""
		if i+1 < len(fields) {
			next = fields[i+1]
		}
		switch {
		case f == code+"-" || f == code && (next == enhanced && enhanced != "" || next == ""):
			// The code of a continuation line.
			if enhanced != "" && next == enhanced {
				i++
			}
			continue
		case strings.HasPrefix(f, code+"-"):
			if t := f[len(code)+1:]; t != enhanced {
				words = append(words, t)
			}
			continue
		}
		words = append(words, f)
	}
	return enhanced, strings.Join(words, " ")
}

// findHost finds "name[ip]" or "[ip]" in s; the last one wins (Postfix's
// "host a[ip] said:" and "connect to a[ip]:25:" forms have one).
func findHost(s string) (host, ip string) {
	for {
		open := strings.IndexByte(s, '[')
		if open < 0 {
			return host, ip
		}
		end := strings.IndexByte(s[open:], ']')
		if end < 0 {
			return host, ip
		}
		lit := s[open+1 : open+end]
		lit = strings.TrimPrefix(lit, "IPv6:")
		if a, err := netip.ParseAddr(lit); err == nil && a.Zone() == "" {
			ip = a.String()
			start := open
			for start > 0 && isHostChar(s[start-1]) {
				start--
			}
			host = strings.TrimSuffix(s[start:open], ".")
			if host != "" && !smtp.IsDomain(host, false) {
				host = ""
			}
		}
		s = s[open+end+1:]
	}
}

func isHostChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_'
}

// clean turns control characters (CR, LF, TAB included) into spaces and
// squeezes runs of spaces, so the text can go into a header field.
func clean(s string) string {
	var b strings.Builder
	space := false
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			r = ' '
		}
		if r == ' ' {
			if space {
				continue
			}
			space = true
		} else {
			space = false
		}
		b.WriteRune(r)
	}
	return strings.TrimSpace(b.String())
}

// Status returns the RFC 3463 status code to report for the detail with
// the given action: the reply's enhanced code when it has one of the right
// class, else one derived from the reply code, the expiry or the action.
//
// A failure after the queue lifetime ran out keeps the temporary class of
// the last error (4.x.x, 4.4.7 without one), as Postfix and Sendmail
// report it: the recipient was never refused, only never reached.
func (d Detail) Status(a Action) string {
	if d.Enhanced != "" && (d.Code == 0 || d.Enhanced[0] == byte('0'+d.Code/100)) {
		return d.Enhanced
	}
	switch {
	case d.Code >= 500:
		return "5.0.0"
	case d.Code >= 400:
		return "4.0.0"
	case d.Code >= 200 && d.Code < 300:
		return "2.0.0"
	case d.Expired:
		return "4.4.7"
	}
	switch a {
	case Failed:
		return "5.0.0"
	case Delayed:
		return "4.0.0"
	}
	return "2.0.0"
}
