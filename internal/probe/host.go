package probe

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/posthorn/posthorn/internal/smtp"
)

// prober carries one host probe.
type prober struct {
	o          Options
	h          *HostReport
	transcript *[]string
	name       string // host name for SNI and certificate checks; "" for an IP
	addr       string // "ip:port" or "host:port" to dial
	srvname    string // first word of the greeting
	connected  bool   // the last dial got a TCP connection
}

// ProbeHost probes one SMTP server. host is a name or IP, port its port,
// mode how to speak to it. The report is complete as far as the server
// and the deadlines allowed; its Error says where it stopped.
func ProbeHost(ctx context.Context, host string, port int, mode Mode, o Options) *HostReport {
	o.fill()
	ctx, cancel := context.WithTimeout(ctx, o.Total)
	defer cancel()
	return probeHost(ctx, host, "", port, mode, o)
}

// probeHost probes host at address addr ("" means dial host itself).
func probeHost(ctx context.Context, host, addr string, port int, mode Mode, o Options) *HostReport {
	h := &HostReport{
		Target: net.JoinHostPort(host, strconv.Itoa(port)), Host: host, Port: port, Mode: mode,
		EHLO: []string{}, Extensions: []Extension{}, AuthBeforeTLS: []string{}, AuthAfterTLS: []string{},
		Findings: []Finding{}, Transcript: []string{},
		evidence: Evidence{Replies: map[string]string{}},
	}
	p := &prober{o: o, h: h, transcript: &h.Transcript}
	if net.ParseIP(host) == nil {
		p.name = host
	}
	if addr == "" {
		addr = host
	}
	p.addr = net.JoinHostPort(addr, strconv.Itoa(port))
	p.main(ctx)
	if h.Greeting != "" {
		if o.Enumerate {
			p.enumerate(ctx)
		}
		if o.Relay {
			p.relay(ctx)
		}
		if o.TLSVersions && h.TLS != nil && h.TLS.Handshake {
			p.scanVersions(ctx)
		}
	}
	h.Identification = Identify(h.evidence)
	assessHost(h, o)
	return h
}

func (p *prober) tlsConfig() *tls.Config {
	return &tls.Config{
		// The probe looks at whatever certificate is served and judges it
		// itself (verifyChain), so the handshake must not stop at a bad one.
		InsecureSkipVerify: true, //nolint:gosec // checked in verifyChain
		ServerName:         p.name,
		MinVersion:         tls.VersionTLS10,
	}
}

func (p *prober) implicit() *tls.Config {
	if p.h.Mode == ModeSubmissions {
		return p.tlsConfig()
	}
	return nil
}

// main is the first connection: greeting, EHLO, STARTTLS, EHLO again.
func (p *prober) main(ctx context.Context) {
	h := p.h
	start := time.Now()
	c, banner, took, err := p.dial(ctx, p.addr, "", p.implicit())
	h.ConnectMS = took.Milliseconds()
	if c != nil {
		h.Address = hostOf(c.nc.RemoteAddr().String())
	}
	if err != nil {
		h.Error = err.Error()
		if p.connected {
			h.Reachable = true
			if h.Mode == ModeSubmissions && strings.HasPrefix(err.Error(), "TLS handshake") {
				h.TLS = &TLSReport{Implicit: true, Error: err.Error(), Chain: []CertInfo{}}
			}
		}
		return
	}
	defer c.quit()
	h.Reachable = true
	h.BannerMS = time.Since(start).Milliseconds() - h.ConnectMS
	h.Banner = strings.Join(banner.Lines, "\n")
	h.evidence.Banner = wire(banner)
	if fields := strings.Fields(firstLine(banner)); len(fields) > 0 {
		p.srvname = fields[0]
	}
	if tc, ok := c.nc.(*tls.Conn); ok {
		h.TLS = p.describeTLS(tc.ConnectionState(), true, 0)
	}
	if banner.Code != 220 {
		h.Error = fmt.Sprintf("greeting is not 220: %s", banner.Error())
		return
	}
	ext, ok := p.greet(c, true)
	if !ok {
		return
	}
	p.setExtensions(ext)
	if h.Mode == ModeSubmissions {
		h.AuthAfterTLS = authMechs(ext)
		return
	}
	h.AuthBeforeTLS = authMechs(ext)
	if !h.StartTLS {
		return
	}
	r, err := c.cmd("STARTTLS")
	if err != nil || r.Code != 220 {
		h.TLS = &TLSReport{Chain: []CertInfo{}, Error: "STARTTLS refused: " + replyOrErr(r, err)}
		return
	}
	hs := time.Now()
	tc, err := c.starttls(p.tlsConfig())
	if err != nil {
		h.TLS = &TLSReport{Chain: []CertInfo{}, Error: "handshake failed: " + err.Error()}
		return
	}
	h.TLS = p.describeTLS(tc.ConnectionState(), false, time.Since(hs))
	// RFC 3207 4.2: forget everything; EHLO again.
	ext2, ok := p.greet(c, false)
	if ok {
		h.AuthAfterTLS = authMechs(ext2)
	}
}

// greet sends EHLO, falling back to HELO, and returns the EHLO lines.
func (p *prober) greet(c *conn, first bool) ([]string, bool) {
	h := p.h
	r, err := c.cmd("EHLO " + p.o.HeloName)
	if err != nil {
		if first {
			h.Error = "EHLO: " + err.Error()
		}
		return nil, false
	}
	if r.Code == 250 {
		if first {
			h.Greeting = "EHLO"
			h.EHLO = append([]string(nil), r.Lines...)
			h.evidence.EHLO = r.Lines
			if p.srvname == "" {
				if f := strings.Fields(r.Lines[0]); len(f) > 0 {
					p.srvname = f[0]
				}
			}
		}
		return r.Lines, true
	}
	if !first {
		return nil, false
	}
	r2, err := c.cmd("HELO " + p.o.HeloName)
	if err != nil || r2.Code != 250 {
		h.Error = "neither EHLO nor HELO accepted: " + replyOrErr(r2, err)
		return nil, false
	}
	h.Greeting = "HELO"
	h.EHLO = append([]string(nil), r2.Lines...)
	h.evidence.EHLO = r2.Lines
	return nil, true
}

func (p *prober) setExtensions(lines []string) {
	h := p.h
	if len(lines) < 2 {
		return
	}
	for _, l := range lines[1:] {
		kw, params, _ := strings.Cut(strings.TrimSpace(l), " ")
		kw = strings.ToUpper(kw)
		h.Extensions = append(h.Extensions, Extension{Keyword: kw, Params: params})
		switch kw {
		case "SIZE":
			var n int64
			if params != "" {
				v, err := strconv.ParseInt(strings.Fields(params)[0], 10, 64)
				if err == nil {
					n = v
				}
			}
			h.SizeLimit = &n
		case "PIPELINING":
			h.Pipelining = true
		case "STARTTLS":
			h.StartTLS = true
		}
	}
}

// authMechs returns the SASL mechanisms an EHLO reply offers (AUTH and
// the old "AUTH=" form).
func authMechs(lines []string) []string {
	seen := map[string]bool{}
	out := []string{}
	if len(lines) < 2 {
		return out
	}
	for _, l := range lines[1:] {
		f := strings.Fields(strings.ToUpper(l))
		if len(f) == 0 {
			continue
		}
		var mechs []string
		switch {
		case f[0] == "AUTH":
			mechs = f[1:]
		case strings.HasPrefix(f[0], "AUTH="):
			mechs = append([]string{strings.TrimPrefix(f[0], "AUTH=")}, f[1:]...)
		}
		for _, m := range mechs {
			if m != "" && !seen[m] {
				seen[m] = true
				out = append(out, m)
			}
		}
	}
	return out
}

// enumerate is the second connection: HELP, an unknown command, VRFY and
// EXPN, for identification and user enumeration.
func (p *prober) enumerate(ctx context.Context) {
	h := p.h
	c, _, _, err := p.dial(ctx, p.addr, "enum", p.implicit())
	if err != nil {
		return
	}
	defer c.quit()
	if _, ok := p.greet(c, false); !ok {
		return
	}
	step := func(key, line string) Exchange {
		r, err := c.cmd(line)
		if err != nil {
			return Exchange{Command: line, Reply: err.Error()}
		}
		h.evidence.Replies[key] = wire(r)
		return Exchange{Command: line, Code: r.Code, Reply: wire(r)}
	}
	step("help", "HELP")
	step("unknown", "XPOSTHORNPROBE")
	if ctx.Err() != nil {
		return
	}
	unknownName := "nosuchuser-" + strconv.FormatInt(p.o.Now().UnixNano()%1e6, 36)
	known := step("vrfy", "VRFY postmaster")
	unknown := step("vrfy-unknown", "VRFY "+unknownName)
	if known.Code == 501 && unknown.Code == 501 && p.srvname != "" {
		// Some servers (Exim) want a domain.
		known = step("vrfy", "VRFY postmaster@"+p.srvname)
		unknown = step("vrfy-unknown", "VRFY "+unknownName+"@"+p.srvname)
	}
	h.VRFY = judgeVRFY(known, unknown)
	e := step("expn", "EXPN postmaster")
	h.EXPN = &e
}

// judgeVRFY decides whether VRFY lets a client test names: the known
// name is confirmed (250/251, or 252 that names it) while the made-up
// one is refused.
func judgeVRFY(known, unknown Exchange) *VRFYReport {
	v := &VRFYReport{Known: known, Unknown: unknown}
	switch {
	case known.Code == 0 || unknown.Code == 0:
		v.Verdict = "no answer"
	case known.Code >= 500 && unknown.Code >= 500 && known.Code == unknown.Code:
		v.Verdict = "disabled or refused"
	case known.Code/100 == 2 && unknown.Code/100 != 2:
		v.Enumerates = true
		v.Verdict = "enumerates users: an existing name gets " + strconv.Itoa(known.Code) + ", a made-up one " + strconv.Itoa(unknown.Code)
	case known.Code == unknown.Code:
		v.Verdict = "same answer for any name (" + strconv.Itoa(known.Code) + ")"
	default:
		v.Verdict = "answers differ (" + strconv.Itoa(known.Code) + " vs " + strconv.Itoa(unknown.Code) + ") but do not confirm the name"
	}
	return v
}

func firstLine(r smtp.Reply) string {
	if len(r.Lines) == 0 {
		return ""
	}
	return r.Lines[0]
}

func replyOrErr(r smtp.Reply, err error) string {
	if err != nil {
		return err.Error()
	}
	return r.Error()
}

func hostOf(addr string) string {
	h, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return h
}
