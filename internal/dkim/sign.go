package dkim

import (
	"bufio"
	"bytes"
	"crypto"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	msgauth "github.com/emersion/go-msgauth/dkim"
)

// DefaultHeaderFields are signed when present (RFC 6376 5.4.1), each as
// often as it occurs; From is listed once more than it occurs so that a
// From added later breaks the signature (oversigning).
var DefaultHeaderFields = []string{
	"From", "Reply-To", "Subject", "Date", "To", "Cc", "Message-ID",
	"In-Reply-To", "References", "MIME-Version", "Content-Type",
	"Content-Transfer-Encoding", "Content-Disposition", "Content-ID",
	"Content-Description", "Sender", "Resent-Date", "Resent-From",
	"Resent-To", "Resent-Cc", "Resent-Message-ID",
	"List-Id", "List-Help", "List-Unsubscribe", "List-Unsubscribe-Post",
	"List-Subscribe", "List-Post", "List-Owner", "List-Archive",
}

// SigningKey is one key of a signing domain.
type SigningKey struct {
	Domain   string // d=
	Selector string // s=
	Key      crypto.Signer
}

// LoadSigningKey reads a key file in any form ParsePrivateKey accepts.
func LoadSigningKey(domain, selector, path string) (SigningKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return SigningKey{}, fmt.Errorf("dkim: key for %s selector %s: %w", domain, selector, err)
	}
	k, err := ParsePrivateKey(data)
	if err != nil {
		return SigningKey{}, fmt.Errorf("dkim: key for %s selector %s in %s: %w", domain, selector, path, err)
	}
	return SigningKey{Domain: domain, Selector: selector, Key: k}, nil
}

// ErrNoKey is returned by Signer.Sign for a domain without keys.
var ErrNoKey = errors.New("dkim: no signing key for domain")

// Signer signs messages for the domains it has keys for, relaxed/relaxed
// and sha256, one signature per key: a domain with an Ed25519 and an RSA key
// gets both (RFC 8463 dual signing). It is safe for concurrent use.
type Signer struct {
	keys   map[string][]SigningKey
	fields []string
}

// NewSigner checks the keys and builds a Signer. HeaderFields nil means
// DefaultHeaderFields; From is always signed.
func NewSigner(keys []SigningKey, headerFields []string) (*Signer, error) {
	if headerFields == nil {
		headerFields = DefaultHeaderFields
	}
	s := &Signer{keys: make(map[string][]SigningKey), fields: headerFields}
	for _, k := range keys {
		d := strings.ToLower(strings.TrimSuffix(k.Domain, "."))
		if !validDomain(d) || !validDomain(k.Selector) {
			return nil, fmt.Errorf("dkim: invalid domain %q or selector %q", k.Domain, k.Selector)
		}
		if k.Key == nil || KeyAlgorithm(k.Key) == "" {
			return nil, fmt.Errorf("dkim: key for %s selector %s: unsupported key", d, k.Selector)
		}
		if _, err := checkSigner(k.Key); err != nil {
			return nil, err
		}
		k.Domain = d
		s.keys[d] = append(s.keys[d], k)
	}
	return s, nil
}

// HasDomain reports whether the Signer has a key for domain.
func (s *Signer) HasDomain(domain string) bool {
	return len(s.keys[strings.ToLower(strings.TrimSuffix(domain, "."))]) > 0
}

// Sign reads the whole message and returns the DKIM-Signature header
// fields to prepend to it, each folded and ending in CRLF, in the order of
// the domain's keys. The message must have a From field.
func (s *Signer) Sign(domain string, msg io.Reader) ([]byte, error) {
	keys := s.keys[strings.ToLower(strings.TrimSuffix(domain, "."))]
	if len(keys) == 0 {
		return nil, fmt.Errorf("%w %s", ErrNoKey, domain)
	}
	br := bufio.NewReaderSize(msg, 32*1024)
	fields, err := readHeader(br)
	if err != nil {
		return nil, fmt.Errorf("dkim: reading header: %w", err)
	}
	h := headerList(fields, s.fields)
	if h == nil {
		return nil, errors.New("dkim: message has no From field")
	}

	var header bytes.Buffer
	for _, f := range fields {
		header.WriteString(f.raw)
	}
	header.WriteString("\r\n")

	signers := make([]*msgauth.Signer, len(keys))
	writers := make([]io.Writer, len(keys))
	for i, k := range keys {
		signers[i], err = msgauth.NewSigner(&msgauth.SignOptions{
			Domain:                 k.Domain,
			Selector:               k.Selector,
			Signer:                 k.Key,
			Hash:                   crypto.SHA256,
			HeaderCanonicalization: msgauth.CanonicalizationRelaxed,
			BodyCanonicalization:   msgauth.CanonicalizationRelaxed,
			HeaderKeys:             h,
		})
		if err != nil {
			for _, done := range signers[:i] {
				done.Close()
			}
			return nil, fmt.Errorf("dkim: %s selector %s: %w", k.Domain, k.Selector, err)
		}
		writers[i] = signers[i]
	}
	_, err = io.Copy(io.MultiWriter(writers...), io.MultiReader(&header, br))
	var out bytes.Buffer
	for i, sg := range signers {
		cerr := sg.Close()
		if err == nil && cerr != nil {
			err = fmt.Errorf("dkim: %s selector %s: %w", keys[i].Domain, keys[i].Selector, cerr)
		}
		if err == nil {
			out.WriteString(sg.Signature())
		}
	}
	if err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// headerList builds h=: every wanted field as often as it is present, plus
// one more From. Nil when the message has no From.
func headerList(fields []field, wanted []string) []string {
	count := make(map[string]int)
	for _, f := range fields {
		count[strings.ToLower(f.name)]++
	}
	if count["from"] == 0 {
		return nil
	}
	var h []string
	seen := make(map[string]bool)
	for _, w := range append([]string{"From"}, wanted...) {
		lw := strings.ToLower(w)
		if seen[lw] {
			continue
		}
		seen[lw] = true
		n := count[lw]
		if lw == "from" {
			n++
		}
		for i := 0; i < n; i++ {
			h = append(h, w)
		}
	}
	return h
}
