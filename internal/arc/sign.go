package arc

import (
	"bufio"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/posthorn/posthorn/internal/authres"
	"github.com/posthorn/posthorn/internal/dkim"
)

// SignOptions are the inputs of Sign.
type SignOptions struct {
	// Domain (d=) and Selector (s=) name the key, published at
	// Selector._domainkey.Domain.
	Domain, Selector string
	// Key signs both the ARC-Message-Signature and the ARC-Seal: RSA (at
	// least 1024 bits) gives rsa-sha256, Ed25519 gives ed25519-sha256.
	Key crypto.Signer
	// AuthServID is this hop's authserv-id, as in its Authentication-Results.
	AuthServID string
	// AuthResults are this hop's results (RFC 8617 4.1.1: all of them, in
	// one field). Either the results alone ("spf=pass smtp.mailfrom=...;
	// dkim=pass ...") or a whole Authentication-Results field as
	// authres.Format writes it, whose authserv-id must be AuthServID.
	// When they carry no arc= result, "arc=" ChainValidation is put first.
	AuthResults string
	// ChainValidation is what Verify said of the chain as it arrived:
	// none (only with no ARC set), pass, or fail. On fail the new seal
	// covers only the new set (RFC 8617 5.1.2).
	ChainValidation Status
	// HeaderFields are the fields the ARC-Message-Signature signs, each
	// name once per instance to sign. Nil: those of
	// dkim.DefaultHeaderFields that are present, plus every
	// DKIM-Signature (RFC 8617 4.1.2 SHOULD), each as often as present.
	// Authentication-Results and ARC fields are refused (4.1.2 MUST NOT).
	HeaderFields []string
	// Now gives t=; time.Now when nil.
	Now func() time.Time
}

// Headers is a new ARC set, each field folded with a final CRLF.
type Headers struct {
	Seal                  string // ARC-Seal
	MessageSignature      string // ARC-Message-Signature
	AuthenticationResults string // ARC-Authentication-Results
}

// String returns the three fields in the order to prepend them: the seal
// on top, as RFC 8617 5.1 adds them (AAR, then AMS, then AS, each above
// the last).
func (h *Headers) String() string {
	return h.Seal + h.MessageSignature + h.AuthenticationResults
}

// Sign reads the message (as it will leave, every other change already
// made: RFC 8617 5.1 step 1) and returns the ARC set of instance N+1 to
// prepend to it. It returns ErrChainFailed when the newest ARC-Seal says
// cv=fail: such a chain is not extended (5.1 step 2).
func Sign(msg io.Reader, opts *SignOptions) (*Headers, error) {
	if opts == nil {
		return nil, errors.New("arc: no SignOptions")
	}
	o := *opts
	o.Domain = strings.ToLower(strings.TrimSuffix(o.Domain, "."))
	if !dkim.ValidDomain(o.Domain) || !dkim.ValidDomain(o.Selector) {
		return nil, fmt.Errorf("arc: invalid domain %q or selector %q", o.Domain, o.Selector)
	}
	alg, err := signAlgorithm(o.Key)
	if err != nil {
		return nil, err
	}
	if o.AuthServID == "" {
		return nil, errors.New("arc: no AuthServID")
	}
	if o.Now == nil {
		o.Now = time.Now
	}

	br := bufio.NewReaderSize(msg, 32*1024)
	if b, err := br.Peek(1); err == nil && (b[0] == ' ' || b[0] == '\t') {
		// Our three fields would take the message's first line into the
		// value of the last (RFC 5322 2.2.3): nothing can be put in front.
		return nil, errors.New("arc: the message begins with a folded line, not a header field")
	}
	fields, err := dkim.ReadHeader(br)
	if err != nil {
		return nil, fmt.Errorf("arc: reading header: %w", err)
	}

	// The chain so far: instance numbers, and the fields of each set.
	prior := make(map[int]map[string][]dkim.HeaderField)
	n := 0
	var broken error
	for _, f := range fields {
		kind := arcKind(f.Name)
		if kind == "" {
			continue
		}
		_, value, _ := strings.Cut(f.Raw, ":")
		i, ok := instanceOf(kind, value)
		if !ok {
			broken = fmt.Errorf("an %s field has no valid instance", kind)
			continue
		}
		n = max(n, i)
		if prior[i] == nil {
			prior[i] = make(map[string][]dkim.HeaderField)
		}
		prior[i][kind] = append(prior[i][kind], f)
	}
	if n > 0 {
		for _, f := range prior[n][fieldSeal] {
			_, value, _ := strings.Cut(f.Raw, ":")
			if s, err := ParseSeal(value); err == nil && s.ChainValidation == StatusFail {
				return nil, ErrChainFailed
			}
		}
	}
	cv := o.ChainValidation
	switch {
	case cv == "" && n == 0:
		cv = StatusNone
	case cv == StatusNone && n > 0:
		return nil, fmt.Errorf("arc: ChainValidation none, but the message has ARC sets up to i=%d", n)
	case (cv == StatusPass || cv == StatusFail) && n == 0 && broken == nil:
		return nil, fmt.Errorf("arc: ChainValidation %s, but the message has no ARC set", cv)
	case cv != StatusNone && cv != StatusPass && cv != StatusFail:
		return nil, fmt.Errorf("arc: invalid ChainValidation %q", cv)
	}
	if cv != StatusFail && broken != nil {
		return nil, fmt.Errorf("arc: ChainValidation %s, but %v", cv, broken)
	}
	inst := n + 1
	if inst > MaxInstances {
		// RFC 8617 5.2 step 1: a validator fails a longer chain.
		return nil, fmt.Errorf("arc: the chain already has %d sets, the most allowed", n)
	}

	// ARC-Authentication-Results.
	results, err := payloadResults(o.AuthResults, o.AuthServID)
	if err != nil {
		return nil, err
	}
	if !hasMethod(results, "arc") {
		results = append([]string{"arc=" + string(cv)}, results...)
	}
	aar := foldAAR(inst, o.AuthServID, results)

	// ARC-Message-Signature.
	h, err := signedFields(fields, o.HeaderFields)
	if err != nil {
		return nil, err
	}
	bodyHash := sha256.New()
	canon := dkim.NewBodyCanonicalizer(bodyHash, "relaxed")
	if _, err := io.Copy(canon, br); err != nil {
		return nil, fmt.Errorf("arc: reading body: %w", err)
	}
	if err := canon.Close(); err != nil {
		return nil, err
	}
	t := strconv.FormatInt(o.Now().Unix(), 10)
	i := strconv.Itoa(inst)
	// Tags in alphabetical order with one space after each ';', as the
	// ValiMail suite standardizes them.
	amsTags := []tag{
		{"a", alg}, {"b", ""},
		{"bh", base64.StdEncoding.EncodeToString(bodyHash.Sum(nil))},
		{"c", "relaxed/relaxed"}, {"d", o.Domain},
		{"h", strings.ToLower(strings.Join(h, ":"))},
		{"i", i}, {"s", o.Selector}, {"t", t},
	}
	digest := sha256.New()
	used := make([]bool, len(fields))
	for _, name := range h {
		for j := len(fields) - 1; j >= 0; j-- {
			if !used[j] && strings.EqualFold(fields[j].Name, name) {
				used[j] = true
				io.WriteString(digest, dkim.CanonicalizeHeader(fields[j].Raw, "relaxed"))
				break
			}
		}
	}
	io.WriteString(digest, unsignedField(fieldAMS, amsTags))
	sig, err := signDigest(o.Key, digest.Sum(nil))
	if err != nil {
		return nil, err
	}
	amsTags[1].value = sig
	ams := foldTags(fieldAMS, amsTags)

	// ARC-Seal: the sets 1..N as they are (only on pass: 5.1.2), then ours.
	sealTags := []tag{
		{"a", alg}, {"b", ""}, {"cv", string(cv)}, {"d", o.Domain},
		{"i", i}, {"s", o.Selector}, {"t", t},
	}
	digest = sha256.New()
	if cv == StatusPass {
		for j := 1; j <= n; j++ {
			for _, kind := range []string{fieldAAR, fieldAMS, fieldSeal} {
				fs := prior[j][kind]
				if len(fs) != 1 {
					return nil, fmt.Errorf("arc: ChainValidation pass, but set i=%d has %d %s fields", j, len(fs), kind)
				}
				io.WriteString(digest, dkim.CanonicalizeHeader(fs[0].Raw, "relaxed"))
			}
		}
	}
	io.WriteString(digest, dkim.CanonicalizeHeader(aar, "relaxed"))
	io.WriteString(digest, dkim.CanonicalizeHeader(ams, "relaxed"))
	io.WriteString(digest, unsignedField(fieldSeal, sealTags))
	if sealTags[1].value, err = signDigest(o.Key, digest.Sum(nil)); err != nil {
		return nil, err
	}
	return &Headers{Seal: foldTags(fieldSeal, sealTags), MessageSignature: ams, AuthenticationResults: aar}, nil
}

type tag struct{ name, value string }

// unsignedField is the relaxed canonical form of a signature field with
// an empty b=, without the final CRLF: what its own signature covers.
// foldTags only folds after a "; ", where relaxed canonicalization undoes
// the fold, so the folded field hashes the same.
func unsignedField(name string, tags []tag) string {
	parts := make([]string, len(tags))
	for i, t := range tags {
		parts[i] = t.name + "=" + t.value
	}
	raw := name + ": " + strings.Join(parts, "; ") + "\r\n"
	return strings.TrimSuffix(dkim.CanonicalizeHeader(raw, "relaxed"), "\r\n")
}

// maxLine is where we fold (RFC 5322 2.1.1 SHOULD).
const maxLine = 78

// foldTags writes "Name: t1=v1; t2=v2; ..." folded before a tag when the
// line would pass maxLine, never inside a value: a fold inside b= of the
// ARC-Message-Signature would become a space under the relaxed
// canonicalization the next seal applies to it, so the seal would depend
// on our line breaks. A long b= takes a line of its own (under 998
// octets, RFC 5322 2.1.1, for keys up to 4096 bits); the ValiMail signing
// suite's seals are computed over fields written this way.
func foldTags(name string, tags []tag) string {
	var b strings.Builder
	line := name + ":"
	for k, t := range tags {
		word := t.name + "=" + t.value
		if k < len(tags)-1 {
			word += ";"
		}
		if len(line)+1+len(word) <= maxLine {
			line += " " + word
			continue
		}
		b.WriteString(line + "\r\n")
		line = "\t" + word
	}
	b.WriteString(line + "\r\n")
	return b.String()
}

// foldAAR writes the ARC-Authentication-Results field, one result a line.
func foldAAR(inst int, authServID string, results []string) string {
	var b strings.Builder
	b.WriteString(fieldAAR + ": i=" + strconv.Itoa(inst) + "; " + authServIDValue(authServID))
	if len(results) == 0 {
		b.WriteString("; none\r\n")
		return b.String()
	}
	for _, r := range results {
		b.WriteString(";\r\n\t" + r)
	}
	b.WriteString("\r\n")
	return b.String()
}

// authServIDValue writes the authserv-id as a token or quoted-string.
func authServIDValue(s string) string {
	for i := 0; i < len(s); i++ {
		if !isTokenChar(s[i]) {
			return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\r", "", "\n", "").Replace(s) + `"`
		}
	}
	return s
}

// payloadResults turns SignOptions.AuthResults into its results, one
// string each, unfolded, without the authserv-id and without "none".
func payloadResults(s, authServID string) ([]string, error) {
	s = unfold(s) // no CR or LF can reach the field we write
	if name, rest, ok := strings.Cut(s, ":"); ok && strings.EqualFold(strings.TrimSpace(name), "Authentication-Results") {
		parts := splitResults(rest)
		if len(parts) == 0 || !strings.EqualFold(strings.TrimSuffix(leadingAuthServID(parts[0]), "."), strings.TrimSuffix(authServID, ".")) {
			return nil, fmt.Errorf("arc: AuthResults is an Authentication-Results field of another authserv-id than %s", authServID)
		}
		s = strings.Join(parts[1:], ";")
	}
	var out []string
	for _, r := range splitResults(s) {
		if strings.EqualFold(r, "none") {
			continue
		}
		out = append(out, r)
	}
	return out, nil
}

// splitResults splits an authres-payload at the semicolons that are not
// inside a comment or quoted-string, with each part's whitespace collapsed
// (collapseWSP) and empty parts dropped.
func splitResults(s string) []string {
	var out []string
	depth, quoted, start := 0, false, 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\' && (quoted || depth > 0):
			i++
		case quoted:
			quoted = c != '"'
		case c == '"' && depth == 0:
			quoted = true
		case c == '(':
			depth++
		case c == ')' && depth > 0:
			depth--
		case c == ';' && depth == 0:
			if p := collapseWSP(s[start:i]); p != "" {
				out = append(out, p)
			}
			start = i + 1
		}
	}
	if start < len(s) {
		if p := collapseWSP(s[start:]); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// hasMethod reports whether a result of method is among results.
func hasMethod(results []string, method string) bool {
	for _, r := range results {
		m, _, ok := strings.Cut(authres.SkipCFWS(r), "=")
		if ok && strings.EqualFold(strings.TrimSpace(m), method) {
			return true
		}
	}
	return false
}

// CollectAuthResults consolidates the Authentication-Results fields of
// the message claiming authServID into one payload (RFC 8617 4.1.1: the
// AAR carries all of an ADMD's results), in the order they appear, for
// SignOptions.AuthResults. Fields of other authserv-ids are ignored.
func CollectAuthResults(msg io.Reader, authServID string) (string, error) {
	fields, err := dkim.ReadHeader(bufio.NewReader(msg))
	if err != nil {
		return "", fmt.Errorf("arc: reading header: %w", err)
	}
	var results []string
	for _, f := range fields {
		if !strings.EqualFold(f.Name, "Authentication-Results") {
			continue
		}
		_, value, _ := strings.Cut(unfold(f.Raw), ":")
		parts := splitResults(value)
		if len(parts) == 0 || !strings.EqualFold(strings.TrimSuffix(leadingAuthServID(parts[0]), "."), strings.TrimSuffix(authServID, ".")) {
			continue
		}
		results = append(results, parts[1:]...)
	}
	return strings.Join(results, "; "), nil
}

// signedFields builds h= for the ARC-Message-Signature.
func signedFields(fields []dkim.HeaderField, wanted []string) ([]string, error) {
	forbidden := func(name string) bool {
		return arcKind(name) != "" || strings.EqualFold(name, "Authentication-Results")
	}
	if wanted != nil {
		var h []string
		for _, w := range wanted {
			w = strings.TrimSpace(w)
			if !dkim.ValidFieldName(w) {
				return nil, fmt.Errorf("arc: invalid header field name %q", w)
			}
			if forbidden(w) {
				// RFC 8617 4.1.2: MUST NOT be signed.
				return nil, fmt.Errorf("arc: %s may not be signed by an ARC-Message-Signature", w)
			}
			h = append(h, w)
		}
		return h, nil
	}
	count := make(map[string]int)
	for _, f := range fields {
		count[strings.ToLower(f.Name)]++
	}
	var h []string
	for _, w := range append(append([]string(nil), dkim.DefaultHeaderFields...), "DKIM-Signature") {
		for k := 0; k < count[strings.ToLower(w)]; k++ {
			h = append(h, w)
		}
	}
	if len(h) == 0 {
		return nil, errors.New("arc: the message has none of the header fields to sign")
	}
	return h, nil
}

// signAlgorithm names the a= of a key and refuses keys we would not accept.
func signAlgorithm(k crypto.Signer) (string, error) {
	if k == nil {
		return "", errors.New("arc: no signing key")
	}
	switch pub := k.Public().(type) {
	case *rsa.PublicKey:
		if pub.N.BitLen() < 1024 {
			return "", fmt.Errorf("arc: RSA key of %d bits is too short (RFC 8301: at least 1024)", pub.N.BitLen())
		}
		return "rsa-sha256", nil
	case ed25519.PublicKey:
		return "ed25519-sha256", nil
	}
	return "", fmt.Errorf("arc: unsupported key type %T", k.Public())
}

// signDigest signs a SHA-256 digest: PKCS#1 v1.5 for RSA, and for Ed25519
// the digest itself as the message (RFC 8463 3).
func signDigest(k crypto.Signer, digest []byte) (string, error) {
	var sig []byte
	var err error
	switch k.Public().(type) {
	case ed25519.PublicKey:
		sig, err = k.Sign(rand.Reader, digest, crypto.Hash(0))
	default:
		sig, err = k.Sign(rand.Reader, digest, crypto.SHA256)
	}
	if err != nil {
		return "", fmt.Errorf("arc: signing: %w", err)
	}
	return base64.StdEncoding.EncodeToString(sig), nil
}
