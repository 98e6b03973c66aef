package outbound

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
)

// TLSOutcome is how TLS went in one session with a server: what TLS-RPT
// (RFC 8460) counts and what every delivery attempt logs.
type TLSOutcome struct {
	Domain string // the destination domain; "" for the smarthost
	Host   string // the MX host name
	IP     string
	Policy TLSPolicy // the policy the session ran under
	// Offered: the server's EHLO reply listed STARTTLS.
	Offered bool
	// State is the connection's TLS state; nil for a session in clear
	// text (or one whose handshake failed).
	State *tls.ConnectionState
	// Err is the STARTTLS, handshake or verification failure, if any.
	// A session that goes on in clear text at TLSMay has Err nil.
	Err error
}

// Mode names the TLS a session had, for logs and records: "none" (clear
// text), "opportunistic" (TLS without authentication), or the source of
// an authenticated policy ("mta-sts", "dane", "verify" for a configured
// override or the smarthost).
func (o TLSOutcome) Mode() string {
	if o.State == nil {
		return "none"
	}
	if o.Policy.Level != TLSVerify {
		return "opportunistic"
	}
	switch o.Policy.Source {
	case "mta-sts", "dane":
		return o.Policy.Source
	}
	return "verify"
}

// TLSOutcomeFunc is told the outcome of every session (Options.OnTLS).
type TLSOutcomeFunc func(ctx context.Context, o TLSOutcome)

// requireTLSPolicy says whether pol lets a REQUIRETLS message through
// (RFC 8689 4.2.1): TLS verified by MTA-STS or DANE (or a smarthost
// whose certificate is verified).
func requireTLSPolicy(pol TLSPolicy) bool {
	if pol.Level != TLSVerify {
		return false
	}
	switch pol.Source {
	case "mta-sts", "dane", "smarthost":
		return true
	}
	return false
}

// ErrNoStartTLS is TLSOutcome.Err when the server did not offer STARTTLS
// and the policy required it.
var ErrNoStartTLS = errors.New("STARTTLS not offered")

// report logs a session's TLS and tells Options.OnTLS. A reused
// connection's TLS was logged when it was made: logged again only at debug
// level (every remote delivery line says its TLS too).
func (g *group) report(o TLSOutcome, reused bool) {
	d := g.d
	level := slog.LevelInfo
	if reused {
		level = slog.LevelDebug
	}
	args := []any{"id", g.m.env.ID, "server", o.Host + "[" + o.IP + "]", "policy", policyName(o.Policy)}
	args = append(args, tlsAttrs(o)...)
	switch {
	case o.Err != nil:
		args = append(args, "err", errText(o.Err))
		d.log.Warn("session TLS failed", args...)
	case o.State == nil && o.Policy.Level != TLSNone:
		args = append(args, "starttls_offered", o.Offered)
		d.log.Log(g.ctx(), level, "session TLS: sending in clear text", args...)
	default:
		d.log.Log(g.ctx(), level, "session TLS", args...)
	}
	if d.o.OnTLS != nil {
		d.o.OnTLS(g.ctx(), o)
	}
}

func policyName(p TLSPolicy) string {
	src := p.Source
	if src == "" {
		src = "default"
	}
	return src + "/" + p.Level.String()
}

// tlsAttrs are the log attributes of a session's TLS.
func tlsAttrs(o TLSOutcome) []any {
	a := []any{"tls_mode", o.Mode()}
	if o.State != nil {
		a = append(a, "tls_version", tls.VersionName(o.State.Version), "tls_cipher", tls.CipherSuiteName(o.State.CipherSuite))
	}
	return a
}
