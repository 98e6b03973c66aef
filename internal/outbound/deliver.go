package outbound

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/posthorn/posthorn/internal/bufpool"
	"github.com/posthorn/posthorn/internal/dns"
	"github.com/posthorn/posthorn/internal/queue"
	"github.com/posthorn/posthorn/internal/smtp"
	"github.com/posthorn/posthorn/internal/spool"
)

// Options configure a Deliverer. Zero values take the defaults.
type Options struct {
	// Hostname is our name for EHLO; also used to notice that we are an
	// MX of the destination ourselves (RFC 5321 5.1).
	Hostname string
	Resolver dns.Resolver
	// Port is the SMTP port of the MX hosts; default 25. Tests point it
	// elsewhere.
	Port int
	// Network restricts the address families used: "ip" (default),
	// "ip4" or "ip6" (Postfix inet_protocols).
	Network string
	// PreferIPv4 tries a host's IPv4 addresses before its IPv6 ones.
	PreferIPv4 bool
	// Smarthost, when set, takes all mail instead of the MX hosts.
	Smarthost *Smarthost
	// TLSConfig is the base of every client TLS configuration (RootCAs
	// for verification, client certificates); may be nil.
	TLSConfig *tls.Config
	// TLSPolicy decides the TLS level per destination domain; nil means
	// TLSMay everywhere. Not consulted for the smarthost.
	TLSPolicy TLSPolicyFunc
	Timeouts  Timeouts

	// DestinationConcurrency bounds deliveries in flight to one domain
	// (or to the smarthost); default 20, as Postfix's
	// default_destination_concurrency_limit.
	DestinationConcurrency int
	// TotalConcurrency bounds all deliveries in flight; default 100.
	TotalConcurrency int
	// MaxRecipients per transaction; more are sent in further
	// transactions on the same connection. Default 50 (Postfix's
	// default_destination_recipient_limit).
	MaxRecipients int
	// MaxSessions is how many servers that answered are tried for one
	// domain before its recipients are deferred; addresses that cannot
	// be connected to do not count. Default 2 (Postfix smtp_mx_session_limit).
	MaxSessions int

	// IdleTimeout is how long a connection is kept for the next message
	// to the same server; default 5s. ReuseTimeLimit stops reuse of a
	// connection this old; default 5m. MaxIdle bounds idle connections
	// in total (default 100), MaxIdlePerServer per server (default
	// DestinationConcurrency).
	IdleTimeout      time.Duration
	ReuseTimeLimit   time.Duration
	MaxIdle          int
	MaxIdlePerServer int

	Logger *slog.Logger
	// Dial replaces net.Dialer (e.g. to bind a source address).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Shuffle replaces rand.Shuffle for MX hosts of equal preference.
	Shuffle func(n int, swap func(i, j int))
	Metrics Metrics // nil: none
	// OnTLS, when set, is told how TLS went in every session (TLS-RPT).
	OnTLS TLSOutcomeFunc
}

// Smarthost is a relay that takes all remote mail (Postfix relayhost).
type Smarthost struct {
	// Host is a name whose MX records are looked up, or, in brackets
	// ("[relay.example.net]", "[192.0.2.1]"), a host used as is.
	Host string
	Port int // default 25
	// RequireTLS defers mail when STARTTLS is not offered or fails;
	// otherwise TLS is opportunistic.
	RequireTLS bool
	// VerifyTLS also requires the certificate to verify against Host.
	VerifyTLS bool
	// Username and Password, when Username is set, are used with AUTH
	// PLAIN or LOGIN — only over TLS unless AllowPlaintextAuth.
	Username           string
	Password           string
	AllowPlaintextAuth bool
}

// ParseSmarthost reads "host", "host:port", "[host]" or "[host]:port".
func ParseSmarthost(s string) (Smarthost, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Smarthost{}, errors.New("empty smarthost")
	}
	host, port := s, 0
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return Smarthost{}, fmt.Errorf("smarthost %q: missing ]", s)
		}
		host = s[:end+1]
		rest := s[end+1:]
		if rest != "" {
			p, ok := strings.CutPrefix(rest, ":")
			if !ok {
				return Smarthost{}, fmt.Errorf("smarthost %q: expected :port after ]", s)
			}
			n, err := strconv.Atoi(p)
			if err != nil || n < 1 || n > 65535 {
				return Smarthost{}, fmt.Errorf("smarthost %q: bad port", s)
			}
			port = n
		}
		if len(host) < 3 {
			return Smarthost{}, fmt.Errorf("smarthost %q: empty host", s)
		}
	} else if h, p, err := net.SplitHostPort(s); err == nil {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 || h == "" {
			return Smarthost{}, fmt.Errorf("smarthost %q: bad port", s)
		}
		host, port = h, n
	}
	name := strings.Trim(host, "[]")
	if _, err := netip.ParseAddr(strings.TrimPrefix(name, "IPv6:")); err != nil && !smtp.IsDomain(name, false) {
		return Smarthost{}, fmt.Errorf("smarthost %q: %q is not a host name or address", s, name)
	}
	if port == 0 {
		port = 25
	}
	return Smarthost{Host: host, Port: port}, nil
}

// Deliverer delivers to remote domains. Its Deliver method is a
// queue.DeliverFunc for recipients at other domains.
type Deliverer struct {
	o     Options
	log   *slog.Logger
	pool  *pool
	limit *limiter
	// noChunking: server addresses that offered CHUNKING but answered BDAT
	// as an unknown command, and until when they get DATA instead.
	noChunking sync.Map // netip.Addr → time.Time
}

// noChunkingFor is how long a server that did not know BDAT gets DATA.
const noChunkingFor = 24 * time.Hour

func (d *Deliverer) chunkingBroken(a netip.Addr) bool {
	v, ok := d.noChunking.Load(a)
	if !ok {
		return false
	}
	if time.Now().After(v.(time.Time)) {
		d.noChunking.Delete(a)
		return false
	}
	return true
}

// New returns a Deliverer. Close it to say goodbye to idle connections.
func New(o Options) *Deliverer {
	o.Timeouts.setDefaults()
	if o.Port == 0 {
		o.Port = 25
	}
	if o.Network == "" {
		o.Network = "ip"
	}
	if o.DestinationConcurrency <= 0 {
		o.DestinationConcurrency = 20
	}
	if o.TotalConcurrency <= 0 {
		o.TotalConcurrency = 100
	}
	if o.MaxRecipients <= 0 {
		o.MaxRecipients = 50
	}
	if o.MaxSessions <= 0 {
		o.MaxSessions = 2
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = 5 * time.Second
	}
	if o.ReuseTimeLimit <= 0 {
		o.ReuseTimeLimit = 5 * time.Minute
	}
	if o.MaxIdle <= 0 {
		o.MaxIdle = 100
	}
	if o.MaxIdlePerServer <= 0 {
		// As many as may be busy with one destination: with fewer, a
		// steady flow to one server closes and reopens connections
		// (connect, greeting, EHLO, STARTTLS) for most messages.
		o.MaxIdlePerServer = o.DestinationConcurrency
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Dial == nil {
		d := &net.Dialer{Timeout: o.Timeouts.Connect}
		o.Dial = d.DialContext
	}
	if o.Smarthost != nil && o.Smarthost.Port == 0 {
		sh := *o.Smarthost
		sh.Port = 25
		o.Smarthost = &sh
	}
	return &Deliverer{
		o:     o,
		log:   o.Logger,
		pool:  newPool(o.MaxIdle, o.MaxIdlePerServer, o.IdleTimeout, o.ReuseTimeLimit, 10*time.Second),
		limit: newLimiter(o.TotalConcurrency, o.DestinationConcurrency),
	}
}

// Close sends QUIT on the idle connections and closes them.
func (d *Deliverer) Close() error {
	d.pool.close()
	return nil
}

// Deliver implements queue.DeliverFunc: the recipients are grouped by
// domain (all to the smarthost when there is one) and each group goes to
// its servers in one transaction (in several only beyond MaxRecipients).
// Outcome.Detail is in the form ParseDetail reads.
func (d *Deliverer) Deliver(ctx context.Context, env *spool.Envelope, body func() (io.ReadCloser, error), rcpts []int) []queue.Outcome {
	out := make([]queue.Outcome, len(rcpts))
	m := &message{env: env, body: body}
	var order []string
	groups := map[string][]int{}
	for i, idx := range rcpts {
		addr := env.Recipients[idx].Addr
		dom := strings.ToLower(addr[strings.LastIndexByte(addr, '@')+1:])
		if d.o.Smarthost != nil {
			dom = ""
		}
		if _, ok := groups[dom]; !ok {
			order = append(order, dom)
		}
		groups[dom] = append(groups[dom], i)
	}
	if len(order) == 1 {
		// One destination, the common case: no goroutine of its own
		// (whose stack would grow again for every message).
		(&group{d: d, m: m, ctxv: ctx, domain: order[0], pos: groups[order[0]], rcpts: rcpts, out: out}).deliver()
		return out
	}
	var wg sync.WaitGroup
	for _, dom := range order {
		g := &group{d: d, m: m, ctxv: ctx, domain: dom, pos: groups[dom], rcpts: rcpts, out: out}
		wg.Go(g.deliver)
	}
	wg.Wait()
	return out
}

// message is the queued message, read lazily and at most once for its
// 8-bit scan and once more for a 7-bit conversion.
type message struct {
	env  *spool.Envelope
	body func() (io.ReadCloser, error)

	scanOnce       sync.Once
	header8, body8 bool
	scanErr        error

	convOnce sync.Once
	conv     []byte
	convErr  error
}

func (m *message) scan() error {
	m.scanOnce.Do(func() {
		rc, err := m.body()
		if err != nil {
			m.scanErr = err
			return
		}
		defer rc.Close()
		buf := bufpool.Get()
		defer bufpool.Put(buf)
		br := bufpool.Reader(rc)
		defer bufpool.PutReader(br)
		// The header section line by line, to find where it ends.
		for {
			line, err := br.ReadSlice('\n')
			if (len(line) == 0 || string(line) == "\r\n" || string(line) == "\n") && err != bufio.ErrBufferFull {
				break
			}
			if has8bit(line) {
				m.header8 = true
			}
			if err == io.EOF {
				return
			}
			if err != nil && err != bufio.ErrBufferFull {
				m.scanErr = err
				return
			}
		}
		// The body in whole buffers, until the first 8-bit octet: it
		// is still read to the end, so that the spool's digest check
		// at the end of the body runs.
		for {
			n, err := br.Read(*buf)
			if !m.body8 && has8bit((*buf)[:n]) {
				m.body8 = true
			}
			if err == io.EOF {
				return
			}
			if err != nil {
				m.scanErr = err
				return
			}
		}
	})
	return m.scanErr
}

// open returns the message as sent: converted to 7 bit when asked, and
// its size.
func (m *message) open(convert bool) (io.ReadCloser, int64, error) {
	if !convert {
		rc, err := m.body()
		return rc, m.env.Size, err
	}
	m.convOnce.Do(func() {
		rc, err := m.body()
		if err != nil {
			m.convErr = err
			return
		}
		defer rc.Close()
		b, err := io.ReadAll(rc)
		if err != nil {
			m.convErr = err
			return
		}
		m.conv = to7bit(b)
	})
	if m.convErr != nil {
		return nil, 0, m.convErr
	}
	return io.NopCloser(bytes.NewReader(m.conv)), int64(len(m.conv)), nil
}

// group is the delivery of one domain's recipients.
type group struct {
	d      *Deliverer
	m      *message
	ctxv   context.Context
	domain string // "" for the smarthost
	pos    []int  // positions in rcpts and out
	rcpts  []int
	out    []queue.Outcome
	detail map[int]string // last detail of each pending position
	tls    string         // TLS of the last connection, for metrics
	// onlyReqTLS: every host so far was passed over because it could not
	// carry a REQUIRETLS message; such a message then fails (RFC 8689).
	onlyReqTLS bool
}

func (g *group) rcpt(p int) *spool.Recipient { return &g.m.env.Recipients[g.rcpts[p]] }

// settle gives every pending recipient the same outcome.
func (g *group) settle(st queue.Status, detail string, pending []int) {
	for _, p := range pending {
		g.finish(p, st, detail)
	}
}

func (g *group) finish(p int, st queue.Status, detail string, attrs ...any) {
	g.out[p] = queue.Outcome{Status: st, Detail: detail}
	g.count(st)
	args := append([]any{"id", g.m.env.ID, "rcpt", g.rcpt(p).Addr, "status", st, "detail", detail}, attrs...)
	g.d.log.Info("remote delivery", args...)
}

func (g *group) deliver() {
	d := g.d
	dest := g.domain
	if d.o.Smarthost != nil {
		dest = "smarthost " + d.o.Smarthost.Host
	}
	release, err := d.limit.acquire(g.ctx(), dest)
	if err != nil {
		g.settle(queue.Deferred, localDetail("4.4.5", "delivery to "+dest+" not started: "+err.Error()), g.pos)
		return
	}
	defer release()

	hosts, port, pol, st, detail := g.route()
	if detail != "" {
		g.settle(st, detail, g.pos)
		return
	}
	pending := append([]int(nil), g.pos...)
	g.detail = map[int]string{}
	setAll := func(s string) {
		for _, p := range pending {
			g.detail[p] = s
		}
	}
	// A host without addresses says less than what a server said.
	setWeak := func(s string) {
		for _, p := range pending {
			if g.detail[p] == "" {
				g.detail[p] = s
			}
		}
	}
	sessions := 0
	allNotFound := true
	g.onlyReqTLS = g.m.env.RequireTLS
hosts:
	for _, host := range hosts {
		hpol := pol
		if pol.ForHost != nil {
			hp, err := pol.ForHost(g.ctx(), host)
			if err != nil {
				allNotFound, g.onlyReqTLS = false, false
				setAll(localDetail("4.7.5", "TLS policy for "+host+": "+errText(err)))
				continue
			}
			hpol = hp
		}
		if g.m.env.RequireTLS && !requireTLSPolicy(hpol) {
			allNotFound = false
			setAll(localDetail("5.7.30", "REQUIRETLS: TLS to "+host+" is not verified by MTA-STS or DANE (RFC 8689)"))
			continue
		}
		addrs, err := lookupAddrs(g.ctx(), d.o.Resolver, d.o.Network, host, d.o.PreferIPv4)
		if err != nil {
			g.onlyReqTLS = false
			if dns.IsNotFound(err) {
				setWeak(localDetail("5.4.4", "host "+host+" has no address: "+err.Error()))
			} else {
				allNotFound = false
				setAll(localDetail("4.4.3", "address lookup for "+host+" failed: "+err.Error()))
			}
			continue
		}
		allNotFound = false
		for _, a := range addrs {
			if g.ctx().Err() != nil {
				setAll(localDetail("4.4.7", "delivery cut short: "+g.ctx().Err().Error()))
				break hosts
			}
			ap := netip.AddrPortFrom(a, uint16(port))
			s, detail := g.session(host, ap, hpol, true)
			for again := false; s != nil; again = true {
				g.noteTLS(s)
				pending = g.transact(s, pending)
				g.d.done(s)
				if !s.stale || again {
					// Once only: a new connection is not stale, and
					// one to a server that did not know BDAT sends
					// DATA.
					if s.reused && !s.stale {
						g.report(s.tls, true)
					}
					break
				}
				// A pooled connection that died while idle, or a
				// server that did not know BDAT: the message was not
				// taken, so once more on a new connection.
				d.log.Debug("reused connection no longer usable; connecting again", "id", g.m.env.ID, "server", s.where(), "err", errText(s.c.Err()))
				s, detail = g.session(host, ap, hpol, false)
			}
			if s == nil {
				g.onlyReqTLS = false
				setAll(detail)
				continue
			}
			sessions++
			if len(pending) == 0 || sessions >= d.o.MaxSessions {
				break hosts
			}
		}
	}
	st = queue.Deferred
	if allNotFound && len(hosts) > 0 {
		st = queue.Failed // Postfix: "Host or domain name not found"
	}
	if g.onlyReqTLS && len(hosts) > 0 {
		st = queue.Failed // RFC 8689 4.2.1: returned to the sender
	}
	for _, p := range pending {
		det := g.detail[p]
		if det == "" {
			det = localDetail("4.4.4", "no server of "+dest+" could be tried")
		}
		g.finish(p, st, det)
	}
}

// ctx is the context of the delivery attempt.
func (g *group) ctx() context.Context { return g.ctxv }

// route finds the hosts, port and TLS policy; a non-empty detail is a
// final answer for the whole group.
func (g *group) route() (hosts []string, port int, pol TLSPolicy, st queue.Status, detail string) {
	d := g.d
	ctx := g.ctx()
	name := g.domain
	port = d.o.Port
	if sh := d.o.Smarthost; sh != nil {
		name, port = sh.Host, sh.Port
		pol = TLSPolicy{Level: TLSMay, Source: "smarthost"}
		if sh.RequireTLS {
			pol.Level = TLSEncrypt
		}
		if sh.VerifyTLS {
			pol.Level = TLSVerify
		}
	}
	// Brackets suppress the MX lookup (RFC 5321 address literal; Postfix
	// relayhost semantics).
	if strings.HasPrefix(name, "[") && strings.HasSuffix(name, "]") {
		h := strings.TrimPrefix(name[1:len(name)-1], "IPv6:")
		hosts = []string{h}
	} else {
		var err error
		hosts, err = LookupMX(ctx, d.o.Resolver, name, d.o.Hostname, d.o.Shuffle)
		switch {
		case errors.Is(err, ErrNullMX):
			return nil, 0, pol, queue.Failed, localDetail("5.1.10", err.Error())
		case errors.Is(err, ErrNoDomain):
			return nil, 0, pol, queue.Failed, localDetail("5.1.2", err.Error())
		case errors.Is(err, ErrLoop):
			return nil, 0, pol, queue.Failed, localDetail("5.4.6", err.Error())
		case err != nil:
			return nil, 0, pol, queue.Deferred, localDetail("4.4.3", err.Error())
		}
	}
	if d.o.Smarthost == nil && d.o.TLSPolicy != nil {
		p, err := d.o.TLSPolicy(ctx, g.domain, hosts)
		if err != nil {
			return nil, 0, pol, queue.Deferred, localDetail("4.7.5", "TLS policy for "+g.domain+" unavailable: "+err.Error())
		}
		pol = p
		if pol.AllowHost != nil {
			var ok []string
			for _, h := range hosts {
				if pol.AllowHost(h) {
					ok = append(ok, h)
				}
			}
			if len(ok) == 0 {
				return nil, 0, pol, queue.Deferred, localDetail("4.7.5", fmt.Sprintf("no MX host of %s is allowed by its %s TLS policy", g.domain, pol.Source))
			}
			hosts = ok
		}
	}
	return hosts, port, pol, 0, ""
}

// sess is a connection ready for MAIL, with what delivery needs to know.
type sess struct {
	c    *Client
	key  poolKey
	host string
	ip   string
	tls  TLSOutcome // how the connection was set up
	// reused: taken from the pool; stale: its transaction found it dead
	// (ErrStale) before anything took effect.
	reused, stale bool
}

func (s *sess) where() string { return s.host + "[" + s.ip + "]" }

// session returns a connection to host at ap: with usePool an idle one
// when the pool has one (checked with an RSET, in front of the first
// transaction when the server pipelines: Client.ResetFirst), else a new
// one. On failure it returns the detail to record.
func (g *group) session(host string, ap netip.AddrPort, pol TLSPolicy, usePool bool) (*sess, string) {
	d := g.d
	key := poolKey{addr: ap, host: strings.ToLower(host), level: pol.Level, policy: pol.Source + "|" + strings.Join(pol.Names, ",")}
	if sh := d.o.Smarthost; sh != nil {
		key.user = sh.Username
	}
	for usePool {
		c := d.pool.get(key)
		if c == nil {
			break
		}
		if err := c.ResetFirst(g.ctx()); err == nil {
			s := &sess{c: c, key: key, host: host, ip: ap.Addr().String(), reused: true}
			s.tls = TLSOutcome{Domain: g.domain, Host: host, IP: s.ip, Policy: pol, Offered: c.Extensions().StartTLS, State: c.TLS()}
			return s, ""
		}
		c.Close()
	}
	s, detail, retryClear := g.connect(key, pol, true)
	if retryClear {
		// Postfix "may": a failed handshake is retried in clear text.
		d.log.Info("TLS failed; retrying in clear text", "id", g.m.env.ID, "server", host+"["+ap.Addr().String()+"]", "detail", detail)
		s, detail, _ = g.connect(key, pol, false)
	}
	return s, detail
}

// connect dials, reads the greeting, says EHLO, starts TLS as pol says
// and authenticates to the smarthost. retryClear asks the caller to try
// again without TLS.
func (g *group) connect(key poolKey, pol TLSPolicy, useTLS bool) (s *sess, detail string, retryClear bool) {
	d := g.d
	ctx := g.ctx()
	host, ip := key.host, key.addr.Addr().String()
	where := host + "[" + ip + "]"
	conn, err := d.o.Dial(ctx, "tcp", key.addr.String())
	if err != nil {
		return nil, localDetail("4.4.1", "connect to "+where+":"+strconv.Itoa(int(key.addr.Port()))+": "+errText(err)), false
	}
	c, err := NewClient(ctx, conn, ClientOptions{Hostname: d.o.Hostname, Timeouts: d.o.Timeouts, NoChunking: d.chunkingBroken(key.addr.Addr())})
	fail := func(err error, what string) (*sess, string, bool) {
		var re *ReplyError
		if errors.As(err, &re) {
			c.Quit(ctx)
			return nil, replyDetail(host, ip, re.Reply), false
		}
		if c != nil {
			c.Close()
		}
		return nil, localDetail("4.4.2", where+": "+what+": "+errText(err)), false
	}
	if err != nil {
		return fail(err, "reading the greeting")
	}
	if err := c.Hello(ctx); err != nil {
		return fail(err, "EHLO")
	}
	s = &sess{c: c, key: key, host: host, ip: ip}
	out := TLSOutcome{Domain: g.domain, Host: host, IP: ip, Policy: pol, Offered: c.Extensions().StartTLS}
	if useTLS && pol.Level != TLSNone {
		if !c.Extensions().StartTLS {
			if pol.Level >= TLSEncrypt {
				out.Err = ErrNoStartTLS
				g.report(out, false)
				c.Quit(ctx)
				return nil, localDetail("4.7.4", "TLS is required ("+pol.Source+" policy), but "+where+" does not offer STARTTLS"), false
			}
		} else {
			err := c.StartTLS(ctx, tlsConfig(d.o.TLSConfig, host, pol))
			var re *ReplyError
			switch {
			case err == nil:
				cs := c.TLS()
				out.State = cs
				verified := verifyPKIX(*cs, d.rootCAs(), host) == nil
				d.log.Info("TLS established", "id", g.m.env.ID, "server", where, "version", tls.VersionName(cs.Version),
					"cipher", tls.CipherSuiteName(cs.CipherSuite), "verified", verified || pol.Level == TLSVerify, "level", pol.Level)
			case errors.As(err, &re) && c.Usable() && c.TLS() == nil && pol.Level == TLSMay:
				// 454 and the like: carry on in clear text.
				out.Err = err
			case errors.As(err, &re) && c.Usable():
				out.Err = err
				g.report(out, false)
				c.Quit(ctx)
				return nil, replyDetail(host, ip, re.Reply), false
			case pol.Level == TLSMay && ctx.Err() == nil:
				out.Err = err
				g.report(out, false)
				c.Close()
				return nil, localDetail("4.7.5", where+": STARTTLS: "+errText(err)), true
			default:
				out.Err = err
				g.report(out, false)
				c.Close()
				return nil, localDetail("4.7.5", where+": STARTTLS: "+errText(err)), false
			}
		}
	}
	s.tls = out
	g.report(out, false)
	if sh := d.o.Smarthost; sh != nil && sh.Username != "" {
		switch {
		case c.TLS() == nil && !sh.AllowPlaintextAuth:
			c.Quit(ctx)
			return nil, localDetail("4.7.0", "not sending credentials to "+where+" without TLS"), false
		case len(c.Extensions().Auth) == 0:
			c.Quit(ctx)
			return nil, localDetail("4.7.0", where+" offers no AUTH; not relaying without authentication"), false
		}
		if err := c.Auth(ctx, sh.Username, sh.Password); err != nil {
			var re *ReplyError
			if errors.As(err, &re) {
				c.Quit(ctx)
				// Authentication failures are deferred, as Postfix does:
				// they are usually fixed by the administrator.
				return nil, localDetail("4.7.0", "authentication failed: "+replyDetail(host, ip, re.Reply)), false
			}
			return fail(err, "AUTH")
		}
	}
	return s, "", false
}

func (d *Deliverer) rootCAs() *x509.CertPool {
	if d.o.TLSConfig != nil {
		return d.o.TLSConfig.RootCAs
	}
	return nil
}

// done puts a session back into the pool, or closes it.
func (d *Deliverer) done(s *sess) {
	if s.c.Usable() {
		d.pool.put(s.key, s.c)
		return
	}
	s.c.Close()
}

// errText is an error for a detail line: one line, printable, bounded.
func errText(err error) string {
	b := []byte(err.Error())
	for i, c := range b {
		if c < 0x20 || c == 0x7f {
			b[i] = ' '
		}
	}
	if len(b) > 300 {
		b = append(b[:300], "..."...)
	}
	return string(b)
}

// transact sends the message to the pending recipients over s and
// returns those still pending (refused temporarily, or left without an
// answer).
func (g *group) transact(s *sess, pending []int) []int {
	d := g.d
	env := g.m.env
	ext := s.c.Extensions()
	ctx := g.ctx()
	if err := g.m.scan(); err != nil {
		g.settle(queue.Deferred, localDetail("4.3.0", "reading the queued message: "+err.Error()), pending)
		return nil
	}

	// RFC 6531 3.2: a message that needs SMTPUTF8 cannot go to a server
	// without it. As Postfix does, only a message whose addresses or
	// header fields are not ASCII needs it.
	needUTF8 := false
	if env.SMTPUTF8 {
		needUTF8 = g.m.header8 || !isASCII(env.From)
		for _, p := range pending {
			needUTF8 = needUTF8 || !isASCII(g.rcpt(p).Addr)
		}
	}
	if needUTF8 && !ext.SMTPUTF8 {
		g.settle(queue.Failed, localDetail("5.6.7", "the message needs SMTPUTF8 (non-ASCII addresses or header fields), but "+s.where()+" does not offer it"), pending)
		return nil
	}
	eight := env.Body == "8BITMIME" || g.m.body8
	convert := g.m.body8 && !ext.EightBitMIME

	size := env.Size
	if convert {
		rc, n, err := g.m.open(true)
		if err != nil {
			g.settle(queue.Deferred, localDetail("4.3.0", "reading the queued message: "+err.Error()), pending)
			return nil
		}
		rc.Close()
		size = n
	}
	// RFC 1870 6: a message larger than the server's SIZE is not sent.
	if ext.MaxSize > 0 && size > ext.MaxSize {
		g.settle(queue.Failed, localDetail("5.3.4", fmt.Sprintf("message size %d exceeds the size limit %d of %s", size, ext.MaxSize, s.where())), pending)
		return nil
	}
	var params []string
	if env.RequireTLS {
		// RFC 8689 4.2.1: only to a server that verified TLS (checked
		// with the policy) and offers REQUIRETLS.
		if s.c.TLS() == nil || !ext.RequireTLS {
			for _, p := range pending {
				g.detail[p] = localDetail("5.7.30", "REQUIRETLS: "+s.where()+" does not offer REQUIRETLS (RFC 8689)")
			}
			return pending
		}
		params = append(params, "REQUIRETLS")
	}
	g.onlyReqTLS = false
	if ext.Size && size > 0 {
		params = append(params, "SIZE="+strconv.FormatInt(size, 10))
	}
	if eight && ext.EightBitMIME {
		params = append(params, "BODY=8BITMIME")
	}
	if env.SMTPUTF8 && ext.SMTPUTF8 {
		params = append(params, "SMTPUTF8")
	}
	if ext.DSN {
		if env.Ret != "" {
			params = append(params, "RET="+env.Ret)
		}
		if env.EnvID != "" {
			params = append(params, "ENVID="+smtp.EncodeXtext(env.EnvID))
		}
	}

	var still []int
	for len(pending) > 0 {
		n := min(len(pending), d.o.MaxRecipients)
		chunk := pending[:n]
		pending = pending[n:]
		if !s.c.Usable() {
			still = append(still, chunk...)
			continue
		}
		msg := &Message{From: env.From, Params: params}
		for _, p := range chunk {
			r := g.rcpt(p)
			rc := Rcpt{Addr: r.Addr}
			if ext.DSN {
				if r.Notify != "" {
					rc.Params = append(rc.Params, "NOTIFY="+r.Notify)
				}
				if typ, val, ok := strings.Cut(r.ORcpt, ";"); ok {
					rc.Params = append(rc.Params, "ORCPT="+typ+";"+smtp.EncodeXtext(val))
				}
			}
			msg.Rcpts = append(msg.Rcpts, rc)
		}
		body, _, err := g.m.open(convert)
		if err != nil {
			for _, p := range chunk {
				g.finish(p, queue.Deferred, localDetail("4.3.0", "reading the queued message: "+err.Error()))
			}
			continue
		}
		msg.Body = body
		resps, err := s.c.Send(ctx, msg)
		body.Close()
		if errors.Is(err, ErrStale) {
			s.stale = true
			return append(append(still, chunk...), pending...)
		}
		if errors.Is(err, ErrBDATUnknown) {
			// It did not take the message: again at once, with DATA.
			d.noChunking.Store(s.key.addr.Addr(), time.Now().Add(noChunkingFor))
			d.log.Warn("server offers CHUNKING but does not know BDAT; sending it DATA for 24 hours", "id", env.ID, "server", s.where(), "err", errText(err))
			for _, p := range chunk {
				g.detail[p] = localDetail("4.5.0", s.where()+": offers CHUNKING but answered BDAT as an unknown command: "+errText(err))
			}
			s.stale = true
			return append(append(still, chunk...), pending...)
		}
		for i, p := range chunk {
			r := resps[i]
			switch {
			case r.Final() && r.Reply.Code >= 200 && r.Reply.Code < 300:
				g.finish(p, queue.Delivered, replyDetail(s.host, s.ip, r.Reply), append([]any{"in_reply_to", r.Command, "tls", s.c.TLS() != nil}, tlsAttrs(s.tls)...)...)
				// Without DSN the next hop drops NOTIFY: a success
				// request ends here (RFC 3461 5.2.2).
				g.out[p].Relayed = !ext.DSN
			case r.Reply.Permanent():
				g.finish(p, queue.Failed, replyDetail(s.host, s.ip, r.Reply), "in_reply_to", r.Command)
			case r.Reply.Transient():
				g.detail[p] = replyDetail(s.host, s.ip, r.Reply)
				still = append(still, p)
			default:
				why := "no reply"
				if err != nil {
					why = errText(err)
				} else if r.Reply.Code != 0 {
					why = "unexpected reply " + ReplyLine(r.Reply)
				}
				g.detail[p] = localDetail("4.4.2", s.where()+": lost connection or no answer during the transaction: "+why)
				still = append(still, p)
			}
		}
	}
	return still
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
