package dkim

import (
	"bufio"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/posthorn/posthorn/internal/dns/dnstest"
)

const conformance = "../../../shared/conformance/dkim"

func readConf(t *testing.T, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(conformance, rel))
	if err != nil {
		t.Fatalf("conformance data: %v", err)
	}
	return b
}

// crlf turns LF line ends (as dkimpy's data files have) into CRLF.
func crlf(b []byte) []byte {
	s := strings.ReplaceAll(string(b), "\r\n", "\n")
	return []byte(strings.ReplaceAll(s, "\n", "\r\n"))
}

var zoneLine = regexp.MustCompile(`^(\S+)\s+\d+\s+IN\s+TXT\s+"(.*)"\s*$`)

// loadZone reads the TXT records of rfc/keys.zone.
func loadZone(t *testing.T) dnstest.Zone {
	t.Helper()
	z := dnstest.Zone{}
	sc := bufio.NewScanner(strings.NewReader(string(readConf(t, "rfc/keys.zone"))))
	for sc.Scan() {
		if m := zoneLine.FindStringSubmatch(sc.Text()); m != nil {
			r := z[m[1]]
			r.TXT = append(r.TXT, m[2])
			z[m[1]] = r
		}
	}
	if len(z) == 0 {
		t.Fatal("no records in keys.zone")
	}
	return z
}

func txtZone(kv ...string) dnstest.Zone {
	z := dnstest.Zone{}
	for i := 0; i+1 < len(kv); i += 2 {
		r := z[kv[i]]
		r.TXT = append(r.TXT, kv[i+1])
		z[kv[i]] = r
	}
	return z
}

func verify(t *testing.T, z dnstest.Zone, msg []byte, opts *VerifyOptions) []Result {
	t.Helper()
	res, err := Verify(context.Background(), dnstest.NewResolver(z), strings.NewReader(string(msg)), opts)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	return res
}

func wantStatuses(t *testing.T, res []Result, want ...Status) {
	t.Helper()
	if len(res) != len(want) {
		t.Fatalf("got %d results %+v, want %d", len(res), res, len(want))
	}
	for i := range want {
		t.Logf("signature %d d=%s s=%s a=%s: %s (%s)", i, res[i].Domain, res[i].Selector, res[i].Algorithm, res[i].Status, res[i].Reason)
		if res[i].Status != want[i] {
			t.Errorf("signature %d (d=%s s=%s a=%s): got %s (%s), want %s", i, res[i].Domain, res[i].Selector, res[i].Algorithm, res[i].Status, res[i].Reason, want[i])
		}
	}
}

// testMessage is a small message with the usual fields.
const testMessage = "From: Alice <alice@example.com>\r\n" +
	"To: Bob <bob@example.net>\r\n" +
	"Subject: Lunch\r\n" +
	"Date: Mon, 01 Jan 2024 12:00:00 +0000\r\n" +
	"Message-ID: <1@example.com>\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"\r\n" +
	"Shall we have lunch?  \r\n" +
	"\r\n" +
	"Alice\r\n"

func newEd25519(t *testing.T) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

var rsaKeyCache = map[int]*rsa.PrivateKey{}

func newRSA(t *testing.T, bits int) *rsa.PrivateKey {
	t.Helper()
	if k := rsaKeyCache[bits]; k != nil {
		return k
	}
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	rsaKeyCache[bits] = k
	return k
}

func keyTXT(t *testing.T, k crypto.Signer) string {
	t.Helper()
	s, err := PublicKeyRecord(k)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// rawSign builds a DKIM-Signature with arbitrary tags, for cases go-msgauth
// will not produce (l=, x=, t= in the future, i= subdomains, sha1 claims).
// It uses this package's canonicalization, so it only tests policy, never
// canonicalization itself (the go-msgauth and dkimpy tests do that).
// tags must not contain bh= or b=; c= defaults to relaxed/relaxed.
func rawSign(t *testing.T, msg string, key crypto.Signer, tags map[string]string) string {
	t.Helper()
	if _, ok := tags["c"]; !ok {
		tags["c"] = "relaxed/relaxed"
	}
	hc, bc, _ := strings.Cut(tags["c"], "/")
	head, body, _ := strings.Cut(msg, "\r\n\r\n")
	var limit int64 = -1
	if l, ok := tags["l"]; ok {
		var err error
		if limit, err = parseDecimal(l, 20); err != nil {
			limit = -1 // a malformed l= the verifier must refuse
		}
	}
	bh := sha256.New()
	lw := &limitWriter{w: bh, n: limit}
	bcw := newBodyCanon(lw, bc)
	bcw.Write([]byte(body))
	bcw.Close()
	tags["bh"] = base64.StdEncoding.EncodeToString(bh.Sum(nil))
	names := make([]string, 0, len(tags))
	for k := range tags {
		names = append(names, k)
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteString("DKIM-Signature: v=1")
	for _, k := range names {
		if k == "v" {
			continue
		}
		b.WriteString("; " + k + "=" + tags[k])
	}
	b.WriteString(";\r\n b=")
	unsigned := b.String() + "\r\n"

	fields, err := readHeader(bufio.NewReader(strings.NewReader(head + "\r\n\r\n")))
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	used := make([]bool, len(fields))
	for _, name := range splitList(tags["h"]) {
		for i := len(fields) - 1; i >= 0; i-- {
			if !used[i] && strings.EqualFold(fields[i].name, name) {
				used[i] = true
				h.Write([]byte(canonHeader(fields[i].raw, hc)))
				break
			}
		}
	}
	h.Write([]byte(strings.TrimSuffix(canonHeader(unsigned, hc), "\r\n")))
	var sig []byte
	switch k := key.(type) {
	case ed25519.PrivateKey:
		sig = ed25519.Sign(k, h.Sum(nil))
	default:
		sig, err = key.Sign(rand.Reader, h.Sum(nil), crypto.SHA256)
		if err != nil {
			t.Fatal(err)
		}
	}
	return b.String() + base64.StdEncoding.EncodeToString(sig) + "\r\n" + msg
}

func unix(s int64) time.Time { return time.Unix(s, 0) }
