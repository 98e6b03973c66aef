package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/posthorn/posthorn/internal/dns"
	"github.com/posthorn/posthorn/internal/probe"
)

const probeUsage = `Usage:
  posthorn probe [flags] HOST[:PORT]      triage one SMTP server (port 25 by default;
                                          465 is implicit TLS, 587 submission)
  posthorn probe [flags] --domain DOMAIN  MX, each MX server, SPF, DMARC, MTA-STS,
                                          TLS-RPT, DANE, reverse DNS, DNSSEC
  posthorn probe --ports                  the mail ports reference

Exit status: 0 no finding at or above --fail-on; 1 there is one; 2 usage
error; 3 nothing could be probed (unreachable server, DNS failure).

Flags:
`

// runProbe is "posthorn probe".
func runProbe(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("probe", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, probeUsage)
		fs.PrintDefaults()
	}
	d := probe.DefaultOptions()
	var (
		domain      = fs.String("domain", "", "probe a mail `domain` instead of one server")
		ports       = fs.Bool("ports", false, "print the mail ports reference and exit")
		asJSON      = fs.Bool("json", false, "print the report as JSON (schema: internal/probe/SCHEMA.md)")
		failOn      = fs.String("fail-on", "high", "exit 1 when a finding at or above this `severity` exists: info, low, medium, high or none")
		mode        = fs.String("mode", "", "how to speak to the port: smtp, submission or submissions (default: from the port)")
		relay       = fs.Bool("relay", true, "run the 16 open-relay tries (RCPT only, never DATA); with --domain only when given")
		relayFrom   = fs.String("relay-from", d.RelayFrom, "local part of the relay tries' senders")
		relayTo     = fs.String("relay-to", d.RelayTo, "local part of the relay tries' recipients")
		relayDomain = fs.String("relay-domain", d.RelayDomain, "`domain` the relay tries send to (one the server must not relay for)")
		relayIP     = fs.String("relay-ip", "", "`IP` of the IP-literal relay forms (default: the server's address)")
		tlsVersions = fs.Bool("tls-versions", true, "try TLS 1.0, 1.1, 1.2 and 1.3 one by one")
		enumerate   = fs.Bool("enumerate", true, "try VRFY and EXPN")
		helo        = fs.String("helo", d.HeloName, "`name` to give in EHLO")
		connectTO   = fs.Duration("connect-timeout", d.ConnectTimeout, "bound on each TCP connect")
		stepTO      = fs.Duration("step-timeout", d.StepTimeout, "bound on each reply and TLS handshake")
		total       = fs.Duration("timeout", d.Total, "bound on the whole run")
		dnsServers  = fs.String("dns", "", "resolvers for --domain, `host:port,...` (default: /etc/resolv.conf); DNSSEC status is their AD bit")
		caFile      = fs.String("ca-file", "", "PEM `file` of extra trusted root CAs (for private CAs and tests)")
		verbose     = fs.Bool("v", false, "show the relay tries and the SMTP transcript")
	)
	positional, err := parseInterleaved(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *ports {
		if err := probe.WritePorts(stdout); err != nil {
			return 2
		}
		return 0
	}
	failSev, failNever := probe.High, false
	if strings.EqualFold(*failOn, "none") {
		failNever = true
	} else if failSev, err = probe.ParseSeverity(*failOn); err != nil {
		fmt.Fprintf(stderr, "posthorn probe: --fail-on: %v\n", err)
		return 2
	}
	if (*domain == "") == (len(positional) == 0) || len(positional) > 1 {
		fmt.Fprintln(stderr, "posthorn probe: give one HOST[:PORT] or --domain DOMAIN")
		fs.Usage()
		return 2
	}
	relaySet := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "relay" {
			relaySet = true
		}
	})

	o := d
	o.HeloName, o.ConnectTimeout, o.StepTimeout, o.Total = *helo, *connectTO, *stepTO, *total
	o.Relay = *relay
	if *domain != "" && !relaySet {
		o.Relay = false // the relay test on someone's MX only when asked
	}
	o.RelayFrom, o.RelayTo, o.RelayDomain, o.RelayIP = *relayFrom, *relayTo, *relayDomain, *relayIP
	o.TLSVersions, o.Enumerate = *tlsVersions, *enumerate
	if *caFile != "" {
		pool, err := loadRoots(*caFile)
		if err != nil {
			fmt.Fprintf(stderr, "posthorn probe: --ca-file: %v\n", err)
			return 2
		}
		o.RootCAs = pool
	}

	var rep *probe.Report
	if *domain != "" {
		var servers []string
		if *dnsServers != "" {
			servers = strings.Split(*dnsServers, ",")
		}
		o.Resolver = dns.NewClient(dns.ClientOptions{Servers: servers, Timeout: min(o.StepTimeout, 10*time.Second)})
		rep, err = probe.RunDomain(ctx, *domain, o)
		if err != nil {
			fmt.Fprintf(stderr, "posthorn probe: %v\n", err)
			return 3
		}
	} else {
		host, port, err := probe.SplitTarget(positional[0])
		if err != nil {
			fmt.Fprintf(stderr, "posthorn probe: %v\n", err)
			return 2
		}
		if p, ok := probe.PortInfo(port); ok && (p.Service == "pop3" || p.Service == "imap" || p.Service == "imaps" || p.Service == "pop3s") {
			fmt.Fprintf(stderr, "posthorn probe: port %d is %s, not SMTP (see posthorn probe --ports)\n", port, p.Service)
			return 2
		}
		m := probe.ModeForPort(port)
		switch *mode {
		case "":
		case "smtp", "submission", "submissions":
			m = probe.Mode(*mode)
		default:
			fmt.Fprintf(stderr, "posthorn probe: --mode %q: want smtp, submission or submissions\n", *mode)
			return 2
		}
		rep = probe.RunHost(ctx, host, port, m, o)
	}

	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			fmt.Fprintf(stderr, "posthorn probe: %v\n", err)
			return 2
		}
	} else if err := probe.WriteText(stdout, rep, *verbose); err != nil {
		return 2
	}

	reachable := false
	for _, h := range rep.Hosts {
		reachable = reachable || h.Reachable
	}
	if *domain == "" && !reachable {
		return 3
	}
	if !failNever && probe.AtLeast(rep.Findings, failSev) {
		return 1
	}
	return 0
}

// parseInterleaved lets flags come before and after the positional
// argument ("probe HOST --json" as well as "probe --json HOST").
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return positional, nil
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
}

// loadRoots returns the system roots plus the certificates of file.
func loadRoots(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s holds no PEM certificate", file)
	}
	return pool, nil
}
