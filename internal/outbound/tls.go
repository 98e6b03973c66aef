package outbound

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
)

// TLSLevel is how much TLS a delivery insists on (Postfix smtp_tls_security_level).
type TLSLevel int

// TLS levels. The zero value is TLSMay.
const (
	// TLSMay: STARTTLS when offered, without checking the certificate; a
	// failed handshake retries the same host in clear text.
	TLSMay TLSLevel = iota
	// TLSNone: never STARTTLS.
	TLSNone
	// TLSEncrypt: STARTTLS is required; the certificate is not checked.
	TLSEncrypt
	// TLSVerify: STARTTLS is required and the certificate must verify:
	// PKIX against the MX host name (or TLSPolicy.Names), or
	// TLSPolicy.VerifyPeer when that is set.
	TLSVerify
)

func (l TLSLevel) String() string {
	switch l {
	case TLSMay:
		return "may"
	case TLSNone:
		return "none"
	case TLSEncrypt:
		return "encrypt"
	case TLSVerify:
		return "verify"
	}
	return fmt.Sprintf("TLSLevel(%d)", int(l))
}

// TLSPolicy is how TLS is used toward one destination domain. It is the
// hook for MTA-STS (RFC 8461: TLSVerify with AllowHost from the policy's
// mx patterns) and DANE (RFC 7672: TLSVerify with VerifyPeer checking the
// TLSA records of each host).
type TLSPolicy struct {
	Level TLSLevel
	// Names the certificate may match at TLSVerify instead of the MX host
	// name (with PKIX). Empty: the host name.
	Names []string
	// AllowHost, when set, drops MX hosts it returns false for (MTA-STS
	// "enforce" mode); a domain left with none is deferred.
	AllowHost func(host string) bool
	// VerifyPeer, when set at TLSVerify, replaces PKIX verification: it
	// runs during the handshake with the MX host name and the connection
	// state, and an error fails the handshake.
	VerifyPeer func(host string, cs tls.ConnectionState) error
	// Source names where the policy came from, for logs and details
	// ("mta-sts", "dane", "smarthost", "default").
	Source string
	// ForHost, when set, gives the policy for one MX host, replacing this
	// one for the sessions with it (DANE is decided per host: RFC 7672
	// 2.2). An error skips the host with a temporary failure.
	ForHost func(ctx context.Context, host string) (TLSPolicy, error)
}

// TLSPolicyFunc decides the TLS policy for a destination domain given its
// MX hosts. An error defers the domain's recipients.
type TLSPolicyFunc func(ctx context.Context, domain string, mxHosts []string) (TLSPolicy, error)

// tlsConfig builds the client configuration for host under pol.
func tlsConfig(base *tls.Config, host string, pol TLSPolicy) *tls.Config {
	var cfg *tls.Config
	if base != nil {
		cfg = base.Clone()
	} else {
		cfg = &tls.Config{}
	}
	cfg.ServerName = host
	if pol.Level != TLSVerify {
		// Opportunistic and "encrypt": any certificate will do (RFC 7435);
		// whether it would have verified is recorded, not enforced.
		cfg.InsecureSkipVerify = true
		return cfg
	}
	switch {
	case pol.VerifyPeer != nil:
		cfg.InsecureSkipVerify = true
		cfg.VerifyConnection = func(cs tls.ConnectionState) error { return pol.VerifyPeer(host, cs) }
	case len(pol.Names) > 0:
		roots := cfg.RootCAs
		cfg.InsecureSkipVerify = true
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			for _, n := range pol.Names {
				if verifyPKIX(cs, roots, n) == nil {
					return nil
				}
			}
			return fmt.Errorf("certificate matches none of %q", pol.Names)
		}
	}
	return cfg
}

// verifyPKIX checks the peer's chain against roots (nil: the system
// roots) and name.
func verifyPKIX(cs tls.ConnectionState, roots *x509.CertPool, name string) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("no certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{DNSName: name, Roots: roots, Intermediates: inter})
	return err
}
