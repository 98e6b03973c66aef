package probe

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"math"
	"time"
)

// describeTLS fills a TLSReport from a finished handshake and judges the
// chain.
func (p *prober) describeTLS(st tls.ConnectionState, implicit bool, took time.Duration) *TLSReport {
	t := &TLSReport{
		Implicit: implicit, Handshake: true,
		Version: tls.VersionName(st.Version), Cipher: tls.CipherSuiteName(st.CipherSuite),
		HandshakeMS: took.Milliseconds(), Chain: []CertInfo{}, NameChecked: p.name,
	}
	now := p.o.Now()
	for _, cert := range st.PeerCertificates {
		t.Chain = append(t.Chain, certInfo(cert, now))
	}
	p.h.peerCerts = st.PeerCertificates
	if len(st.PeerCertificates) == 0 {
		t.VerifyError = "no certificate served"
		return t
	}
	leaf := st.PeerCertificates[0]
	inter := x509.NewCertPool()
	for _, c := range st.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, err := leaf.Verify(x509.VerifyOptions{Roots: p.o.RootCAs, Intermediates: inter, CurrentTime: now})
	if err != nil {
		t.VerifyError = err.Error()
	} else {
		t.Trusted = true
	}
	if p.name != "" {
		t.NameMatch = leaf.VerifyHostname(p.name) == nil
	} else if ip := p.h.Address; ip != "" {
		t.NameChecked = ip
		t.NameMatch = leaf.VerifyHostname(ip) == nil
	}
	return t
}

func certInfo(c *x509.Certificate, now time.Time) CertInfo {
	sum := sha256.Sum256(c.Raw)
	ci := CertInfo{
		Subject: c.Subject.String(), Issuer: c.Issuer.String(), SANs: []string{},
		NotBefore: c.NotBefore.UTC(), NotAfter: c.NotAfter.UTC(),
		DaysLeft: int(math.Floor(c.NotAfter.Sub(now).Hours() / 24)),
		SHA256:   hex.EncodeToString(sum[:]),
		KeyType:  keyType(c),
	}
	ci.SANs = append(ci.SANs, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		ci.SANs = append(ci.SANs, ip.String())
	}
	if bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature) == nil {
		ci.SelfSigned = true
	}
	return ci
}

func keyType(c *x509.Certificate) string {
	switch k := c.PublicKey.(type) {
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA %d", k.N.BitLen())
	case *ecdsa.PublicKey:
		return "ECDSA " + k.Curve.Params().Name
	case ed25519.PublicKey:
		return "Ed25519"
	}
	return c.PublicKeyAlgorithm.String()
}

// allCipherSuites offers every suite Go has, the weak ones too: a version
// scan wants to know what the server accepts, not what is wise.
func allCipherSuites() []uint16 {
	var ids []uint16
	for _, s := range tls.CipherSuites() {
		ids = append(ids, s.ID)
	}
	for _, s := range tls.InsecureCipherSuites() {
		ids = append(ids, s.ID)
	}
	return ids
}

var scanVersionsList = []uint16{tls.VersionTLS10, tls.VersionTLS11, tls.VersionTLS12, tls.VersionTLS13}

// scanVersions tries each TLS version alone, one connection each.
func (p *prober) scanVersions(ctx context.Context) {
	for _, v := range scanVersionsList {
		if ctx.Err() != nil {
			return
		}
		res := TLSVersion{Version: tls.VersionName(v)}
		cfg := p.tlsConfig()
		cfg.MinVersion, cfg.MaxVersion = v, v
		cfg.CipherSuites = allCipherSuites()
		label := "tls-" + res.Version
		var (
			c   *conn
			err error
		)
		if p.h.Mode == ModeSubmissions {
			c, _, _, err = p.dial(ctx, p.addr, label, cfg)
			if err == nil {
				res.Accepted = true
				res.Cipher = tls.CipherSuiteName(c.nc.(*tls.Conn).ConnectionState().CipherSuite)
				c.quit()
			}
		} else {
			c, _, _, err = p.dial(ctx, p.addr, label, nil)
			if err == nil {
				err = p.starttlsOnly(c, cfg, &res)
				if res.Accepted {
					c.quit()
				} else {
					c.close()
				}
			}
		}
		if err != nil {
			res.Error = err.Error()
		}
		p.h.TLS.Versions = append(p.h.TLS.Versions, res)
	}
}

// starttlsOnly does EHLO, STARTTLS and a handshake, and notes the outcome.
func (p *prober) starttlsOnly(c *conn, cfg *tls.Config, res *TLSVersion) error {
	r, err := c.cmd("EHLO " + p.o.HeloName)
	if err != nil {
		return err
	}
	if r.Code != 250 {
		return fmt.Errorf("EHLO: %s", r.Error())
	}
	r, err = c.cmd("STARTTLS")
	if err != nil {
		return err
	}
	if r.Code != 220 {
		return fmt.Errorf("STARTTLS: %s", r.Error())
	}
	tc, err := c.starttls(cfg)
	if err != nil {
		return err
	}
	res.Accepted = true
	res.Cipher = tls.CipherSuiteName(tc.ConnectionState().CipherSuite)
	return nil
}
