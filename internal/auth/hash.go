// Package auth checks submission users: the accounts file, password hashes and server-side SASL.
package auth

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// HashParams are the argon2id cost parameters for new hashes.
type HashParams struct {
	Memory  uint32 // KiB
	Time    uint32 // passes
	Threads uint8
}

// DefaultHashParams is the second recommended option of RFC 9106 4:
// 64 MiB, 3 passes, 4 lanes.
var DefaultHashParams = HashParams{Memory: 64 * 1024, Time: 3, Threads: 4}

const (
	saltLen = 16
	keyLen  = 32
)

var b64 = base64.RawStdEncoding

// HashPassword returns an argon2id hash of password in PHC string form:
// $argon2id$v=19$m=65536,t=3,p=4$<salt>$<hash>.
func HashPassword(password string, p HashParams) (string, error) {
	if p.Memory == 0 || p.Time == 0 || p.Threads == 0 {
		p = DefaultHashParams
	}
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	key := argon2.IDKey([]byte(password), salt, p.Time, p.Memory, p.Threads, keyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, p.Memory, p.Time, p.Threads, b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// ErrUnknownHash is returned for a hash that is neither argon2id nor bcrypt.
var ErrUnknownHash = errors.New("unknown password hash format: expected argon2id ($argon2id$...) or bcrypt ($2a$, $2b$, $2y$)")

// VerifyPassword reports whether password matches hash, an argon2id PHC
// string or a bcrypt hash. The comparison takes constant time. An error
// means the hash itself is malformed.
func VerifyPassword(hash, password string) (bool, error) {
	switch {
	case strings.HasPrefix(hash, "$argon2id$"):
		return verifyArgon2id(hash, password)
	case strings.HasPrefix(hash, "$2a$"), strings.HasPrefix(hash, "$2b$"), strings.HasPrefix(hash, "$2y$"):
		err := bcrypt.CompareHashAndPassword([]byte(hash), []byte(password))
		switch {
		case err == nil:
			return true, nil
		case errors.Is(err, bcrypt.ErrMismatchedHashAndPassword), errors.Is(err, bcrypt.ErrPasswordTooLong):
			return false, nil
		default:
			return false, fmt.Errorf("bcrypt hash: %w", err)
		}
	}
	return false, ErrUnknownHash
}

type argon2Hash struct {
	p    HashParams
	salt []byte
	key  []byte
}

func parseArgon2id(hash string) (argon2Hash, error) {
	// "", "argon2id", "v=19", "m=..,t=..,p=..", salt, key
	parts := strings.Split(hash, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return argon2Hash{}, errors.New("argon2id hash: expected $argon2id$v=19$m=M,t=T,p=P$salt$hash")
	}
	if parts[2] != "v="+strconv.Itoa(argon2.Version) {
		return argon2Hash{}, fmt.Errorf("argon2id hash: unsupported version %q", parts[2])
	}
	var h argon2Hash
	seen := map[string]bool{}
	for _, kv := range strings.Split(parts[3], ",") {
		k, v, _ := strings.Cut(kv, "=")
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil || seen[k] {
			return argon2Hash{}, fmt.Errorf("argon2id hash: bad parameter %q", kv)
		}
		seen[k] = true
		switch k {
		case "m":
			h.p.Memory = uint32(n)
		case "t":
			h.p.Time = uint32(n)
		case "p":
			if n > 255 {
				return argon2Hash{}, fmt.Errorf("argon2id hash: bad parameter %q", kv)
			}
			h.p.Threads = uint8(n)
		default:
			return argon2Hash{}, fmt.Errorf("argon2id hash: unknown parameter %q", kv)
		}
	}
	// Bounds keep a hand-edited file from costing the server its memory.
	if h.p.Threads == 0 || h.p.Time == 0 || h.p.Time > 64 || h.p.Memory < 8*uint32(h.p.Threads) || h.p.Memory > 4*1024*1024 {
		return argon2Hash{}, errors.New("argon2id hash: parameters out of range (m up to 4 GiB, t 1 to 64, p 1 to 255)")
	}
	var err error
	if h.salt, err = b64.DecodeString(strings.TrimRight(parts[4], "=")); err != nil || len(h.salt) < 8 {
		return argon2Hash{}, errors.New("argon2id hash: bad salt")
	}
	if h.key, err = b64.DecodeString(strings.TrimRight(parts[5], "=")); err != nil || len(h.key) < 16 || len(h.key) > 1024 {
		return argon2Hash{}, errors.New("argon2id hash: bad hash value")
	}
	return h, nil
}

func verifyArgon2id(hash, password string) (bool, error) {
	h, err := parseArgon2id(hash)
	if err != nil {
		return false, err
	}
	key := argon2.IDKey([]byte(password), h.salt, h.p.Time, h.p.Memory, h.p.Threads, uint32(len(h.key)))
	return subtle.ConstantTimeCompare(key, h.key) == 1, nil
}

// checkHash tells whether a stored hash is one VerifyPassword can use.
func checkHash(hash string) error {
	switch {
	case strings.HasPrefix(hash, "$argon2id$"):
		_, err := parseArgon2id(hash)
		return err
	case strings.HasPrefix(hash, "$2a$"), strings.HasPrefix(hash, "$2b$"), strings.HasPrefix(hash, "$2y$"):
		if _, err := bcrypt.Cost([]byte(hash)); err != nil {
			return fmt.Errorf("bcrypt hash: %w", err)
		}
		return nil
	}
	return ErrUnknownHash
}
