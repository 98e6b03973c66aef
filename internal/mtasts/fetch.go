package mtasts

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/posthorn/posthorn/internal/dns"
)

// MaxPolicySize bounds the policy body a fetch reads. RFC 8461 3.3 lets
// senders impose a limit; 64 KiB is what other implementations use, and a
// real policy is a few hundred octets.
const MaxPolicySize = 64 << 10

// FetchOptions configures Fetch.
type FetchOptions struct {
	// Resolver resolves the policy host mta-sts.<domain>. Nil means the
	// system resolver (through net.Dialer).
	Resolver dns.Resolver
	// RootCAs are the trust anchors for the policy host's certificate; nil
	// means the system roots. Tests give their own CA here.
	RootCAs *x509.CertPool
	// Port is the HTTPS port to connect to; zero means 443. Only tests,
	// whose policy server listens on a random loopback port, set it.
	Port int
	// Timeout bounds the whole fetch; zero means 30 seconds.
	Timeout time.Duration
}

// ErrFetch wraps every failure to get a policy (network, TLS, HTTP
// status), so callers can tell "unreachable" from "malformed" (ErrBadPolicy).
var ErrFetch = errors.New("mtasts: policy fetch failed")

// PolicyURL returns the well-known URL of domain's policy (RFC 8461 3.3).
func PolicyURL(domain string) string {
	return "https://mta-sts." + strings.TrimSuffix(domain, ".") + "/.well-known/mta-sts.txt"
}

// Fetch gets and parses domain's policy over HTTPS: certificate checked
// against the WebPKI (or FetchOptions.RootCAs) for the policy host name,
// no redirects followed, only status 200 with media type text/plain, body
// no larger than MaxPolicySize (RFC 8461 3.3).
func Fetch(ctx context.Context, domain string, opts FetchOptions) (*Policy, error) {
	body, err := FetchBody(ctx, domain, opts)
	if err != nil {
		return nil, err
	}
	return Parse(body)
}

// FetchBody is Fetch without the parsing: it returns the raw policy body.
func FetchBody(ctx context.Context, domain string, opts FetchOptions) ([]byte, error) {
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	host := "mta-sts." + strings.TrimSuffix(domain, ".")
	port := opts.Port
	if port == 0 {
		port = 443
	}
	dialer := &net.Dialer{}
	transport := &http.Transport{
		Proxy: nil, // a policy fetch goes to the policy host itself
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			if opts.Resolver == nil {
				return dialer.DialContext(ctx, network, net.JoinHostPort(host, strconv.Itoa(port)))
			}
			ips, _, err := opts.Resolver.LookupIP(ctx, "ip", host)
			if err != nil {
				return nil, err
			}
			var firstErr error
			for _, ip := range ips {
				c, err := dialer.DialContext(ctx, network, net.JoinHostPort(ip.String(), strconv.Itoa(port)))
				if err == nil {
					return c, nil
				}
				if firstErr == nil {
					firstErr = err
				}
			}
			if firstErr == nil {
				firstErr = fmt.Errorf("no address for %s", host)
			}
			return nil, firstErr
		},
		// RFC 8461 3.3: the certificate must be valid for the policy host
		// under the WebPKI; crypto/tls checks chain and name by default.
		TLSClientConfig:        &tls.Config{RootCAs: opts.RootCAs, ServerName: host, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:    timeout,
		ResponseHeaderTimeout:  timeout,
		DisableKeepAlives:      true,
		MaxResponseHeaderBytes: 16 << 10,
	}
	defer transport.CloseIdleConnections()
	client := &http.Client{
		Transport: transport,
		// RFC 8461 3.3: "Senders MUST NOT follow redirects."
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, PolicyURL(domain), nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrFetch, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		// %w twice: callers tell a certificate failure (TLS-RPT
		// sts-webpki-invalid) by errors.As.
		return nil, fmt.Errorf("%w: %w", ErrFetch, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		where := ""
		if loc := resp.Header.Get("Location"); loc != "" {
			where = " (redirect to " + loc + ", not followed)"
		}
		return nil, fmt.Errorf("%w: HTTP status %d%s", ErrFetch, resp.StatusCode, where)
	}
	mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err != nil || mt != "text/plain" {
		return nil, fmt.Errorf("%w: media type %q, want text/plain", ErrBadPolicy, resp.Header.Get("Content-Type"))
	}
	if resp.ContentLength > MaxPolicySize {
		return nil, fmt.Errorf("%w: body of %d octets is over %d", ErrBadPolicy, resp.ContentLength, MaxPolicySize)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxPolicySize+1))
	if err != nil {
		return nil, fmt.Errorf("%w: reading body: %v", ErrFetch, err)
	}
	if len(body) > MaxPolicySize {
		return nil, fmt.Errorf("%w: body over %d octets", ErrBadPolicy, MaxPolicySize)
	}
	return body, nil
}
