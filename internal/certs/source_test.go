package certs

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// serveTLS runs a TLS listener on loopback that completes handshakes with
// cfg and closes; it returns the address.
func serveTLS(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				c.SetDeadline(time.Now().Add(10 * time.Second))
				c.(*tls.Conn).Handshake()
				c.Close()
			}()
		}
	}()
	return ln.Addr().String()
}

// servedCert makes a new TLS connection and returns the certificate the server presents.
func servedCert(t *testing.T, addr string) *x509.Certificate {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr,
		&tls.Config{InsecureSkipVerify: true, ServerName: "mx.example.test"})
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0]
}

func writePair(t *testing.T, dir, tag string, names ...string) (certFile, keyFile string, leaf *x509.Certificate) {
	t.Helper()
	c, k, err := SelfSigned(names...)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, tag+"-cert.pem"), filepath.Join(dir, tag+"-key.pem")
	if err := os.WriteFile(certFile, c, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, k, 0o600); err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(c)
	leaf, err = x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, leaf
}

func TestFileSourceServesReplacedFilesWithoutRestart(t *testing.T) {
	dir := t.TempDir()
	live := filepath.Join(dir, "live")
	os.Mkdir(live, 0o700)
	certFile, keyFile := filepath.Join(live, "fullchain.pem"), filepath.Join(live, "privkey.pem")
	c1, k1, leaf1 := writePair(t, dir, "one", "mx.example.test")
	c2, k2, leaf2 := writePair(t, dir, "two", "mx.example.test")
	c3, k3, leaf3 := writePair(t, dir, "three", "mx.example.test")
	// certbot's way: live/ holds symlinks that are switched to new files.
	os.Symlink(c1, certFile)
	os.Symlink(k1, keyFile)

	src, err := NewFileSource(certFile, keyFile, FileOptions{CheckEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	addr := serveTLS(t, ServerConfigFrom(src))
	if got := servedCert(t, addr); !got.Equal(leaf1) {
		t.Fatalf("served %v, want the first certificate", got.SerialNumber)
	}

	// Symlinks switched by rename (a new inode behind the same name).
	for _, p := range [][2]string{{c2, certFile}, {k2, keyFile}} {
		tmp := p[1] + ".new"
		os.Symlink(p[0], tmp)
		if err := os.Rename(tmp, p[1]); err != nil {
			t.Fatal(err)
		}
	}
	if got := servedCert(t, addr); !got.Equal(leaf2) {
		t.Fatalf("after switching the symlinks: served %v, want the second certificate %v", got.SerialNumber, leaf2.SerialNumber)
	}

	// Files overwritten in place, cert first: between the two writes the
	// pair does not match, and the second certificate stays in service.
	os.Remove(certFile)
	os.Remove(keyFile)
	cp, _ := os.ReadFile(c2)
	kp, _ := os.ReadFile(k2)
	os.WriteFile(certFile, cp, 0o644)
	os.WriteFile(keyFile, kp, 0o600)
	if got := servedCert(t, addr); !got.Equal(leaf2) {
		t.Fatal("copying the same pair changed the certificate")
	}
	cp, _ = os.ReadFile(c3)
	kp, _ = os.ReadFile(k3)
	if err := os.WriteFile(certFile, cp, 0o644); err != nil {
		t.Fatal(err)
	}
	if got := servedCert(t, addr); !got.Equal(leaf2) {
		t.Fatalf("half-updated pair: served %v, want the second certificate still", got.SerialNumber)
	}
	if err := os.WriteFile(keyFile, kp, 0o600); err != nil {
		t.Fatal(err)
	}
	if got := servedCert(t, addr); !got.Equal(leaf3) {
		t.Fatalf("after rewriting both files: served %v, want the third certificate", got.SerialNumber)
	}
}

func TestFileSourceChecksAtMostEveryInterval(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, leaf1 := writePair(t, dir, "a", "mx.example.test")
	src, err := NewFileSource(certFile, keyFile, FileOptions{CheckEvery: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	c2, k2, leaf2 := writePair(t, dir, "b", "mx.example.test")
	os.Rename(c2, certFile)
	os.Rename(k2, keyFile)
	got, _ := src.GetCertificate(nil)
	if !got.Leaf.Equal(leaf1) {
		t.Fatal("looked at the files before the interval was over")
	}
	changed, err := src.Reload()
	if err != nil || !changed {
		t.Fatalf("Reload = %v, %v; want true, nil", changed, err)
	}
	if got, _ := src.GetCertificate(nil); !got.Leaf.Equal(leaf2) {
		t.Fatal("Reload did not put the new certificate in service")
	}
}

func TestNewFileSourceRefusesMismatchedPair(t *testing.T) {
	dir := t.TempDir()
	c1, _, _ := writePair(t, dir, "a", "mx.example.test")
	_, k2, _ := writePair(t, dir, "b", "mx.example.test")
	if _, err := NewFileSource(c1, k2, FileOptions{}); err == nil {
		t.Fatal("a certificate with another key's file loaded")
	}
}

func TestTLSA311IsTheSPKIHash(t *testing.T) {
	dir := t.TempDir()
	_, _, leaf := writePair(t, dir, "a", "mx.example.test")
	got := TLSA311(leaf)
	if len(got) != 64 || bytes.ContainsAny([]byte(got), "ABCDEF") {
		t.Fatalf("TLSA311 = %q: want 64 lower-case hex digits", got)
	}
	if k, err := TLSA311Key(leaf.PublicKey); err != nil || k != got {
		t.Fatalf("TLSA311Key = %q, %v; want %q", k, err, got)
	}
	// Same key, other certificate: same record.
	leaf2 := *leaf
	leaf2.Raw = nil
	if TLSA311(&leaf2) != got {
		t.Fatal("TLSA311 depends on more than the public key")
	}
}
