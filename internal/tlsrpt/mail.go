package tlsrpt

import (
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// MailOptions say how a report goes out by mail (RFC 8460 5.3).
type MailOptions struct {
	From      string // the report's sender address
	To        []string
	Submitter string // TLS-Report-Submitter: the reporting domain or host
	Date      time.Time
}

// Filename is the attachment's name (RFC 8460 5.1):
// submitter!policy-domain!begin!end!unique-id.json.gz.
func Filename(submitter, domain string, r *Report, unique string) string {
	return fmt.Sprintf("%s!%s!%d!%d!%s.json.gz", submitter, domain, r.DateRange.Start.Unix(), r.DateRange.End.Unix(), unique)
}

// Mail renders a report for one policy domain as a message:
// multipart/report; report-type="tlsrpt" with a short text part and
// the gzipped JSON as application/tlsrpt+gzip (RFC 8460 5.3).
func Mail(r *Report, domain string, o MailOptions) ([]byte, error) {
	gz, err := gzipJSON(r)
	if err != nil {
		return nil, err
	}
	rnd := make([]byte, 12)
	rand.Read(rnd) //nolint:errcheck // never fails
	unique := hex.EncodeToString(rnd[:6])
	boundary := "tlsrpt-" + hex.EncodeToString(rnd[6:])
	if o.Date.IsZero() {
		o.Date = time.Now()
	}
	var b strings.Builder
	h := func(k, v string) { b.WriteString(k + ": " + v + "\r\n") }
	h("From", "<"+o.From+">")
	h("To", "<"+strings.Join(o.To, ">, <")+">")
	h("Date", o.Date.Format(time.RFC1123Z))
	h("Subject", "Report Domain: "+domain+" Submitter: "+o.Submitter+" Report-ID: <"+r.ReportID+">")
	h("TLS-Report-Domain", domain)
	h("TLS-Report-Submitter", o.Submitter)
	h("Message-ID", "<tlsrpt."+unique+"."+hex.EncodeToString(rnd[6:])+"@"+o.Submitter+">")
	h("MIME-Version", "1.0")
	h("Content-Type", `multipart/report; report-type="tlsrpt"; boundary="`+boundary+`"`)
	b.WriteString("\r\n")
	b.WriteString("This is a multipart message in MIME format.\r\n\r\n--" + boundary + "\r\n")
	b.WriteString("Content-Type: text/plain; charset=us-ascii\r\nContent-Transfer-Encoding: 7bit\r\n\r\n")
	fmt.Fprintf(&b, "This is an aggregate TLS report (RFC 8460) from %s\r\nfor %s, %s to %s.\r\n\r\n",
		o.Submitter, domain, r.DateRange.Start.Format(time.RFC3339), r.DateRange.End.Format(time.RFC3339))
	b.WriteString("--" + boundary + "\r\n")
	b.WriteString("Content-Type: application/tlsrpt+gzip\r\nContent-Transfer-Encoding: base64\r\n")
	b.WriteString(`Content-Disposition: attachment; filename="` + Filename(o.Submitter, domain, r, unique) + `"` + "\r\n\r\n")
	enc := base64.StdEncoding.EncodeToString(gz)
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\r\n--" + boundary + "--\r\n")
	return []byte(b.String()), nil
}

// gzipJSON is the report as sent by mail and over HTTPS: its JSON,
// gzipped (RFC 8460 5.3, 5.4).
func gzipJSON(r *Report) ([]byte, error) {
	js, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(js) //nolint:errcheck // into memory
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return gz.Bytes(), nil
}
