package dkim

import (
	"bufio"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"net"
	"strings"
	"time"

	"github.com/posthorn/posthorn/internal/dns"
)

// VerifyOptions tunes Verify. The zero value (or nil) is the policy
// described on each field.
type VerifyOptions struct {
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// ClockSkew is how far a signature's t= may lie in the future, and how
	// long after x= it is still accepted. Default 5 minutes.
	ClockSkew time.Duration
	// MaxSignatures bounds how many signatures are evaluated (each may cost
	// a DNS query and a pass over the body); the rest get StatusNeutral.
	// Default 10.
	MaxSignatures int
	// MinRSABits is the smallest RSA key accepted. RFC 8301 3.2 forbids
	// accepting keys under 1024 bits; smaller settings are raised to 1024.
	MinRSABits int
	// MaxUnsignedBody is our l= policy (RFC 6376 8.2): a signature whose l=
	// leaves more than this many non-whitespace octets of the canonicalized
	// body unsigned is reported as StatusPolicy instead of pass, because
	// whatever follows the signed part (a new MIME part, a phishing link)
	// is attacker-controlled. Default 0: any unsigned content other than
	// whitespace makes the signature untrusted; trailing blank lines and
	// spaces are harmless and still pass, with UnsignedBody reporting them.
	MaxUnsignedBody int64
}

func (o *VerifyOptions) withDefaults() VerifyOptions {
	var v VerifyOptions
	if o != nil {
		v = *o
	}
	if v.Now == nil {
		v.Now = time.Now
	}
	if v.ClockSkew == 0 {
		v.ClockSkew = 5 * time.Minute
	}
	if v.MaxSignatures <= 0 {
		v.MaxSignatures = 10
	}
	if v.MinRSABits < 1024 {
		v.MinRSABits = 1024
	}
	if v.MaxUnsignedBody < 0 {
		v.MaxUnsignedBody = 0
	}
	return v
}

// verdict is an early end for one signature.
type verdict struct {
	status Status
	reason string
}

func (v *verdict) Error() string { return string(v.status) + ": " + v.reason }

func permErr(format string, a ...any) *verdict {
	return &verdict{StatusPermError, fmt.Sprintf(format, a...)}
}
func failErr(format string, a ...any) *verdict {
	return &verdict{StatusFail, fmt.Sprintf(format, a...)}
}

// sigState is one signature under evaluation.
type sigState struct {
	res   Result
	field field
	sig   *Signature
	key   *KeyRecord
	done  bool // verdict reached before the body was needed
	hash  hash.Hash
	canon *bodyCanon
	limit *limitWriter
}

func (s *sigState) finish(v *verdict) {
	s.res.Status, s.res.Reason, s.done = v.status, v.reason, true
}

// Verify checks every DKIM-Signature of the message read from msg (the
// whole message: header, empty line, body) and returns one Result per
// signature, topmost first; no signatures gives an empty slice. Keys are
// fetched through resolver. The error is only for failures to read msg.
func Verify(ctx context.Context, resolver dns.Resolver, msg io.Reader, opts *VerifyOptions) ([]Result, error) {
	o := opts.withDefaults()
	br := bufio.NewReaderSize(msg, 32*1024)
	fields, err := readHeader(br)
	if err != nil {
		return nil, fmt.Errorf("dkim: reading header: %w", err)
	}

	var states []*sigState
	for _, f := range fields {
		if !strings.EqualFold(f.name, "DKIM-Signature") {
			continue
		}
		st := &sigState{field: f, res: Result{BodyLength: -1}}
		states = append(states, st)
		if len(states) > o.MaxSignatures {
			fillLenient(&st.res, f)
			st.finish(&verdict{StatusNeutral, fmt.Sprintf("not evaluated: more than %d signatures", o.MaxSignatures)})
			continue
		}
		if v := prepare(ctx, resolver, st, o); v != nil {
			st.finish(v)
		}
	}

	// One pass over the body feeds every signature still undecided.
	var writers []io.Writer
	for _, st := range states {
		if st.done {
			continue
		}
		st.hash = sha256.New()
		st.limit = &limitWriter{w: st.hash, n: st.sig.BodyLength}
		st.canon = newBodyCanon(st.limit, st.sig.BodyCanon)
		writers = append(writers, st.canon)
	}
	if len(writers) > 0 {
		if _, err := io.Copy(io.MultiWriter(writers...), br); err != nil {
			return nil, fmt.Errorf("dkim: reading body: %w", err)
		}
	}

	results := make([]Result, 0, len(states))
	for _, st := range states {
		if !st.done {
			st.finish(finishSig(st, fields, o))
		}
		results = append(results, st.res)
	}
	return results, nil
}

// fillLenient fills the identifying fields of a result from a signature we
// will not (or cannot) evaluate, so that the report still names it.
func fillLenient(r *Result, f field) {
	_, value, _ := strings.Cut(f.raw, ":")
	tags, err := ParseTags(value)
	if err != nil {
		return
	}
	for _, t := range tags {
		switch t.Name {
		case "d":
			r.Domain = strings.ToLower(stripFWS(t.Value))
		case "s":
			r.Selector = stripFWS(t.Value)
		case "a":
			r.Algorithm = strings.ToLower(stripFWS(t.Value))
		case "b":
			r.SignatureB = stripFWS(t.Value)
		}
	}
}

// prepare parses the signature, checks its algorithm and dates and fetches
// its key: everything that does not need the body. A nil return means the
// body must be hashed.
func prepare(ctx context.Context, resolver dns.Resolver, st *sigState, o VerifyOptions) *verdict {
	_, value, _ := strings.Cut(st.field.raw, ":")
	sig, err := ParseSignature(value)
	if err != nil {
		fillLenient(&st.res, st.field)
		return permErr("%v", err)
	}
	st.sig = sig
	r := &st.res
	r.Domain, r.Selector, r.Algorithm = sig.Domain, sig.Selector, sig.Algorithm
	r.Identifier, r.HeaderFields, r.SignatureB = sig.Identifier, sig.HeaderFields, sig.BRaw
	r.BodyLength = sig.BodyLength
	if sig.Timestamp >= 0 {
		r.Signed = time.Unix(sig.Timestamp, 0)
	}
	if sig.Expiration >= 0 {
		r.Expires = time.Unix(sig.Expiration, 0)
	}

	switch sig.Hash {
	case "sha256":
	case "sha1":
		// RFC 8301 3.1: rsa-sha1 MUST NOT be used for verifying.
		return failErr("%s is not acceptable (RFC 8301)", sig.Algorithm)
	default:
		return permErr("unknown hash algorithm in a=%s", sig.Algorithm)
	}
	if sig.KeyAlgorithm != "rsa" && sig.KeyAlgorithm != "ed25519" {
		return permErr("unknown signing algorithm a=%s", sig.Algorithm)
	}
	dnsTXT := false
	for _, q := range sig.QueryMethods {
		if q == "dns/txt" {
			dnsTXT = true
		}
	}
	if !dnsTXT {
		return permErr("no supported query method in q=")
	}

	now := o.Now()
	if sig.Expiration >= 0 && now.After(r.Expires.Add(o.ClockSkew)) {
		return failErr("signature expired at %s", r.Expires.UTC().Format(time.RFC3339))
	}
	if sig.Timestamp >= 0 && r.Signed.After(now.Add(o.ClockSkew)) {
		return failErr("signature timestamp %s is in the future", r.Signed.UTC().Format(time.RFC3339))
	}

	key, v := fetchKey(ctx, resolver, sig)
	if v != nil {
		return v
	}
	st.key = key
	r.KeyBits = key.Bits()
	r.Testing = key.Testing()

	if key.KeyAlgorithm != sig.KeyAlgorithm {
		return permErr("key type k=%s does not match a=%s", key.KeyAlgorithm, sig.Algorithm)
	}
	if !key.allowsHash(sig.Hash) {
		return permErr("key record h= does not allow %s", sig.Hash)
	}
	if !key.allowsEmail() {
		return permErr("key record s= does not include email")
	}
	if key.Strict() {
		// RFC 6376 3.6.1 t=s: the i= domain must be d= itself.
		at := strings.LastIndexByte(sig.Identifier, '@')
		if !strings.EqualFold(sig.Identifier[at+1:], sig.Domain) {
			return failErr("key has t=s but i=%s is a subdomain of d=%s", sig.Identifier, sig.Domain)
		}
	}
	if pub, ok := key.PublicKey.(*rsa.PublicKey); ok && pub.N.BitLen() < o.MinRSABits {
		// RFC 8301 3.2, and our policy when MinRSABits is raised.
		return failErr("RSA key of %d bits is too short (policy: at least %d)", pub.N.BitLen(), o.MinRSABits)
	}
	return nil
}

// fetchKey looks up and parses the key record at s._domainkey.d (RFC 6376 6.1.2).
func fetchKey(ctx context.Context, resolver dns.Resolver, sig *Signature) (*KeyRecord, *verdict) {
	name := sig.Selector + "._domainkey." + sig.Domain
	txts, _, err := resolver.LookupTXT(ctx, name)
	if err != nil {
		var de *net.DNSError
		if errors.As(err, &de) && de.IsNotFound {
			return nil, permErr("no key record at %s", name)
		}
		return nil, &verdict{StatusTempError, fmt.Sprintf("key lookup for %s: %v", name, err)}
	}
	if len(txts) == 0 {
		return nil, permErr("no key record at %s", name)
	}
	// RFC 6376 3.6.2.2 leaves several records undefined; 6.1.2 lets the
	// verifier pick. We take the first one that parses.
	var firstErr error
	for _, txt := range txts {
		key, err := ParseKeyRecord(txt)
		if err == nil {
			return key, nil
		}
		if errors.Is(err, errRevoked) {
			return nil, failErr("key %s is revoked (empty p=)", name)
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	return nil, permErr("key record at %s: %v", name, firstErr)
}

// finishSig completes a signature once its body hash is known.
func finishSig(st *sigState, fields []field, o VerifyOptions) *verdict {
	if err := st.canon.Close(); err != nil {
		return &verdict{StatusTempError, err.Error()}
	}
	sig, r := st.sig, &st.res
	if sig.BodyLength >= 0 {
		if st.limit.total < sig.BodyLength {
			return failErr("l=%d is longer than the %d-octet canonical body", sig.BodyLength, st.limit.total)
		}
		r.UnsignedBody = st.limit.beyond
	}
	bh := st.hash.Sum(nil)
	if !equalBytes(bh, sig.BodyHash) {
		return failErr("body hash did not verify")
	}

	h := sha256.New()
	used := make([]bool, len(fields))
	for _, name := range sig.HeaderFields {
		// RFC 6376 5.4.2: take instances from the bottom up; a name listed
		// more often than present contributes nothing further.
		for i := len(fields) - 1; i >= 0; i-- {
			if !used[i] && strings.EqualFold(fields[i].name, name) {
				used[i] = true
				io.WriteString(h, canonHeader(fields[i].raw, sig.HeaderCanon))
				break
			}
		}
	}
	self := canonHeader(withoutB(st.field.raw), sig.HeaderCanon)
	io.WriteString(h, strings.TrimSuffix(self, "\r\n"))
	digest := h.Sum(nil)

	switch pub := st.key.PublicKey.(type) {
	case *rsa.PublicKey:
		if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest, sig.B); err != nil {
			return failErr("signature did not verify")
		}
	case ed25519.PublicKey:
		// RFC 8463 3: Ed25519 signs the SHA-256 hash of the header data.
		if !ed25519.Verify(pub, digest, sig.B) {
			return failErr("signature did not verify")
		}
	}

	if sig.BodyLength >= 0 && st.limit.nonblank > o.MaxUnsignedBody {
		return &verdict{StatusPolicy, fmt.Sprintf("l=%d leaves %d of %d body octets unsigned", sig.BodyLength, st.limit.beyond, st.limit.total)}
	}
	var notes []string
	if r.UnsignedBody > 0 {
		notes = append(notes, fmt.Sprintf("l=%d leaves %d octets of whitespace unsigned", sig.BodyLength, r.UnsignedBody))
	}
	if r.Testing {
		notes = append(notes, "key in testing mode (t=y)")
	}
	return &verdict{StatusPass, strings.Join(notes, "; ")}
}

func equalBytes(a, b []byte) bool {
	if len(a) != len(b) {
		return false
	}
	var d byte
	for i := range a {
		d |= a[i] ^ b[i]
	}
	return d == 0
}
