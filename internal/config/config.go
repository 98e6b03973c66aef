// Package config reads posthorn's TOML configuration into a typed, validated Config.
package config

import (
	_ "embed"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Config is the whole configuration. Only cmd reads it; every other package
// takes its own Options struct, filled from here.
type Config struct {
	// File is the name the configuration was read from ("" for the
	// embedded default). Paths in the file are used as written.
	File string

	Hostname  string // the name in the greeting, EHLO and Received headers
	DataDir   string // spool, mail, accounts, the self-signed certificate
	LogLevel  string // debug, info, warn or error
	LogFormat string // text or json

	Listen     Listen
	TLS        TLS
	Domains    []Domain
	Aliases    map[string][]string // address -> addresses, as written
	Addressing Addressing
	Relay      Relay
	Submission Submission
	Limits     Limits
	Queue      Queue
	DNS        DNS
	Checks     Checks
	Delivery   DeliveryOptions
	Screen     Screen
	MTASTS     MTASTS // [mta_sts]: our own policy host
	// TLSPolicy overrides the outbound TLS policy per destination:
	// "example.net" or ".example.net" (and subdomains) -> none, may,
	// encrypt, verify, dane or dane-only. [tls_policy]
	TLSPolicy map[string]string
	TLSRPT    TLSRPT // [tls_rpt]
}

// DNS says which resolvers to ask.
type DNS struct {
	// Servers are "host:port" resolvers tried in order; empty means
	// /etc/resolv.conf. DANE needs a validating resolver (such as a local
	// unbound): posthorn trusts its AD bit.
	Servers []string
}

// Checks says what to do with mail received on port 25 that fails
// authentication.
type Checks struct {
	DMARCReject     string // "reject", "quarantine" or "accept" when DMARC fails under p=reject
	DMARCQuarantine string // the same, under p=quarantine
}

// DeliveryOptions tune delivery to other servers.
type DeliveryOptions struct {
	// Port is the port remote MX hosts are reached on: 25, except in tests.
	Port int
	// Timeout, when set, caps the wait at every stage of a delivery
	// session (connect, greeting, each command, each data block, the
	// final reply); unset, the RFC 5321 4.5.3.2 values apply.
	Timeout time.Duration
	// DANE (RFC 7672) and MTASTS (RFC 8461) turn the recipient domains'
	// TLS policies on (both by default). DANE needs a validating
	// resolver in [dns].
	DANE   bool
	MTASTS bool
	// TLSCA is a PEM file of further CA certificates trusted for MX
	// hosts and MTA-STS policy hosts, besides the system's.
	TLSCA string
	// MTASTSPort is the HTTPS port of policy hosts: 443, except in tests.
	MTASTSPort int
}

// Listen holds the addresses to listen on, per role. An empty list turns
// a role off.
type Listen struct {
	SMTP        []string // port 25: mail from other servers, no AUTH
	Submission  []string // port 587: STARTTLS, then AUTH
	Submissions []string // port 465: implicit TLS, AUTH
	Metrics     string   // Prometheus metrics over HTTP; "" = off
}

// TLS names the certificate and key files. Both empty means a self-signed
// certificate that the server makes on first start and keeps in the data
// directory; see Config.TLSFiles.
type TLS struct {
	Cert string
	Key  string
	ACME *ACME // [tls.acme]; nil: no ACME
}

// Domain is one local domain: mail for it is delivered here.
type Domain struct {
	Name      string // lowercased, IDNA A-label form
	Delivery  string // "maildir", "lmtp:unix:/path" or "lmtp:tcp:host:port"; see ParseDelivery
	CatchAll  string // local part (or address) that gets mail for unknown users; "" = none
	AcceptAny bool   // every local part has its own mailbox
	Mailboxes []string
	DKIM      []DKIMKey
}

// DKIMKey is a signing key for a domain.
type DKIMKey struct {
	Selector string
	Key      string // path to the private key file
}

// Addressing holds address rewriting rules.
type Addressing struct {
	// SubaddressDelimiter: each character is a delimiter, so that
	// user+tag@domain is delivered to user@domain. "" turns it off.
	SubaddressDelimiter string
}

// Relay says who may send mail to other domains without AUTH, and how.
type Relay struct {
	TrustedNetworks []netip.Prefix // like Postfix's mynetworks; loopback is not implied
	Smarthost       string         // "host", "host:port" or "[host]:port"; "" = deliver by MX
	// SmarthostTLS is "required" (default: defer rather than send in
	// clear), "verify" (also check the certificate) or "optional".
	SmarthostTLS string
	// SmarthostUser and SmarthostPasswordFile: AUTH credentials for the
	// smarthost; the password is read from the file (first line), so it
	// never sits in the configuration.
	SmarthostUser         string
	SmarthostPasswordFile string
}

// Submission holds rules for authenticated senders.
type Submission struct {
	SenderMustOwn bool // MAIL FROM must be an address the user owns
}

// Limits bound what one client may cost. Zero means no limit for the
// counts and sizes; timeouts are always positive.
type Limits struct {
	MessageSize       int64 // bytes
	Recipients        int   // per message
	Connections       int   // in total
	ConnectionsPerIP  int
	CommandTimeout    time.Duration // waiting for a command (RFC 5321 4.5.3.2: 5 minutes)
	DataTimeout       time.Duration // waiting for each block of DATA (RFC 5321 4.5.3.2.5: 3 minutes)
	ErrorsPerSession  int
	AuthFailuresPerIP int

	// Abuse limits (smtpserver.Admission); 0 turns each off.
	ConnectionsPerIPv6Net int           // per IPv6 /64
	ConnectionRate        int           // new connections per minute per client (IPv6: /64)
	MessageRate           int           // MAIL commands per minute per client
	RecipientsPerSession  int           // over all messages of one connection
	SoftErrorLimit        int           // errors before each error reply is delayed
	ErrorDelay            time.Duration // the delay per error over SoftErrorLimit, growing
	MinDataRate           int           // octets per second during DATA/BDAT
	MessageMemory         int64         // RAM for message transfers at once, in bytes

	LineLength   int   // longest text line in DATA, CRLF included (RFC 5321: 1000)
	MinFreeSpace int64 // bytes the spool's file system keeps free; 0: 1.5 × MessageSize, at most 1 GiB
}

// Screen says how clients of port 25 are screened: DNS block and allow
// lists, reverse DNS, HELO name, greylisting. All off by default.
type Screen struct {
	DNSBL         []string // "zone" or "zone=filter", as "zen.spamhaus.org=127.0.0.[2..11]"
	DNSWL         []string // the same, for allow lists: listed clients skip every check
	CheckAt       string   // "rcpt" (default) or "connect"
	RequireFCrDNS bool     // refuse clients without forward-confirmed reverse DNS
	StrictHelo    bool     // refuse HELO names that are not fully qualified
	Greylisting   bool     // triplets kept in data_dir/greylist
	GreylistDelay time.Duration
}

// Queue holds the retry schedule of deferred deliveries.
type Queue struct {
	FirstRetry time.Duration // after the first failed attempt
	MaxRetry   time.Duration // the backoff never waits longer than this
	Lifetime   time.Duration // give up and bounce after this long
	// DelayWarning: senders who asked (NOTIFY=DELAY) are told when a
	// message is still undelivered after this long.
	DelayWarning time.Duration
}

//go:embed default.toml
var defaultTOML []byte

//go:embed example.toml
var exampleTOML []byte

// Default returns the embedded development configuration: data in
// ./posthorn-data, listeners on 127.0.0.1:2525/2587/2465, a self-signed
// certificate, and the local domain "localhost" where every local part has
// its own mailbox.
func Default() *Config {
	c, err := parse("(embedded default)", defaultTOML, "localhost")
	if err != nil {
		panic("config: embedded default is invalid: " + err.Error())
	}
	c.File = ""
	return c
}

// DefaultTOML returns the text of the embedded default.
func DefaultTOML() []byte { return append([]byte(nil), defaultTOML...) }

// Example returns a documented example configuration for a real domain.
func Example() []byte { return append([]byte(nil), exampleTOML...) }

// Load reads and validates the configuration file at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(path, data)
}

// Parse parses and validates a configuration; name is used in error
// messages. Errors read "name:line: key: what is wrong", one per line when
// there are several.
func Parse(name string, data []byte) (*Config, error) {
	return parse(name, data, defaultHostname())
}

// defaultHostname is os.Hostname when it is a fully qualified name, else
// "localhost".
func defaultHostname() string {
	h, err := os.Hostname()
	if err != nil || !strings.Contains(strings.Trim(h, "."), ".") {
		return "localhost"
	}
	h = strings.ToLower(strings.TrimSuffix(h, "."))
	if checkDomain(h) != nil {
		return "localhost"
	}
	return h
}

// Validate checks a Config built in code, normalising its domain names
// to lowercased A-labels (Parse and Load validate already).
func Validate(c *Config) error {
	r := &reporter{file: c.File}
	validate(c, r)
	return r.err()
}

// TLSFiles returns the certificate and key files to use. When none are
// configured they are in the data directory and selfSigned is true: the
// server makes them on first start when they do not exist.
func (c *Config) TLSFiles() (cert, key string, selfSigned bool) {
	if c.TLS.Cert != "" {
		return c.TLS.Cert, c.TLS.Key, false
	}
	dir := filepath.Join(c.DataDir, "tls")
	return filepath.Join(dir, "selfsigned-cert.pem"), filepath.Join(dir, "selfsigned-key.pem"), true
}

// Domain returns the local domain with the given name, or nil.
func (c *Config) Domain(name string) *Domain {
	n, err := normalizeDomain(name)
	if err != nil {
		return nil
	}
	for i := range c.Domains {
		if c.Domains[i].Name == n {
			return &c.Domains[i]
		}
	}
	return nil
}

// Delivery is a parsed delivery setting of a domain.
type Delivery struct {
	Method  string // "maildir" or "lmtp"
	Network string // for lmtp: "unix" or "tcp"
	Address string // for lmtp: socket path, or host:port
}

// ParseDelivery parses "maildir", "lmtp:unix:/path/to/socket" or
// "lmtp:tcp:host:port".
func ParseDelivery(s string) (Delivery, error) {
	if s == "maildir" {
		return Delivery{Method: "maildir"}, nil
	}
	rest, ok := strings.CutPrefix(s, "lmtp:")
	if !ok {
		return Delivery{}, errors.New(`expected "maildir", "lmtp:unix:/path/to/socket" or "lmtp:tcp:host:port"`)
	}
	network, addr, ok := strings.Cut(rest, ":")
	switch {
	case !ok:
		return Delivery{}, errors.New(`expected "lmtp:unix:/path/to/socket" or "lmtp:tcp:host:port"`)
	case network == "unix":
		if !strings.HasPrefix(addr, "/") || strings.ContainsAny(addr, "\x00\r\n") {
			return Delivery{}, errors.New(`expected an absolute socket path after "lmtp:unix:", as in "lmtp:unix:/run/dovecot/lmtp"`)
		}
	case network == "tcp":
		if err := checkHostPort(addr, true); err != nil {
			return Delivery{}, fmt.Errorf(`after "lmtp:tcp:": %v, as in "lmtp:tcp:127.0.0.1:24"`, err)
		}
	default:
		return Delivery{}, fmt.Errorf(`unknown LMTP network %q: expected "unix" or "tcp"`, network)
	}
	return Delivery{Method: "lmtp", Network: network, Address: addr}, nil
}

// Error is one problem in a configuration.
type Error struct {
	File string
	Line int    // 0 when unknown
	Key  string // dotted, as in the file
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d", e.Line)
		}
		b.WriteString(": ")
	}
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}
