// Package dane checks an SMTP server's certificate chain against its TLSA records (RFC 6698, RFC 7671, RFC 7672).
//
// It is a protocol library: it neither looks up nor logs. Deciding
// whether the records may be used at all (the DNSSEC status of the MX,
// address and TLSA answers, RFC 7672 2.2) is the caller's job; Verify
// only matches a chain against records that were authenticated.
package dane

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/posthorn/posthorn/internal/dns"
)

// Certificate usages (RFC 6698 2.1.1, names from RFC 7218).
const (
	PKIXTA = 0
	PKIXEE = 1
	DANETA = 2
	DANEEE = 3
)

// Selectors (RFC 6698 2.1.2).
const (
	SelectorCert = 0
	SelectorSPKI = 1
)

// Matching types (RFC 6698 2.1.3).
const (
	MatchFull   = 0
	MatchSHA256 = 1
	MatchSHA512 = 2
)

// Errors of Verify; callers test with errors.Is.
var (
	// ErrNoUsable: none of the records can be used for SMTP. RFC 7672
	// 2.2: TLS is still mandatory, but the peer is not authenticated.
	ErrNoUsable = errors.New("dane: no usable TLSA records")
	// ErrNoMatch: no usable record matches the chain (RFC 8460
	// "validation-failure" / OpenSSL DANE_NO_MATCH).
	ErrNoMatch = errors.New("dane: no TLSA record matches the certificate chain")
	// ErrName: a DANE-TA(2) record matched, but the leaf certificate is
	// not valid for any of the reference names (RFC 7672 3.2.2).
	ErrName = errors.New("dane: certificate does not match the server name")
	// ErrChain: a DANE-TA(2) record matched, but the chain from the leaf
	// to it does not verify (signature, dates, constraints).
	ErrChain = errors.New("dane: certificate chain does not verify to the TLSA trust anchor")
)

// Usable returns the records an SMTP client may use (RFC 7672 3.1.3):
// DANE-TA(2) and DANE-EE(3) with a known selector and matching type and
// data of the right length. PKIX-TA(0) and PKIX-EE(1) are unusable for
// SMTP.
func Usable(recs []dns.TLSA) []dns.TLSA {
	var out []dns.TLSA
	for _, r := range recs {
		if r.Usage != DANETA && r.Usage != DANEEE {
			continue
		}
		if r.Selector != SelectorCert && r.Selector != SelectorSPKI {
			continue
		}
		switch {
		case r.MatchingType == MatchFull && len(r.CertData) > 0,
			r.MatchingType == MatchSHA256 && len(r.CertData) == sha256.Size,
			r.MatchingType == MatchSHA512 && len(r.CertData) == sha512.Size:
			out = append(out, r)
		}
	}
	return out
}

// Match says which record authenticated a chain.
type Match struct {
	Record dns.TLSA
	// Depth is the position in the chain of the certificate that
	// matched (0: the leaf); -1 for a DANE-TA(2) Full(0) trust anchor
	// that came from DNS rather than from the chain.
	Depth int
}

// Options tune Verify.
type Options struct {
	// Names are the reference identifiers a DANE-TA(2) chain's leaf must
	// match (RFC 7672 3.2.2: the TLSA base domain, i.e. the MX host name
	// after CNAME expansion, and the MX host name itself). DANE-EE(3)
	// ignores names (RFC 7672 3.1.1).
	Names []string
	// Now is the time certificates of a DANE-TA(2) chain are checked
	// against; zero means time.Now. DANE-EE(3) ignores validity dates.
	Now time.Time
}

// Verify checks chain, as the server presented it (leaf first), against
// recs. Only usable records count (see Usable); with none, ErrNoUsable.
// A DANE-EE(3) match is enough on its own; a DANE-TA(2) match also needs
// the leaf to chain to the matched certificate or key and to be valid for
// one of opts.Names.
//
// Digest algorithm agility (RFC 7671 9): for each usage and selector,
// only the strongest digest present is used; Full(0) records always are.
func Verify(chain []*x509.Certificate, recs []dns.TLSA, opts Options) (Match, error) {
	recs = agile(Usable(recs))
	if len(recs) == 0 {
		return Match{Depth: -1}, ErrNoUsable
	}
	if len(chain) == 0 {
		return Match{Depth: -1}, fmt.Errorf("%w: the server sent no certificate", ErrNoMatch)
	}
	// DANE-EE(3) first: it needs nothing but the leaf.
	for _, r := range recs {
		if r.Usage == DANEEE && matches(r, chain[0]) {
			return Match{Record: r, Depth: 0}, nil
		}
	}
	var taErr error
	for _, r := range recs {
		if r.Usage != DANETA {
			continue
		}
		for depth, c := range chain {
			if !matches(r, c) {
				continue
			}
			err := verifyTo(chain, depth, c, opts)
			if err == nil {
				return Match{Record: r, Depth: depth}, nil
			}
			taErr = keep(taErr, err)
		}
		// RFC 7671 5.2.2: a Full(0) trust anchor may come from DNS
		// alone, when the server leaves it out of its chain.
		if r.MatchingType == MatchFull {
			if err := verifyDNSAnchor(chain, r, opts); err == nil {
				return Match{Record: r, Depth: -1}, nil
			} else if !errors.Is(err, ErrNoMatch) {
				taErr = keep(taErr, err)
			}
		}
	}
	if taErr != nil {
		return Match{Depth: -1}, taErr
	}
	return Match{Depth: -1}, ErrNoMatch
}

// keep prefers a name error to a chain error: it says more.
func keep(old, err error) error {
	if old == nil || errors.Is(err, ErrName) {
		return err
	}
	return old
}

// agile drops, for each usage and selector, the digest records weaker
// than the strongest digest present.
func agile(recs []dns.TLSA) []dns.TLSA {
	best := map[[2]uint8]uint8{}
	for _, r := range recs {
		k := [2]uint8{r.Usage, r.Selector}
		if r.MatchingType != MatchFull && r.MatchingType > best[k] {
			best[k] = r.MatchingType
		}
	}
	var out []dns.TLSA
	for _, r := range recs {
		if r.MatchingType == MatchFull || r.MatchingType == best[[2]uint8{r.Usage, r.Selector}] {
			out = append(out, r)
		}
	}
	return out
}

// Data returns what a record with selector and matching type holds for
// c: the certificate or its SubjectPublicKeyInfo, whole or hashed.
func Data(c *x509.Certificate, selector, matchingType uint8) []byte {
	var b []byte
	switch selector {
	case SelectorCert:
		b = c.Raw
	case SelectorSPKI:
		b = c.RawSubjectPublicKeyInfo
	default:
		return nil
	}
	switch matchingType {
	case MatchFull:
		return b
	case MatchSHA256:
		h := sha256.Sum256(b)
		return h[:]
	case MatchSHA512:
		h := sha512.Sum512(b)
		return h[:]
	}
	return nil
}

func matches(r dns.TLSA, c *x509.Certificate) bool {
	d := Data(c, r.Selector, r.MatchingType)
	return d != nil && bytes.Equal(d, r.CertData)
}

// verifyTo checks that the leaf chains to anchor, found at depth in the
// chain, and is valid for one of the names.
func verifyTo(chain []*x509.Certificate, depth int, anchor *x509.Certificate, opts Options) error {
	roots := x509.NewCertPool()
	roots.AddCert(anchor)
	inter := x509.NewCertPool()
	for i := 1; i < depth; i++ {
		inter.AddCert(chain[i])
	}
	return verifyLeaf(chain[0], roots, inter, opts)
}

func verifyLeaf(leaf *x509.Certificate, roots, inter *x509.CertPool, opts Options) error {
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	vo := x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}
	if _, err := leaf.Verify(vo); err != nil {
		return fmt.Errorf("%w: %v", ErrChain, err)
	}
	if len(opts.Names) == 0 {
		return nil
	}
	for _, n := range opts.Names {
		if leaf.VerifyHostname(n) == nil {
			return nil
		}
	}
	return fmt.Errorf("%w: the certificate is for %q, not for %q", ErrName, certNames(leaf), opts.Names)
}

func certNames(c *x509.Certificate) []string {
	if len(c.DNSNames) > 0 {
		return c.DNSNames
	}
	return []string{c.Subject.CommonName}
}

// verifyDNSAnchor handles a DANE-TA(2) Full(0) record whose trust anchor
// is not in the chain: a whole certificate (selector 0) becomes the root;
// a bare public key (selector 1) must have signed some certificate of
// the chain, which then serves as the root.
func verifyDNSAnchor(chain []*x509.Certificate, r dns.TLSA, opts Options) error {
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	switch r.Selector {
	case SelectorCert:
		ta, err := x509.ParseCertificate(r.CertData)
		if err != nil {
			return ErrNoMatch
		}
		roots := x509.NewCertPool()
		roots.AddCert(ta)
		err = verifyLeaf(chain[0], roots, inter, opts)
		if errors.Is(err, ErrChain) {
			return ErrNoMatch
		}
		return err
	case SelectorSPKI:
		pub, err := x509.ParsePKIXPublicKey(r.CertData)
		if err != nil {
			return ErrNoMatch
		}
		key := &x509.Certificate{PublicKey: pub}
		for depth, c := range chain {
			if key.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature) != nil {
				continue
			}
			// c is vouched for by the key: it is the anchor.
			return verifyTo(chain, depth, c, opts)
		}
	}
	return ErrNoMatch
}
