package outbound

import (
	"strconv"
	"strings"

	"github.com/posthorn/posthorn/internal/smtp"
)

// Detail is the structured form of the queue.Outcome.Detail strings this
// package writes, for the DSN writer (RFC 3464 2.3: Status, Remote-MTA,
// Diagnostic-Code) and for `posthorn queue`.
//
// Two forms exist. A reply from a server:
//
//	mx1.example.net[192.0.2.1]: 550 5.1.1 no such user
//
// and a failure of our own, which starts with its enhanced status code:
//
//	4.4.1 connect to mx1.example.net[192.0.2.1]:25: connection refused
//	5.1.10 example.com: the domain accepts no mail (null MX, RFC 7505)
//
// internal/dsn's ParseDetail reads the first form too.
type Detail struct {
	Status     string // RFC 3463 enhanced status code, e.g. "5.1.1"
	RemoteMTA  string // the server that replied (DSN Remote-MTA: dns; ...); "" if none did
	RemoteIP   string // its address
	Diagnostic string // its reply on one line (DSN Diagnostic-Code: smtp; ...)
	Text       string // the whole detail, as written
}

// replyDetail writes the detail for a server's reply. (The command it
// answered goes to the log, not here: the detail ends up whole in DSNs'
// Diagnostic-Code.)
func replyDetail(host, ip string, r smtp.Reply) string {
	return host + "[" + ip + "]: " + ReplyLine(r)
}

// localDetail writes the detail for a failure of our own.
func localDetail(status, text string) string { return status + " " + text }

// ReplyLine renders a reply as one line for a detail: "550 5.1.1 text
// text". Control characters become spaces: smtp.ReadReply keeps a CR in
// the middle of a line, and a detail goes into logs and DSN header fields.
func ReplyLine(r smtp.Reply) string {
	b := []byte(r.Error())
	for i, c := range b {
		if c < 0x20 || c == 0x7f {
			b[i] = ' '
		}
	}
	return string(b)
}

// ParseDetail reads a Detail written by this package (or any string:
// what does not parse is returned with only Text set, ok false). Status
// is taken from the reply's enhanced code, or from its class ("5.0.0")
// when the server sent none (RFC 3463 3.1).
func ParseDetail(s string) (d Detail, ok bool) {
	d.Text = s
	if code, rest, found := strings.Cut(s, " "); found && smtp.IsEnhancedCode(code) && rest != "" {
		d.Status = code
		return d, true
	}
	hostIP, reply, found := strings.Cut(s, ": ")
	if !found || !strings.HasSuffix(hostIP, "]") {
		return d, false
	}
	open := strings.LastIndexByte(hostIP, '[')
	if open <= 0 {
		return d, false
	}
	if len(reply) < 3 {
		return Detail{Text: s}, false
	}
	code, err := strconv.Atoi(reply[:3])
	if err != nil || code < 200 || code > 599 {
		return Detail{Text: s}, false
	}
	d.RemoteMTA = hostIP[:open]
	d.RemoteIP = hostIP[open+1 : len(hostIP)-1]
	d.Diagnostic = reply
	d.Status = strconv.Itoa(code/100) + ".0.0"
	if f := strings.Fields(reply[3:]); len(f) > 0 && smtp.IsEnhancedCode(f[0]) && f[0][0] == reply[0] {
		d.Status = f[0]
	}
	return d, true
}
