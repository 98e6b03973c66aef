package probe

import (
	"context"
	"crypto/x509"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/posthorn/posthorn/internal/dns"
)

// Mode is how a port is spoken to.
type Mode string

// The modes.
const (
	// ModeSMTP is server-to-server SMTP (port 25): STARTTLS optional, no AUTH expected.
	ModeSMTP Mode = "smtp"
	// ModeSubmission is message submission with STARTTLS (port 587).
	ModeSubmission Mode = "submission"
	// ModeSubmissions is submission over implicit TLS (port 465).
	ModeSubmissions Mode = "submissions"
)

// ModeForPort is the mode a port implies: 465 implicit TLS, 587
// submission, anything else server-to-server SMTP.
func ModeForPort(port int) Mode {
	switch port {
	case 465:
		return ModeSubmissions
	case 587:
		return ModeSubmission
	}
	return ModeSMTP
}

// Options configures a probe. The zero value is not usable: start from
// DefaultOptions.
type Options struct {
	// HeloName is the name the probe gives in EHLO/HELO.
	HeloName string
	// ConnectTimeout bounds each TCP connect; StepTimeout each command's
	// reply (and each TLS handshake); Total the whole run.
	ConnectTimeout time.Duration
	StepTimeout    time.Duration
	Total          time.Duration

	// Relay runs the 16 open-relay tries. RelayFrom and RelayTo are the
	// local parts, RelayDomain the domain (a domain the target must not
	// relay to), RelayIP the IP of the IP-literal forms (empty: the
	// address the probe connected to, as nmap does).
	Relay       bool
	RelayFrom   string
	RelayTo     string
	RelayDomain string
	RelayIP     string

	// TLSVersions tries TLS 1.0, 1.1, 1.2 and 1.3 one by one.
	TLSVersions bool
	// Enumerate tries VRFY and EXPN.
	Enumerate bool

	// RootCAs are the trust anchors for certificate checks (SMTP and
	// MTA-STS); nil means the system roots. Tests give their test CA.
	RootCAs *x509.CertPool
	// Dial opens TCP connections; nil means a net.Dialer. Tests use it to
	// send "mx1.example.com:25" to a server on a loopback port.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Resolver answers every DNS question of --domain; nil there is an
	// error. A host probe asks DNS nothing but the target's addresses.
	Resolver dns.Resolver
	// HTTPSPort is the port of MTA-STS policy fetches; zero means 443.
	// Only tests set it.
	HTTPSPort int
	// MaxMX bounds the MX hosts probed for a domain.
	MaxMX int
	// Now is the clock for certificate lifetimes; nil means time.Now.
	Now func() time.Time
}

// DefaultOptions returns the options the CLI starts from.
func DefaultOptions() Options {
	return Options{
		HeloName:       "posthorn-probe.invalid",
		ConnectTimeout: 10 * time.Second,
		StepTimeout:    30 * time.Second,
		Total:          3 * time.Minute,
		Relay:          true,
		RelayFrom:      "antispam",
		RelayTo:        "relaytest",
		RelayDomain:    "example.com",
		TLSVersions:    true,
		Enumerate:      true,
		MaxMX:          10,
	}
}

func (o *Options) fill() {
	d := DefaultOptions()
	if o.HeloName == "" {
		o.HeloName = d.HeloName
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = d.ConnectTimeout
	}
	if o.StepTimeout <= 0 {
		o.StepTimeout = d.StepTimeout
	}
	if o.Total <= 0 {
		o.Total = d.Total
	}
	if o.RelayFrom == "" {
		o.RelayFrom = d.RelayFrom
	}
	if o.RelayTo == "" {
		o.RelayTo = d.RelayTo
	}
	if o.RelayDomain == "" {
		o.RelayDomain = d.RelayDomain
	}
	if o.MaxMX <= 0 {
		o.MaxMX = d.MaxMX
	}
	if o.Dial == nil {
		var nd net.Dialer
		o.Dial = nd.DialContext
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// SplitTarget parses "host", "host:port", "[v6]:port" or a bare IPv6
// address; the port defaults to 25.
func SplitTarget(s string) (host string, port int, err error) {
	if s == "" {
		return "", 0, fmt.Errorf("empty target")
	}
	if ip := net.ParseIP(strings.Trim(s, "[]")); ip != nil {
		return ip.String(), 25, nil
	}
	h, p, err := net.SplitHostPort(s)
	if err != nil {
		if strings.Contains(err.Error(), "missing port") {
			return strings.TrimSuffix(s, "."), 25, nil
		}
		return "", 0, fmt.Errorf("bad target %q: %v", s, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil || n < 1 || n > 65535 {
		return "", 0, fmt.Errorf("bad port in %q", s)
	}
	if h == "" {
		return "", 0, fmt.Errorf("no host in %q", s)
	}
	return strings.TrimSuffix(h, "."), n, nil
}
