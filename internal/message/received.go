// Package message builds and inspects the header lines posthorn adds to messages.
package message

import (
	"crypto/tls"
	"strings"
	"time"
)

// ReceivedInfo is what a Received header records (RFC 5321 4.4).
type ReceivedInfo struct {
	Helo       string // the client's EHLO/HELO argument, already validated
	ClientIP   string // textual IP of the client
	ClientName string // verified reverse name, "" if none
	By         string // our host name
	ESMTP      bool   // EHLO rather than HELO
	TLS        *tls.ConnectionState
	Auth       bool // the client authenticated
	UTF8       bool // SMTPUTF8 transaction (RFC 6531 4.3)
	ID         string
	For        string // the recipient, given only when there is exactly one
	Date       time.Time
}

// Received returns a folded "Received:" header line ending in CRLF. The
// "with" protocol follows RFC 3848 and RFC 6531: SMTP, ESMTP, and the S
// (TLS) and A (authenticated) suffixes, UTF8 forms for SMTPUTF8; the TLS
// version and cipher go in a comment, as most MTAs write them.
func Received(r ReceivedInfo) []byte {
	proto := "SMTP"
	if r.ESMTP || r.UTF8 {
		proto = "ESMTP"
		if r.UTF8 {
			proto = "UTF8SMTP"
		}
		if r.TLS != nil {
			proto += "S"
		}
		if r.Auth {
			proto += "A"
		}
	}
	var b strings.Builder
	b.WriteString("Received: from ")
	b.WriteString(clean(r.Helo))
	b.WriteString(" (")
	if r.ClientName != "" {
		b.WriteString(clean(r.ClientName))
		b.WriteByte(' ')
	}
	b.WriteString("[" + clean(r.ClientIP) + "])\r\n\tby ")
	b.WriteString(clean(r.By))
	b.WriteString(" (posthorn) with ")
	b.WriteString(proto)
	if r.ID != "" {
		b.WriteString(" id ")
		b.WriteString(clean(r.ID))
	}
	if r.TLS != nil {
		b.WriteString("\r\n\t(version=")
		b.WriteString(strings.ReplaceAll(tls.VersionName(r.TLS.Version), " ", ""))
		b.WriteString(" cipher=")
		b.WriteString(tls.CipherSuiteName(r.TLS.CipherSuite))
		b.WriteByte(')')
	}
	if r.For != "" {
		b.WriteString("\r\n\tfor <")
		b.WriteString(clean(r.For))
		b.WriteByte('>')
	}
	b.WriteString(";\r\n\t")
	b.WriteString(r.Date.Format(time.RFC1123Z))
	b.WriteString("\r\n")
	return []byte(b.String())
}

// clean keeps a value from breaking the header: control characters,
// parentheses, angle brackets and semicolons never come through. Values
// reaching here were validated already; this is the last line of defence.
func clean(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || strings.ContainsRune("()<>;\\", r) {
			return '?'
		}
		return r
	}, s)
}
