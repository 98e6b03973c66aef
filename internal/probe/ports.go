package probe

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// Port is one line of the mail ports reference.
type Port struct {
	Number  int      `json:"port"`
	Service string   `json:"service"`
	TLS     string   `json:"tls"` // "STARTTLS", "implicit" or "none"
	RFCs    []string `json:"rfcs"`
	Purpose string   `json:"purpose"`
	// Auth says whether users authenticating here is expected.
	Auth string `json:"auth"`
}

// Ports is the built-in reference for mail ports, printed by
// `posthorn probe --ports` and used to word findings.
var Ports = []Port{
	{25, "smtp", "STARTTLS", []string{"RFC 5321", "RFC 3207", "RFC 7672", "RFC 8461"},
		"relay between mail servers: where other MTAs deliver to your MX", "no: user submission belongs on 587/465"},
	{465, "submissions", "implicit", []string{"RFC 8314", "RFC 6409", "RFC 4954"},
		"message submission from mail clients, TLS from the first byte (preferred, RFC 8314 3.3)", "required"},
	{587, "submission", "STARTTLS", []string{"RFC 6409", "RFC 3207", "RFC 4954"},
		"message submission from mail clients, STARTTLS then AUTH", "required, after STARTTLS"},
	{2525, "smtp-alt", "STARTTLS", nil,
		"not assigned by IANA: an alternative SMTP/submission port some providers open where 25/587 are blocked", "as on the port it stands in for"},
	{110, "pop3", "STARTTLS", []string{"RFC 1939", "RFC 2595"},
		"mailbox access (POP3); STLS upgrades to TLS", "required, after STLS"},
	{143, "imap", "STARTTLS", []string{"RFC 9051", "RFC 3501", "RFC 2595"},
		"mailbox access (IMAP); STARTTLS upgrades to TLS", "required, after STARTTLS"},
	{993, "imaps", "implicit", []string{"RFC 8314", "RFC 9051"},
		"mailbox access (IMAP) over implicit TLS (preferred, RFC 8314)", "required"},
	{995, "pop3s", "implicit", []string{"RFC 8314", "RFC 1939"},
		"mailbox access (POP3) over implicit TLS (preferred, RFC 8314)", "required"},
}

// PortInfo returns the reference line for n, if there is one.
func PortInfo(n int) (Port, bool) {
	for _, p := range Ports {
		if p.Number == n {
			return p, true
		}
	}
	return Port{}, false
}

// portWords names a port for a finding: "port 25 (smtp, RFC 5321)".
func portWords(n int) string {
	p, ok := PortInfo(n)
	if !ok {
		return fmt.Sprintf("port %d", n)
	}
	if len(p.RFCs) == 0 {
		return fmt.Sprintf("port %d (%s)", n, p.Service)
	}
	return fmt.Sprintf("port %d (%s, %s)", n, p.Service, p.RFCs[0])
}

// WritePorts prints the reference as a table.
func WritePorts(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PORT\tSERVICE\tTLS\tAUTH\tRFCs\tWHAT IT IS FOR")
	for _, p := range Ports {
		rfcs := strings.Join(p.RFCs, ", ")
		if rfcs == "" {
			rfcs = "-"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", p.Number, p.Service, p.TLS, p.Auth, rfcs, p.Purpose)
	}
	return tw.Flush()
}
