package dns

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	mdns "github.com/miekg/dns"
)

// ClientOptions configures NewClient.
type ClientOptions struct {
	// Servers are the recursive resolvers to ask, as "host:port", tried in
	// order. Empty means the nameservers of /etc/resolv.conf (and
	// 127.0.0.1:53 when that file cannot be read).
	Servers []string
	// Timeout bounds one exchange with one server; zero means 5 seconds.
	Timeout time.Duration
}

// maxCNAMEHops bounds how many CNAMEs are followed for one lookup.
const maxCNAMEHops = 8

// udpBufSize is the EDNS0 payload size we advertise (RFC 6891 6.2.5).
const udpBufSize = 1232

// Client is a Resolver that asks recursive servers over UDP, falling back
// to TCP on truncation. It does not validate DNSSEC itself: it sets DO and AD
// in its queries and reports the upstream's AD bit (RFC 6840 5.7).
type Client struct {
	QueryResolver // the six lookups, over c.query
	servers       []string
	timeout       time.Duration
}

var _ Resolver = (*Client)(nil)

// NewClient returns a Client. Reading /etc/resolv.conf happens here, once.
func NewClient(opts ClientOptions) *Client {
	c := &Client{servers: opts.Servers, timeout: opts.Timeout}
	c.QueryResolver = QueryResolver{Query: c.query}
	if c.timeout <= 0 {
		c.timeout = 5 * time.Second
	}
	if len(c.servers) == 0 {
		c.servers = systemServers("/etc/resolv.conf")
	}
	return c
}

func systemServers(path string) []string {
	cfg, err := mdns.ClientConfigFromFile(path)
	if err != nil || len(cfg.Servers) == 0 {
		return []string{"127.0.0.1:53"}
	}
	var out []string
	for _, s := range cfg.Servers {
		out = append(out, net.JoinHostPort(s, cfg.Port))
	}
	return out
}

// IsNotFound reports whether err says the name or the records do not exist
// (NXDOMAIN or NODATA).
func IsNotFound(err error) bool {
	var de *net.DNSError
	return errors.As(err, &de) && de.IsNotFound
}

// IsTemporary reports whether err is a temporary failure (SERVFAIL, REFUSED,
// timeout, network error) for which retrying later may give an answer.
func IsTemporary(err error) bool {
	var de *net.DNSError
	return errors.As(err, &de) && (de.IsTemporary || de.IsTimeout)
}

// NotFoundError returns the error Resolvers give for NXDOMAIN and NODATA.
func NotFoundError(name, server string) error {
	return &net.DNSError{Err: errNXDomain, Name: name, Server: server, IsNotFound: true}
}

// NoDataError returns the error Resolvers give when the name exists but
// has no records of the asked type (RFC 2308 2.2). It is IsNotFound too.
func NoDataError(name, server string) error {
	return &net.DNSError{Err: errNoData, Name: name, Server: server, IsNotFound: true}
}

const (
	errNXDomain = "no such host"
	errNoData   = "no records of the requested type"
)

func isNoData(err error) bool {
	var de *net.DNSError
	return errors.As(err, &de) && de.IsNotFound && de.Err == errNoData
}

// TemporaryError returns the error Resolvers give for SERVFAIL and the like.
func TemporaryError(name, server, why string) error {
	return &net.DNSError{Err: why, Name: name, Server: server, IsTemporary: true}
}

// TimeoutError returns the error Resolvers give when no answer came in time.
func TimeoutError(name, server string) error {
	return &net.DNSError{Err: "i/o timeout", Name: name, Server: server, IsTimeout: true, IsTemporary: true}
}

// exchange sends one question to the servers in order and returns the first
// answer that is NOERROR or NXDOMAIN. SERVFAIL, REFUSED and network errors
// move on to the next server; when all fail the error is temporary.
func (c *Client) exchange(ctx context.Context, name string, qtype uint16) (*mdns.Msg, error) {
	q := new(mdns.Msg)
	q.SetQuestion(name, qtype)
	q.RecursionDesired = true
	// RFC 6840 5.7: AD in a query asks the validating resolver to report
	// authentication; DO (RFC 3225) does the same and asks for signatures.
	q.AuthenticatedData = true
	q.SetEdns0(udpBufSize, true)

	var lastErr error
	for _, server := range c.servers {
		if err := ctx.Err(); err != nil {
			return nil, ctxError(name, server, err)
		}
		r, err := c.exchangeOne(ctx, q, server)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctxError(name, server, ctx.Err())
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				lastErr = TimeoutError(name, server)
			} else {
				lastErr = &net.DNSError{Err: err.Error(), Name: name, Server: server, IsTemporary: true, UnwrapErr: err}
			}
			continue
		}
		if r.Id != q.Id {
			lastErr = TemporaryError(name, server, "mismatched response id")
			continue
		}
		switch r.Rcode {
		case mdns.RcodeSuccess, mdns.RcodeNameError:
			return r, nil
		default:
			lastErr = TemporaryError(name, server, "server answered "+mdns.RcodeToString[r.Rcode])
		}
	}
	if lastErr == nil {
		lastErr = TemporaryError(name, "", "no DNS servers configured")
	}
	return nil, lastErr
}

// exchangeOne asks one server over UDP and again over TCP when the UDP
// answer is truncated (RFC 7766 5).
func (c *Client) exchangeOne(ctx context.Context, q *mdns.Msg, server string) (*mdns.Msg, error) {
	udp := &mdns.Client{Net: "udp", Timeout: c.timeout, UDPSize: udpBufSize}
	r, _, err := udp.ExchangeContext(ctx, q, server)
	if err != nil {
		return nil, err
	}
	if !r.Truncated {
		return r, nil
	}
	tcp := &mdns.Client{Net: "tcp", Timeout: c.timeout}
	r, _, err = tcp.ExchangeContext(ctx, q, server)
	return r, err
}

func ctxError(name, server string, err error) error {
	return &net.DNSError{
		Err: err.Error(), Name: name, Server: server,
		IsTimeout: errors.Is(err, context.DeadlineExceeded), IsTemporary: true, UnwrapErr: err,
	}
}

// query resolves name for qtype, following CNAME chains, and returns the
// records of qtype owned by the end of the chain. Authentic holds only when
// every response along the way had AD set.
func (c *Client) query(ctx context.Context, host string, qtype uint16) ([]mdns.RR, string, Result, error) {
	name := mdns.Fqdn(host)
	if _, ok := mdns.IsDomainName(name); !ok {
		return nil, name, Result{}, &net.DNSError{Err: "invalid domain name", Name: host}
	}
	res := Result{Authentic: true}
	seen := map[string]bool{}
	for hop := 0; hop <= maxCNAMEHops; hop++ {
		r, err := c.exchange(ctx, name, qtype)
		if err != nil {
			return nil, name, Result{}, err
		}
		res.Authentic = res.Authentic && r.AuthenticatedData
		// Names off the wire are in presentation form (RFC 4343 escapes),
		// so the chain starts at the question as the response spells it.
		start := name
		if len(r.Question) == 1 && strings.EqualFold(UnescapeTXT(r.Question[0].Name), UnescapeTXT(name)) {
			start = r.Question[0].Name
		}
		rrs, end, pending := followChain(r.Answer, start, qtype, seen)
		if len(rrs) > 0 {
			return rrs, end, res, nil
		}
		if r.Rcode == mdns.RcodeNameError {
			return nil, end, res, NotFoundError(host, "")
		}
		if !pending || seen[strings.ToLower(end)] {
			return nil, end, res, NoDataError(host, "")
		}
		// The answer stopped at a CNAME without its target: ask for the target.
		name = end
	}
	return nil, name, Result{}, TemporaryError(host, "", "CNAME chain too long")
}

// followChain walks the CNAMEs in answer starting at name and returns the
// records of qtype owned by the last name. pending is true when the chain
// ended on a CNAME whose target's records are not in answer.
func followChain(answer []mdns.RR, name string, qtype uint16, seen map[string]bool) (rrs []mdns.RR, end string, pending bool) {
	cur := name
	for range maxCNAMEHops + 1 {
		var next string
		for _, rr := range answer {
			h := rr.Header()
			if !strings.EqualFold(h.Name, cur) {
				continue
			}
			if h.Rrtype == qtype {
				rrs = append(rrs, rr)
			} else if cn, ok := rr.(*mdns.CNAME); ok && qtype != mdns.TypeCNAME && next == "" {
				next = cn.Target
			}
		}
		if len(rrs) > 0 || next == "" {
			return rrs, cur, pending
		}
		seen[strings.ToLower(cur)] = true
		if seen[strings.ToLower(next)] {
			return nil, next, true // a loop; the caller stops
		}
		cur, pending = next, true
	}
	return nil, cur, pending
}

func tlsaFromRR(rr *mdns.TLSA) (TLSA, error) {
	data, err := hex.DecodeString(rr.Certificate)
	if err != nil {
		return TLSA{}, fmt.Errorf("bad TLSA certificate data: %w", err)
	}
	return TLSA{Usage: rr.Usage, Selector: rr.Selector, MatchingType: rr.MatchingType, CertData: data}, nil
}

// UnescapeTXT turns a character-string as miekg/dns keeps it (presentation
// form: \" \\ and \DDD escapes) back into its octets.
func UnescapeTXT(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' || i+1 >= len(s) {
			b.WriteByte(c)
			continue
		}
		if i+3 < len(s) && isDigit(s[i+1]) && isDigit(s[i+2]) && isDigit(s[i+3]) {
			n := int(s[i+1]-'0')*100 + int(s[i+2]-'0')*10 + int(s[i+3]-'0')
			if n <= 255 {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i+1])
		i++
	}
	return b.String()
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }
