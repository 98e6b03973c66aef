package tlsrpt

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"syscall"
)

// HTTPSURIs returns the https: report URIs of rec, normalized (a scheme
// written "HTTPS:" comes back as "https:").
func (rec Record) HTTPSURIs() []string {
	var out []string
	for _, u := range rec.RUA {
		if p, err := url.Parse(u); err == nil && p.Scheme == "https" && p.Host != "" {
			out = append(out, p.String())
		}
	}
	return out
}

// Post submits the report r for a policy domain to an https: report URI
// (RFC 8460 5.4): an HTTP POST of the gzipped JSON as
// application/tlsrpt+gzip. Any 2xx answer is success. c should verify
// certificates (the default roots) and dial with PublicOnly.
func Post(ctx context.Context, c *http.Client, uri string, r *Report) error {
	gz, err := gzipJSON(r)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, uri, bytes.NewReader(gz))
	if err != nil {
		return err
	}
	if req.URL.Scheme != "https" {
		return fmt.Errorf("tlsrpt: %s is not an https: URI", uri)
	}
	req.Header.Set("Content-Type", "application/tlsrpt+gzip")
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) //nolint:errcheck // only drained
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("tlsrpt: %s answered %s", uri, resp.Status)
	}
	return nil
}

// PublicOnly is a net.Dialer Control that refuses addresses that are not
// global unicast (loopback, private, link-local, unspecified, multicast):
// a report URI in somebody else's DNS must not make posthorn POST into
// its own network.
func PublicOnly(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("tlsrpt: %s: %w", address, err)
	}
	a := ap.Addr().Unmap()
	if !a.IsGlobalUnicast() || a.IsPrivate() {
		return &net.AddrError{Err: "not a public address; report URIs may not point into local networks", Addr: a.String()}
	}
	return nil
}
