// Package mtastshost serves posthorn's own MTA-STS policy at https://mta-sts.DOMAIN/.well-known/mta-sts.txt (RFC 8461 3.3).
package mtastshost

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// WellKnownPath is where a policy is fetched from (RFC 8461 3.3).
const WellKnownPath = "/.well-known/mta-sts.txt"

// MaxMaxAge is the largest max_age a policy may have: about one year
// (RFC 8461 3.2).
const MaxMaxAge = 31557600 * time.Second

// Policy is the policy posthorn publishes for its domains: all of them
// name the same MX host, this server.
type Policy struct {
	Mode   string        // "testing", "enforce" or "none"
	MX     []string      // host names, or "*.example.com" patterns
	MaxAge time.Duration // whole seconds; at most MaxMaxAge
}

// Text is the policy body (RFC 8461 3.2): key: value lines ending in CRLF.
func (p Policy) Text() string {
	var b strings.Builder
	b.WriteString("version: STSv1\r\nmode: " + p.Mode + "\r\n")
	for _, mx := range p.MX {
		b.WriteString("mx: " + mx + "\r\n")
	}
	b.WriteString("max_age: " + strconv.FormatInt(int64(p.MaxAge/time.Second), 10) + "\r\n")
	return b.String()
}

// ID is the id= of the _mta-sts TXT record for this policy: it changes
// whenever the policy text does, which tells senders to fetch it again
// (RFC 8461 3.1).
func (p Policy) ID() string {
	sum := sha256.Sum256([]byte(p.Text()))
	return hex.EncodeToString(sum[:8])
}

// Options configures a Server.
type Options struct {
	// Domains are the policy domains: a request for mta-sts.DOMAIN gets
	// the policy; every other host, 404.
	Domains []string
	Policy  Policy
	// TLS serves the certificate for the mta-sts names. It may also
	// answer ACME tls-alpn-01 challenges (see acme.Manager.ChallengeTLSConfig).
	TLS    *tls.Config
	Logger *slog.Logger
}

// Server is the HTTPS policy host.
type Server struct {
	hosts map[string]bool
	body  []byte
	tls   *tls.Config
	http  *http.Server
	log   *slog.Logger
}

// New makes a Server.
func New(opts Options) *Server {
	s := &Server{hosts: map[string]bool{}, body: []byte(opts.Policy.Text()), log: opts.Logger}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	for _, d := range opts.Domains {
		s.hosts["mta-sts."+strings.ToLower(strings.TrimSuffix(d, "."))] = true
	}
	s.tls = opts.TLS.Clone()
	if !slices.Contains(s.tls.NextProtos, "http/1.1") {
		s.tls.NextProtos = append([]string{"http/1.1"}, s.tls.NextProtos...)
	}
	if s.tls.MinVersion < tls.VersionTLS12 {
		s.tls.MinVersion = tls.VersionTLS12
	}
	s.http = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    8 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		// Other protocols negotiated by ALPN (acme-tls/1) end with the
		// handshake: there is nothing to say on them.
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){
			"acme-tls/1": func(_ *http.Server, c *tls.Conn, _ http.Handler) { c.Close() },
		},
	}
	return s
}

// ServeHTTP answers GET and HEAD of the policy for our mta-sts hosts;
// anything else is 404 (never a redirect: RFC 8461 3.3 forbids senders to
// follow them).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	host := strings.ToLower(r.Host)
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(host, ".")
	if !s.hosts[host] || r.URL.Path != WellKnownPath || r.URL.RawQuery != "" {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	w.Header().Set("Content-Length", strconv.Itoa(len(s.body)))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		w.Write(s.body)
	}
}

// Serve accepts TLS connections on ln until Shutdown; it returns
// http.ErrServerClosed then.
func (s *Server) Serve(ln net.Listener) error {
	err := s.http.Serve(tls.NewListener(ln, s.tls))
	if errors.Is(err, http.ErrServerClosed) {
		return http.ErrServerClosed
	}
	return err
}

// Shutdown stops accepting, and waits for requests in progress until ctx is done.
func (s *Server) Shutdown(ctx context.Context) error { return s.http.Shutdown(ctx) }
