package dkim

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// errRevoked marks a key record with an empty p= (RFC 6376 3.6.1).
var errRevoked = errors.New("key revoked (empty p=)")

// KeyRecord is a parsed DKIM key record (RFC 6376 3.6.1).
type KeyRecord struct {
	KeyAlgorithm string   // k=, "rsa" by default
	Hashes       []string // h=; nil means any
	Services     []string // s=; nil means "*"
	Flags        []string // t=: "y" testing, "s" no subdomains in i=
	Notes        string   // n=
	PublicKey    crypto.PublicKey
	Tags         []Tag
}

// Testing reports the t=y flag.
func (k *KeyRecord) Testing() bool { return k.hasFlag("y") }

// Strict reports the t=s flag: the i= domain must equal d= exactly.
func (k *KeyRecord) Strict() bool { return k.hasFlag("s") }

func (k *KeyRecord) hasFlag(f string) bool {
	for _, x := range k.Flags {
		if x == f {
			return true
		}
	}
	return false
}

// Bits is the size of the public key in bits.
func (k *KeyRecord) Bits() int {
	switch pub := k.PublicKey.(type) {
	case *rsa.PublicKey:
		return pub.N.BitLen()
	case ed25519.PublicKey:
		return 256
	}
	return 0
}

// ParseKeyRecord parses a DKIM key record as published in DNS TXT. A revoked
// key (empty p=) is reported as an error wrapping errRevoked; unknown key types
// (k=) and undecodable keys are errors too. RSA keys are accepted as
// SubjectPublicKeyInfo or as bare RSAPublicKey (RFC 6376 erratum 3017); their
// size is not judged here.
func ParseKeyRecord(txt string) (*KeyRecord, error) {
	tags, err := ParseTags(txt)
	if err != nil {
		return nil, fmt.Errorf("key record syntax: %w", err)
	}
	m := make(map[string]string, len(tags))
	for _, t := range tags {
		m[t.Name] = t.Value
	}
	if v, ok := m["v"]; ok && v != "DKIM1" {
		return nil, fmt.Errorf("key record version v=%s is not DKIM1", v)
	}
	rec := &KeyRecord{KeyAlgorithm: "rsa", Tags: tags, Notes: m["n"]}
	if k, ok := m["k"]; ok {
		rec.KeyAlgorithm = strings.ToLower(stripFWS(k))
	}
	if h, ok := m["h"]; ok {
		rec.Hashes = splitList(strings.ToLower(h))
	}
	if s, ok := m["s"]; ok {
		rec.Services = splitList(strings.ToLower(s))
	}
	if t, ok := m["t"]; ok {
		rec.Flags = splitList(strings.ToLower(t))
	}
	p, ok := m["p"]
	if !ok {
		return nil, errors.New("key record has no p=")
	}
	p = stripFWS(p)
	if p == "" {
		return rec, errRevoked
	}
	der, err := base64.StdEncoding.DecodeString(p)
	if err != nil {
		return nil, fmt.Errorf("key record p= is not base64: %v", err)
	}
	switch rec.KeyAlgorithm {
	case "rsa":
		pub, err := x509.ParsePKIXPublicKey(der)
		if err != nil {
			pk1, err1 := x509.ParsePKCS1PublicKey(der)
			if err1 != nil {
				return nil, fmt.Errorf("key record p= is not an RSA public key: %v", err)
			}
			pub = pk1
		}
		rsaPub, ok := pub.(*rsa.PublicKey)
		if !ok {
			return nil, fmt.Errorf("key record k=rsa holds a %T", pub)
		}
		rec.PublicKey = rsaPub
	case "ed25519":
		// RFC 8463 4: the raw 32-octet public key, base64.
		if len(der) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("ed25519 key of %d octets, want %d", len(der), ed25519.PublicKeySize)
		}
		rec.PublicKey = ed25519.PublicKey(der)
	default:
		return nil, fmt.Errorf("unknown key type k=%s", rec.KeyAlgorithm)
	}
	return rec, nil
}

// allowsEmail reports whether s= permits the key for email (RFC 6376 3.6.1).
func (k *KeyRecord) allowsEmail() bool {
	if k.Services == nil {
		return true
	}
	for _, s := range k.Services {
		if s == "*" || s == "email" {
			return true
		}
	}
	return false
}

// allowsHash reports whether h= permits the hash algorithm.
func (k *KeyRecord) allowsHash(h string) bool {
	if k.Hashes == nil {
		return true
	}
	for _, x := range k.Hashes {
		if x == h {
			return true
		}
	}
	return false
}
