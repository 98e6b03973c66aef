// Package submission prepares mail that posthorn's own users send: the missing Date and Message-ID, and DKIM signatures.
package submission

import (
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/posthorn/posthorn/internal/dkim"
	"github.com/posthorn/posthorn/internal/dmarc"
	"github.com/posthorn/posthorn/internal/message"
)

// Options configures a Preparer.
type Options struct {
	Hostname string       // for Message-ID
	Signer   *dkim.Signer // nil: no signing
	Now      func() time.Time
}

// Preparer adds what a submitted message lacks and signs it.
type Preparer struct{ o Options }

// New returns a Preparer.
func New(o Options) *Preparer {
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Preparer{o: o}
}

// maxHeader bounds the header section read.
const maxHeader = 1 << 20

// Prepare reads the message and returns the header fields to add at its
// top: Date and Message-ID when the client left them out (RFC 6409 8.2,
// 8.3), then one DKIM-Signature per key of the From domain (relaxed/
// relaxed, From oversigned: see internal/dkim), computed over the message
// with those additions. data may be called more than once.
func (p *Preparer) Prepare(data func() (io.Reader, error)) (string, error) {
	r, err := data()
	if err != nil {
		return "", err
	}
	hdr, err := message.ReadHeader(r, maxHeader)
	if err != nil {
		return "", err
	}
	var add strings.Builder
	if !hdr.Has("Date") {
		add.WriteString("Date: " + p.o.Now().Format(time.RFC1123Z) + "\r\n")
	}
	if !hdr.Has("Message-ID") {
		add.WriteString("Message-ID: <" + newID() + "@" + p.o.Hostname + ">\r\n")
	}
	if p.o.Signer == nil {
		return add.String(), nil
	}
	domains, err := dmarc.AuthorDomains(hdr.Get("From"))
	if err != nil || len(domains) != 1 || !p.o.Signer.HasDomain(domains[0]) {
		// No From, several authors, or a domain without keys: nothing to
		// sign for (DMARC aligns with the From domain only).
		return add.String(), nil
	}
	r, err = data()
	if err != nil {
		return "", err
	}
	sig, err := p.o.Signer.Sign(domains[0], io.MultiReader(strings.NewReader(add.String()), r))
	if err != nil {
		if errors.Is(err, dkim.ErrNoKey) {
			return add.String(), nil
		}
		return "", fmt.Errorf("dkim signing for %s: %w", domains[0], err)
	}
	return string(sig) + add.String(), nil
}

func newID() string {
	var b [15]byte
	rand.Read(b[:])
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}
