// Package dkim verifies and creates DomainKeys Identified Mail signatures (RFC 6376, RFC 8463).
//
// Verification is our own code (tag parsing, canonicalization, hashing and
// the key record are all here) because github.com/emersion/go-msgauth, which
// we use for signing, refuses every signature carrying l=, does not reject
// t= in the future, ignores the key flag t=s, accepts any text as d= (for
// example "legitimate.com(.attacker.com"), compares i= case-sensitively and
// does not report the selector or algorithm of a result. The test suite
// cross-checks both implementations on the same messages.
package dkim

import "time"

// Status is the outcome of one signature, named as in RFC 8601 2.7.1.
type Status string

// The outcomes a signature can have.
const (
	// StatusNone: the message carried no signature. Verify never returns it
	// per signature; callers use it when Verify returns no results.
	StatusNone Status = "none"
	// StatusPass: the signature verified and nothing in it is untrusted.
	StatusPass Status = "pass"
	// StatusFail: the signature was processed and did not verify, or it is
	// one we refuse by RFC or policy: expired, dated in the future, revoked
	// key, key restricted by t=s, RSA key under 1024 bits, sha1.
	StatusFail Status = "fail"
	// StatusPolicy: the signature verified cryptographically, but its l= tag
	// leaves body content unsigned (see VerifyOptions.MaxUnsignedBody).
	StatusPolicy Status = "policy"
	// StatusNeutral: the signature was not evaluated (more signatures than
	// VerifyOptions.MaxSignatures).
	StatusNeutral Status = "neutral"
	// StatusTempError: the key could not be fetched because of a temporary
	// DNS failure; trying again later may give a final result.
	StatusTempError Status = "temperror"
	// StatusPermError: the signature or its key record is malformed, the key
	// does not exist, or the key does not fit the signature.
	StatusPermError Status = "permerror"
)

// Result is the verdict on one DKIM-Signature header field, in the order the
// fields appear in the message (topmost first).
type Result struct {
	Domain     string // d=, the signing domain (SDID), lower-cased
	Selector   string // s=
	Algorithm  string // a=, e.g. "rsa-sha256" or "ed25519-sha256"
	Identifier string // i=, the AUID; "@" + Domain when absent
	Status     Status
	// Reason says why the status is not pass, or what was noteworthy about a
	// pass (e.g. "key in testing mode"); empty for a plain pass.
	Reason string
	// HeaderFields is the h= list as signed.
	HeaderFields []string
	// KeyBits is the size of the public key in bits (256 for ed25519), 0 if
	// the key was not obtained.
	KeyBits int
	// Testing is true when the key record carries t=y (RFC 6376 3.6.1):
	// the domain is testing DKIM and asks verifiers not to treat signed and
	// unsigned mail differently.
	Testing bool
	// BodyLength is the l= value, -1 when the signature covers the whole body.
	BodyLength int64
	// UnsignedBody is the number of canonicalized body octets past l= that
	// the signature does not cover (0 without l=).
	UnsignedBody int64
	// SignatureB is the b= value with whitespace removed, for
	// Authentication-Results header.b (RFC 6008).
	SignatureB string
	// Signed and Expires are t= and x=, zero when absent.
	Signed  time.Time
	Expires time.Time
}
