package arc

import (
	"bufio"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"fmt"
	"hash"
	"io"
	"strings"
	"time"

	"github.com/posthorn/posthorn/internal/dkim"
	"github.com/posthorn/posthorn/internal/dns"
)

// VerifyOptions tunes Verify; nil or zero fields take the defaults named.
type VerifyOptions struct {
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// ClockSkew is how far t= may lie in the future and how long after x=
	// a signature is still accepted. Default 5 minutes.
	ClockSkew time.Duration
	// MinRSABits is the smallest RSA key accepted; at least 1024
	// (RFC 8301 3.2), which is also the default.
	MinRSABits int
	// SkipOldestPass skips the optional oldest-pass computation (RFC 8617
	// 5.2 step 5), which verifies every older ARC-Message-Signature.
	SkipOldestPass bool
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
	if v.MinRSABits < 1024 {
		v.MinRSABits = 1024
	}
	return v
}

// arcSet is one instance's fields as found in the message.
type arcSet struct {
	aar, ams, seal      []dkim.HeaderField
	aarP                *AuthResults
	amsP                *MessageSignature
	sealP               *Seal
	bodyHash            []byte // of amsP's canonicalization and l=, once the body is read
	bodyLen, bodyNonWSP int64
	bodyLenOK           bool
}

// Verify evaluates the ARC chain of the message read from msg (header,
// empty line, body) as RFC 8617 5.2 says, fetching keys through resolver.
// The error is only for failures to read msg; everything about the chain
// is in the Result.
func Verify(ctx context.Context, resolver dns.Resolver, msg io.Reader, opts *VerifyOptions) (Result, error) {
	o := opts.withDefaults()
	br := bufio.NewReaderSize(msg, 32*1024)
	fields, err := dkim.ReadHeader(br)
	if err != nil {
		return Result{}, fmt.Errorf("arc: reading header: %w", err)
	}
	fail := func(r *Result, format string, a ...any) (Result, error) {
		r.Status, r.Reason = StatusFail, fmt.Sprintf(format, a...)
		return *r, nil
	}

	// Step 1: collect the ARC sets.
	sets := make(map[int]*arcSet)
	var res Result
	var parseErr error
	for _, f := range fields {
		kind := arcKind(f.Name)
		if kind == "" {
			continue
		}
		_, value, _ := strings.Cut(f.Raw, ":")
		inst, err := parseField(kind, value, sets, f)
		if inst > res.Instances {
			res.Instances = inst
		}
		if err != nil && parseErr == nil {
			parseErr = fmt.Errorf("%s: %v", kind, err)
		}
	}
	if len(sets) == 0 && parseErr == nil {
		res.Status = StatusNone
		return res, nil
	}
	if parseErr != nil {
		// RFC 8617 5.2 step 3: a field that belongs to no well-formed set
		// breaks the structure.
		for _, s := range sets {
			if s.sealP != nil && s.sealP.ChainValidation == StatusFail {
				res.Terminated = true
			}
		}
		return fail(&res, "%v", parseErr)
	}
	n := res.Instances
	if len(sets) > MaxInstances {
		return fail(&res, "more than %d ARC sets", MaxInstances)
	}

	// Step 2: a chain the newest sealer marked failed stays failed.
	if top := sets[n]; top != nil && len(top.seal) == 1 && top.sealP.ChainValidation == StatusFail {
		res.Terminated = true
		return fail(&res, "ARC-Seal i=%d says cv=fail: the chain was already broken", n)
	}

	// Step 3: structure.
	for i := 1; i <= n; i++ {
		s := sets[i]
		if s == nil {
			return fail(&res, "no ARC set with i=%d (instances must run 1..%d)", i, n)
		}
		for _, c := range []struct {
			name   string
			fields []dkim.HeaderField
		}{{fieldAAR, s.aar}, {fieldAMS, s.ams}, {fieldSeal, s.seal}} {
			if len(c.fields) != 1 {
				return fail(&res, "ARC set i=%d has %d %s fields, want exactly 1", i, len(c.fields), c.name)
			}
		}
		cv := s.sealP.ChainValidation
		switch {
		case cv == StatusFail:
			res.Terminated = true
			return fail(&res, "ARC-Seal i=%d says cv=fail: the chain was already broken", i)
		case i == 1 && cv != StatusNone:
			return fail(&res, "ARC-Seal i=1 has cv=%s, want none", cv)
		case i > 1 && cv != StatusPass:
			return fail(&res, "ARC-Seal i=%d has cv=%s, want pass", i, cv)
		}
	}
	for i := 1; i <= n; i++ {
		s := sets[i]
		res.Sets = append(res.Sets, SetInfo{
			Instance:          i,
			ChainValidation:   s.sealP.ChainValidation,
			SealDomain:        s.sealP.Domain,
			SealSelector:      s.sealP.Selector,
			SignatureDomain:   s.amsP.Domain,
			SignatureSelector: s.amsP.Selector,
			AuthServID:        s.aarP.AuthServID,
			AuthResults:       s.aarP.Payload,
		})
	}

	// Body hashes for the AMS we will verify, in one pass over the body.
	want := []int{n}
	if !o.SkipOldestPass {
		for i := n - 1; i >= 1; i-- {
			want = append(want, i)
		}
	}
	if err := hashBodies(br, sets, want); err != nil {
		return Result{}, fmt.Errorf("arc: reading body: %w", err)
	}

	keys := &keyCache{resolver: resolver, o: o, keys: make(map[string]keyEntry)}

	// Step 4: the newest AMS must verify.
	if err := verifyAMS(ctx, keys, sets[n], fields, o); err != nil {
		return fail(&res, "ARC-Message-Signature i=%d: %v", n, err)
	}
	// Step 5: oldest-pass.
	if !o.SkipOldestPass {
		res.OldestPass = 0
		for i := n - 1; i >= 1; i-- {
			if verifyAMS(ctx, keys, sets[i], fields, o) != nil {
				res.OldestPass = i + 1
				break
			}
		}
	}
	// Step 6: every seal, newest first.
	for i := n; i >= 1; i-- {
		if err := verifySeal(ctx, keys, sets, i, o); err != nil {
			return fail(&res, "ARC-Seal i=%d: %v", i, err)
		}
	}
	res.Status = StatusPass
	return res, nil
}

// arcKind names the ARC field f is, or "".
func arcKind(name string) string {
	for _, k := range []string{fieldAAR, fieldAMS, fieldSeal} {
		if strings.EqualFold(name, k) {
			return k
		}
	}
	return ""
}

// parseField parses one ARC field and files it under its instance.
func parseField(kind, value string, sets map[int]*arcSet, f dkim.HeaderField) (int, error) {
	get := func(i int) *arcSet {
		if sets[i] == nil {
			sets[i] = &arcSet{}
		}
		return sets[i]
	}
	switch kind {
	case fieldAAR:
		p, err := ParseAuthResults(value)
		if err != nil {
			return 0, err
		}
		s := get(p.Instance)
		s.aar, s.aarP = append(s.aar, f), p
		return p.Instance, nil
	case fieldAMS:
		p, err := ParseMessageSignature(value)
		if err != nil {
			return 0, err
		}
		s := get(p.Instance)
		s.ams, s.amsP = append(s.ams, f), p
		return p.Instance, nil
	default:
		p, err := ParseSeal(value)
		if err != nil {
			return 0, err
		}
		s := get(p.Instance)
		s.seal, s.sealP = append(s.seal, f), p
		return p.Instance, nil
	}
}

// bodyKey identifies one way of hashing the body.
type bodyKey struct {
	canon string
	limit int64
}

type bodyHasher struct {
	h     hash.Hash
	canon io.WriteCloser
	count *countWriter
}

// hashBodies reads the body once and computes the body hash of each AMS in
// want, sharing the work between those canonicalized alike.
func hashBodies(body io.Reader, sets map[int]*arcSet, want []int) error {
	hashers := make(map[bodyKey]*bodyHasher)
	var writers []io.Writer
	for _, i := range want {
		ams := sets[i].amsP
		k := bodyKey{ams.BodyCanon, ams.BodyLength}
		if hashers[k] != nil {
			continue
		}
		bh := &bodyHasher{h: sha256.New()}
		bh.count = &countWriter{w: bh.h, limit: ams.BodyLength}
		bh.canon = dkim.NewBodyCanonicalizer(bh.count, ams.BodyCanon)
		hashers[k] = bh
		writers = append(writers, bh.canon)
	}
	if _, err := io.Copy(io.MultiWriter(writers...), body); err != nil {
		return err
	}
	for _, bh := range hashers {
		if err := bh.canon.Close(); err != nil {
			return err
		}
	}
	for _, i := range want {
		s := sets[i]
		bh := hashers[bodyKey{s.amsP.BodyCanon, s.amsP.BodyLength}]
		s.bodyHash = bh.h.Sum(nil)
		s.bodyLen, s.bodyNonWSP = bh.count.total, bh.count.nonWSP
		s.bodyLenOK = s.amsP.BodyLength < 0 || bh.count.total >= s.amsP.BodyLength
	}
	return nil
}

// countWriter passes the first limit octets (all when limit < 0) on and
// counts the non-whitespace octets beyond.
type countWriter struct {
	w      io.Writer
	limit  int64
	total  int64
	nonWSP int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	q := p
	if c.limit >= 0 {
		room := max(c.limit-c.total, 0)
		if int64(len(q)) > room {
			for _, b := range q[room:] {
				if b != ' ' && b != '\t' && b != '\r' && b != '\n' {
					c.nonWSP++
				}
			}
			q = q[:room]
		}
	}
	c.total += int64(len(p))
	if len(q) > 0 {
		if _, err := c.w.Write(q); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// verifyAMS checks one ARC-Message-Signature like a DKIM signature
// (RFC 8617 4.1.2, RFC 6376 6.1.3).
func verifyAMS(ctx context.Context, keys *keyCache, s *arcSet, fields []dkim.HeaderField, o VerifyOptions) error {
	ams := s.amsP
	if err := checkTimes(ams.Timestamp, ams.Expiration, o); err != nil {
		return err
	}
	if !s.bodyLenOK {
		return fmt.Errorf("l=%d is longer than the %d-octet canonical body", ams.BodyLength, s.bodyLen)
	}
	if !equalBytes(s.bodyHash, ams.BodyHash) {
		return fmt.Errorf("body hash did not verify")
	}
	if ams.BodyLength >= 0 && s.bodyNonWSP > 0 {
		// Our DKIM policy (internal/dkim MaxUnsignedBody): content past
		// l= is attacker-controlled.
		return fmt.Errorf("l=%d leaves body content unsigned", ams.BodyLength)
	}
	h := sha256.New()
	used := make([]bool, len(fields))
	for _, name := range ams.HeaderFields {
		// RFC 6376 5.4.2: instances are taken from the bottom up.
		for i := len(fields) - 1; i >= 0; i-- {
			if !used[i] && strings.EqualFold(fields[i].Name, name) {
				used[i] = true
				io.WriteString(h, dkim.CanonicalizeHeader(fields[i].Raw, ams.HeaderCanon))
				break
			}
		}
	}
	self := dkim.CanonicalizeHeader(dkim.WithoutSignatureValue(s.ams[0].Raw), ams.HeaderCanon)
	io.WriteString(h, strings.TrimSuffix(self, "\r\n"))
	return keys.verify(ctx, ams.Selector, ams.Domain, ams.KeyAlgorithm, h.Sum(nil), ams.Signature)
}

// verifySeal checks the ARC-Seal of instance i over the sets 1..i, each
// as AAR, AMS, AS, relaxed (RFC 8617 5.1.1).
func verifySeal(ctx context.Context, keys *keyCache, sets map[int]*arcSet, i int, o VerifyOptions) error {
	seal := sets[i].sealP
	if err := checkTimes(seal.Timestamp, -1, o); err != nil {
		return err
	}
	h := sha256.New()
	for j := 1; j <= i; j++ {
		s := sets[j]
		io.WriteString(h, dkim.CanonicalizeHeader(s.aar[0].Raw, "relaxed"))
		io.WriteString(h, dkim.CanonicalizeHeader(s.ams[0].Raw, "relaxed"))
		if j < i {
			io.WriteString(h, dkim.CanonicalizeHeader(s.seal[0].Raw, "relaxed"))
		}
	}
	self := dkim.CanonicalizeHeader(dkim.WithoutSignatureValue(sets[i].seal[0].Raw), "relaxed")
	io.WriteString(h, strings.TrimSuffix(self, "\r\n"))
	return keys.verify(ctx, seal.Selector, seal.Domain, seal.KeyAlgorithm, h.Sum(nil), seal.Signature)
}

func checkTimes(t, x int64, o VerifyOptions) error {
	now := o.Now()
	if t >= 0 && time.Unix(t, 0).After(now.Add(o.ClockSkew)) {
		return fmt.Errorf("timestamp t=%d is in the future", t)
	}
	if x >= 0 && now.After(time.Unix(x, 0).Add(o.ClockSkew)) {
		return fmt.Errorf("signature expired (x=%d)", x)
	}
	return nil
}

// keyCache fetches each key once per message: a chain of one sealer
// names the same key in every set.
type keyCache struct {
	resolver dns.Resolver
	o        VerifyOptions
	keys     map[string]keyEntry
}

type keyEntry struct {
	key *dkim.KeyRecord
	err error
}

func (c *keyCache) get(ctx context.Context, selector, domain string) (*dkim.KeyRecord, error) {
	name := selector + "._domainkey." + domain
	if e, ok := c.keys[name]; ok {
		return e.key, e.err
	}
	key, err := dkim.LookupKey(ctx, c.resolver, selector, domain)
	c.keys[name] = keyEntry{key, err}
	return key, err
}

// verify checks sig over the SHA-256 digest with the key at
// selector._domainkey.domain.
func (c *keyCache) verify(ctx context.Context, selector, domain, keyAlg string, digest, sig []byte) error {
	key, err := c.get(ctx, selector, domain)
	if err != nil {
		// RFC 8617 5.2.1: DNS failures are permanent failures too.
		return err
	}
	if key.KeyAlgorithm != keyAlg {
		return fmt.Errorf("key type k=%s does not match the %s signature", key.KeyAlgorithm, keyAlg)
	}
	if !key.AllowsHash("sha256") {
		return fmt.Errorf("key record h= does not allow sha256")
	}
	if !key.AllowsEmail() {
		return fmt.Errorf("key record s= does not include email")
	}
	switch pub := key.PublicKey.(type) {
	case *rsa.PublicKey:
		if pub.N.BitLen() < c.o.MinRSABits {
			return fmt.Errorf("RSA key of %d bits is too short (at least %d)", pub.N.BitLen(), c.o.MinRSABits)
		}
		if rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest, sig) != nil {
			return fmt.Errorf("signature did not verify")
		}
	case ed25519.PublicKey:
		// RFC 8463 3: Ed25519 signs the SHA-256 hash.
		if !ed25519.Verify(pub, digest, sig) {
			return fmt.Errorf("signature did not verify")
		}
	default:
		return fmt.Errorf("unsupported key type %T", key.PublicKey)
	}
	return nil
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
