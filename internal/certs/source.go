package certs

import (
	"crypto"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// Source hands out the certificate to serve on each handshake, so that a
// renewed or replaced certificate is served without a restart. Both
// *FileSource and the ACME manager are Sources.
type Source interface {
	GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error)
}

// ServerConfigFrom is ServerConfig for a certificate that can change:
// every handshake asks src for the certificate to serve.
func ServerConfigFrom(src Source) *tls.Config {
	return &tls.Config{GetCertificate: src.GetCertificate, MinVersion: tls.VersionTLS12}
}

// DefaultCheckEvery is how often a FileSource looks at its files at most.
const DefaultCheckEvery = 5 * time.Second

// FileOptions configures a FileSource.
type FileOptions struct {
	// CheckEvery bounds how often a handshake looks at the files' mtime,
	// size and inode; zero means DefaultCheckEvery, a negative value
	// every handshake.
	CheckEvery time.Duration
	Logger     *slog.Logger // nil: no logging
}

// FileSource serves the certificate in a pair of PEM files (as certbot
// and most tools write them) and loads them again when either file
// changes: replaced (new inode, as a renamed file or a switched symlink),
// rewritten (mtime or size). The check costs two stat calls, made at most
// once per CheckEvery, on a handshake. A pair that does not load (a key
// that does not match the certificate, as between two writes of a tool
// that updates one file and then the other) keeps the previous
// certificate in service and is tried again at the next check.
type FileSource struct {
	certFile, keyFile string
	every             time.Duration
	log               *slog.Logger

	mu      sync.Mutex
	cur     *tls.Certificate
	stamp   [2]os.FileInfo // of the pair cur was loaded from, or last failed on
	checked time.Time
}

// NewFileSource loads certFile and keyFile; they must load now.
func NewFileSource(certFile, keyFile string, opts FileOptions) (*FileSource, error) {
	s := &FileSource{certFile: certFile, keyFile: keyFile, every: opts.CheckEvery, log: opts.Logger}
	if s.every == 0 {
		s.every = DefaultCheckEvery
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	st, err := s.stat()
	if err != nil {
		return nil, err
	}
	c, err := load(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	s.cur, s.stamp, s.checked = c, st, time.Now()
	return s, nil
}

// GetCertificate returns the current certificate, loading the files
// again first if they changed since the last look. It fits
// tls.Config.GetCertificate.
func (s *FileSource) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.every < 0 || time.Since(s.checked) >= s.every {
		s.reloadLocked()
	}
	return s.cur, nil
}

// Current returns the certificate in service, without looking at the files.
func (s *FileSource) Current() *tls.Certificate {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur
}

// Reload looks at the files now and loads them if they changed; changed
// says whether a new certificate is in service.
func (s *FileSource) Reload() (changed bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reloadLocked()
}

func (s *FileSource) reloadLocked() (bool, error) {
	s.checked = time.Now()
	st, err := s.stat()
	if err != nil {
		s.log.Warn("TLS certificate files unreadable; still serving the loaded certificate", "err", err)
		return false, err
	}
	if same(st[0], s.stamp[0]) && same(st[1], s.stamp[1]) {
		return false, nil
	}
	c, err := load(s.certFile, s.keyFile)
	if err != nil {
		// Not recorded as seen: the second half of an update is
		// usually a moment away, and the next check tries again.
		s.log.Warn("TLS certificate files changed but do not load; still serving the loaded certificate", "err", err)
		return false, err
	}
	s.cur, s.stamp = c, st
	s.log.Info("TLS certificate reloaded", "cert", s.certFile, "subject", c.Leaf.Subject.String(),
		"not_after", c.Leaf.NotAfter.UTC().Format(time.RFC3339))
	return true, nil
}

func (s *FileSource) stat() ([2]os.FileInfo, error) {
	var st [2]os.FileInfo
	for i, f := range []string{s.certFile, s.keyFile} {
		fi, err := os.Stat(f) // follows symlinks, as certbot's live/ directory needs
		if err != nil {
			return st, err
		}
		st[i] = fi
	}
	return st, nil
}

// same reports whether a and b are the same file, unchanged.
func same(a, b os.FileInfo) bool {
	return a != nil && b != nil && os.SameFile(a, b) && a.ModTime().Equal(b.ModTime()) && a.Size() == b.Size()
}

// load reads a certificate chain and key, and checks that the leaf parses.
func load(certFile, keyFile string) (*tls.Certificate, error) {
	c, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("loading TLS certificate %s and key %s: %w", certFile, keyFile, err)
	}
	if c.Leaf == nil {
		if c.Leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			return nil, fmt.Errorf("TLS certificate %s: %w", certFile, err)
		}
	}
	return &c, nil
}

// LeafOf returns the parsed end-entity certificate of c.
func LeafOf(c *tls.Certificate) (*x509.Certificate, error) {
	if c == nil || len(c.Certificate) == 0 {
		return nil, errors.New("no certificate")
	}
	if c.Leaf != nil {
		return c.Leaf, nil
	}
	return x509.ParseCertificate(c.Certificate[0])
}

// TLSA311 returns the data of a DANE-EE SPKI SHA-256 TLSA record
// (RFC 6698 2.1, RFC 7671 5.1: "3 1 1"): the SHA-256 of the certificate's
// SubjectPublicKeyInfo, in hex. It stays the same across certificates
// with the same key.
func TLSA311(leaf *x509.Certificate) string {
	sum := sha256.Sum256(leaf.RawSubjectPublicKeyInfo)
	return hex.EncodeToString(sum[:])
}

// TLSA311Key is TLSA311 for a public key.
func TLSA311Key(pub crypto.PublicKey) (string, error) {
	spki, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(spki)
	return hex.EncodeToString(sum[:]), nil
}
