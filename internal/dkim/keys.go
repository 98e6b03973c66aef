package dkim

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
)

// ParsePrivateKey reads a signing key: PEM "RSA PRIVATE KEY" (PKCS#1),
// PEM "PRIVATE KEY" (PKCS#8, RSA or Ed25519), or the bare base64 32-octet
// Ed25519 seed that dkimpy and RFC 8463 A.1 use.
func ParsePrivateKey(data []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		seed, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(data)))
		if err != nil || len(seed) != ed25519.SeedSize {
			return nil, errors.New("dkim: key is neither PEM nor a base64 Ed25519 seed")
		}
		return ed25519.NewKeyFromSeed(seed), nil
	}
	switch block.Type {
	case "RSA PRIVATE KEY":
		k, err := x509.ParsePKCS1PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("dkim: PKCS#1 key: %w", err)
		}
		return checkSigner(k)
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("dkim: PKCS#8 key: %w", err)
		}
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("dkim: unsupported key type %T", k)
		}
		return checkSigner(s)
	default:
		return nil, fmt.Errorf("dkim: unsupported PEM block %q", block.Type)
	}
}

// checkSigner refuses keys we would not accept when verifying.
func checkSigner(s crypto.Signer) (crypto.Signer, error) {
	switch k := s.(type) {
	case *rsa.PrivateKey:
		if k.N.BitLen() < 1024 {
			return nil, fmt.Errorf("dkim: RSA key of %d bits is too short (RFC 8301: at least 1024)", k.N.BitLen())
		}
		return k, nil
	case ed25519.PrivateKey:
		return k, nil
	default:
		return nil, fmt.Errorf("dkim: unsupported key type %T (want RSA or Ed25519)", s)
	}
}

// KeyAlgorithm names the DKIM key type of a signer: "rsa" or "ed25519".
func KeyAlgorithm(s crypto.Signer) string {
	switch s.Public().(type) {
	case *rsa.PublicKey:
		return "rsa"
	case ed25519.PublicKey:
		return "ed25519"
	}
	return ""
}

// PublicKeyRecord returns the DNS TXT value that publishes the public half
// of s: "v=DKIM1; k=ed25519; p=..." (RFC 8463 4) or "v=DKIM1; k=rsa; p=..."
// with the SubjectPublicKeyInfo (RFC 6376 3.6.1).
func PublicKeyRecord(s crypto.Signer) (string, error) {
	switch pub := s.Public().(type) {
	case ed25519.PublicKey:
		return "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub), nil
	case *rsa.PublicKey:
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			return "", err
		}
		return "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(der), nil
	}
	return "", fmt.Errorf("dkim: unsupported key type %T", s.Public())
}

// GenerateKey makes a new signing key, algo "ed25519" or "rsa2048". It
// returns the private key as PEM PKCS#8 and the TXT record value to publish
// at <selector>._domainkey.<domain>.
func GenerateKey(algo string) (privPEM []byte, dnsTXT string, err error) {
	var signer crypto.Signer
	switch algo {
	case "ed25519":
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, "", err
		}
		signer = priv
	case "rsa2048":
		priv, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return nil, "", err
		}
		signer = priv
	default:
		return nil, "", fmt.Errorf("dkim: unknown key algorithm %q (want ed25519 or rsa2048)", algo)
	}
	der, err := x509.MarshalPKCS8PrivateKey(signer)
	if err != nil {
		return nil, "", err
	}
	txt, err := PublicKeyRecord(signer)
	if err != nil {
		return nil, "", err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), txt, nil
}
