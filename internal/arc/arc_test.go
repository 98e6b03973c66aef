package arc

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/posthorn/posthorn/internal/authres"
	"github.com/posthorn/posthorn/internal/dkim"
	"github.com/posthorn/posthorn/internal/dns/dnstest"
)

const testMessage = "From: Alice <alice@origin.example>\r\n" +
	"To: list@lists.example\r\n" +
	"Subject: ARC test\r\n" +
	"Date: Mon, 23 Nov 2026 10:00:00 +0000\r\n" +
	"Message-ID: <1@origin.example>\r\n" +
	"MIME-Version: 1.0\r\n" +
	"\r\n" +
	"Hello,  world.\r\n" +
	"\r\n"

var testNow = func() time.Time { return time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC) }

var (
	rsaOnce sync.Once
	rsaKey  *rsa.PrivateKey
)

// testRSA is one 2048-bit key for the whole package: generating is slow.
func testRSA(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	rsaOnce.Do(func() {
		var err error
		if rsaKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
	})
	return rsaKey
}

func testEd25519(t *testing.T) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// hop is one sealer: a domain, a selector and a key.
type hop struct {
	domain, selector string
	key              crypto.Signer
}

func (h hop) publish(t *testing.T, z dnstest.Zone) {
	t.Helper()
	txt, err := dkim.PublicKeyRecord(h.key)
	if err != nil {
		t.Fatal(err)
	}
	z[h.selector+"._domainkey."+h.domain] = dnstest.Records{TXT: []string{txt}}
}

// seal verifies msg as h would on arrival and prepends h's ARC set.
func (h hop) seal(t *testing.T, r *dnstest.Resolver, msg string) string {
	t.Helper()
	return h.sealModified(t, r, msg, nil)
}

// sealModified is seal with the message changed by modify between
// verification and sealing, as a mailing list adding a footer does.
func (h hop) sealModified(t *testing.T, r *dnstest.Resolver, msg string, modify func(string) string) string {
	t.Helper()
	v, err := Verify(context.Background(), r, strings.NewReader(msg), &VerifyOptions{Now: testNow})
	if err != nil {
		t.Fatal(err)
	}
	if modify != nil {
		msg = modify(msg)
	}
	set, err := Sign(strings.NewReader(msg), &SignOptions{
		Domain: h.domain, Selector: h.selector, Key: h.key,
		AuthServID:      "mx." + h.domain,
		AuthResults:     "spf=pass smtp.mailfrom=alice@origin.example; dkim=none",
		ChainValidation: v.Status,
		Now:             testNow,
	})
	if err != nil {
		t.Fatalf("Sign at %s: %v", h.domain, err)
	}
	return set.String() + msg
}

func verifyMsg(t *testing.T, r *dnstest.Resolver, msg string) Result {
	t.Helper()
	res, err := Verify(context.Background(), r, strings.NewReader(msg), &VerifyOptions{Now: testNow})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func threeHops(t *testing.T) ([]hop, *dnstest.Resolver) {
	hops := []hop{
		{"lists.example", "arc1", testRSA(t)},
		{"forward.example", "ed", testEd25519(t)},
		{"relay.example", "arc3", testRSA(t)},
	}
	z := dnstest.Zone{}
	for _, h := range hops {
		h.publish(t, z)
	}
	return hops, dnstest.NewResolver(z)
}

func TestNoARCSetsIsNone(t *testing.T) {
	r := dnstest.NewResolver(dnstest.Zone{})
	res := verifyMsg(t, r, testMessage)
	if res.Status != StatusNone || res.Instances != 0 {
		t.Fatalf("got %+v, want none", res)
	}
	if len(r.Queries()) != 0 {
		t.Errorf("DNS queries for a message without ARC: %v", r.Queries())
	}
}

func TestThreeHopChainRSAAndEd25519Passes(t *testing.T) {
	hops, r := threeHops(t)
	msg := testMessage
	for i, h := range hops {
		msg = h.seal(t, r, msg)
		res := verifyMsg(t, r, msg)
		if res.Status != StatusPass || res.Instances != i+1 || res.OldestPass != 0 {
			t.Fatalf("after hop %d: %+v", i+1, res)
		}
	}
	res := verifyMsg(t, r, msg)
	if len(res.Sets) != 3 || res.Sets[1].SealDomain != "forward.example" || res.Sets[1].ChainValidation != StatusPass ||
		res.Sets[0].ChainValidation != StatusNone || res.Sets[2].AuthServID != "mx.relay.example" {
		t.Errorf("sets: %+v", res.Sets)
	}
	if !strings.Contains(msg, "ARC-Seal: a=ed25519-sha256;") {
		t.Error("the Ed25519 hop did not seal with ed25519-sha256")
	}
	if !strings.Contains(res.Sets[0].AuthResults, "arc=none; spf=pass") {
		t.Errorf("AAR 1 payload %q lacks arc=none put first", res.Sets[0].AuthResults)
	}
}

func TestModifiedBodyAfterLastHopFails(t *testing.T) {
	hops, r := threeHops(t)
	msg := hops[1].seal(t, r, hops[0].seal(t, r, testMessage))
	msg = strings.Replace(msg, "Hello,  world.", "Hello, w0rld.", 1)
	res := verifyMsg(t, r, msg)
	if res.Status != StatusFail || !strings.Contains(res.Reason, "ARC-Message-Signature i=2") {
		t.Fatalf("got %s (%s), want fail on AMS i=2", res.Status, res.Reason)
	}
}

// A hop that changes the message (a list footer) and seals: the chain
// passes, and oldest-pass tells the earlier AMS no longer verifies.
func TestModificationBetweenHopsSetsOldestPass(t *testing.T) {
	hops, r := threeHops(t)
	msg := hops[0].seal(t, r, testMessage)
	msg = hops[1].sealModified(t, r, msg, func(m string) string {
		return strings.Replace(m, "Hello,  world.\r\n", "Hello,  world.\r\n-- \r\nlist footer\r\n", 1)
	})
	msg = hops[2].seal(t, r, msg)
	res := verifyMsg(t, r, msg)
	if res.Status != StatusPass || res.OldestPass != 2 {
		t.Fatalf("got %s oldest-pass=%d (%s), want pass with oldest-pass=2", res.Status, res.OldestPass, res.Reason)
	}
	a := res.AuthResult("192.0.2.7")
	got := authres.Format("mx.example", []authres.Result{a})
	if !strings.Contains(got, "arc=pass smtp.remote-ip=192.0.2.7 header.oldest-pass=2") {
		t.Errorf("Authentication-Results: %q", got)
	}
}

func TestTamperedOlderSetFailsTheSeal(t *testing.T) {
	hops, r := threeHops(t)
	msg := hops[1].seal(t, r, hops[0].seal(t, r, testMessage))
	// Rewrite what hop 1 said; the AMS of hop 2 does not cover it (ARC
	// fields are never in h=), only the seals do.
	msg = strings.Replace(msg, "i=1; mx.lists.example;\r\n\tarc=none;\r\n\tspf=pass", "i=1; mx.lists.example;\r\n\tarc=none;\r\n\tspf=fail", 1)
	res := verifyMsg(t, r, msg)
	if res.Status != StatusFail || !strings.Contains(res.Reason, "ARC-Seal i=2") {
		t.Fatalf("got %s (%s), want fail on ARC-Seal i=2", res.Status, res.Reason)
	}
}

func TestFailedChainSealedWithCVFailAndNotExtended(t *testing.T) {
	hops, r := threeHops(t)
	msg := hops[0].seal(t, r, testMessage)
	msg = strings.Replace(msg, "Subject: ARC test", "Subject: changed", 1) // breaks AMS 1
	msg = hops[1].seal(t, r, msg)
	if !strings.Contains(msg, "cv=fail; d=forward.example; i=2") {
		t.Fatalf("hop 2 did not seal with cv=fail:\n%s", msg)
	}
	res := verifyMsg(t, r, msg)
	if res.Status != StatusFail || !res.Terminated {
		t.Fatalf("got %+v, want fail, terminated", res)
	}
	_, err := Sign(strings.NewReader(msg), &SignOptions{
		Domain: "relay.example", Selector: "arc3", Key: hops[2].key,
		AuthServID: "mx.relay.example", ChainValidation: StatusFail, Now: testNow,
	})
	if !errors.Is(err, ErrChainFailed) {
		t.Fatalf("Sign on a terminated chain: %v, want ErrChainFailed", err)
	}
}

func TestStructuralFailures(t *testing.T) {
	hops, r := threeHops(t)
	two := hops[1].seal(t, r, hops[0].seal(t, r, testMessage))
	lines := strings.SplitAfter(two, "\r\n")
	var aar2 string
	for _, l := range lines {
		if strings.HasPrefix(l, "ARC-Authentication-Results: i=2;") {
			aar2 = l
		}
	}
	for _, c := range []struct {
		name, msg, reason string
	}{
		{"missing AAR", strings.Replace(two, "ARC-Authentication-Results: i=2;", "X-Old-AAR: i=2;", 1), "has 0 ARC-Authentication-Results"},
		{"duplicate AAR", aar2 + two, "has 2 ARC-Authentication-Results"},
		{"gap", strings.ReplaceAll(strings.ReplaceAll(two, "i=2;", "i=3;"), "i=2\r\n", "i=3\r\n"), "no ARC set with i=2"},
		{"instance 51", strings.Replace(two, "ARC-Authentication-Results: i=2;", "ARC-Authentication-Results: i=51;", 1), "outside 1..50"},
		{"cv=pass on i=1", strings.Replace(two, "cv=none", "cv=pass", 1), "cv=pass, want none"},
		{"h= in seal", strings.Replace(two, "cv=none;", "cv=none; h=from;", 1), "h= is not allowed"},
		{"ARC-Seal in h=", strings.Replace(two, "h=from", "h=arc-seal:from", 1), "h= includes ARC-Seal"},
	} {
		t.Run(c.name, func(t *testing.T) {
			res := verifyMsg(t, r, c.msg)
			if res.Status != StatusFail || !strings.Contains(res.Reason, c.reason) {
				t.Errorf("got %s (%s), want fail with %q", res.Status, res.Reason, c.reason)
			}
		})
	}
}

func TestKeyProblemsFail(t *testing.T) {
	h := hop{"lists.example", "arc1", testRSA(t)}
	z := dnstest.Zone{}
	h.publish(t, z)
	r := dnstest.NewResolver(z)
	msg := h.seal(t, r, testMessage)

	// The 512-bit key of the ValiMail suite (Go no longer makes such keys).
	const smallTXT = "v=DKIM1; k=rsa; p=MFwwDQYJKoZIhvcNAQEBBQADSwAwSAJBAIWmlgix/84GJ+dfgjm7LTc9EPdfkftlgiPpCq4/kbDAZmU0VvYKDljjleJ1dfvS+CGy9U/kk1tG3EeEvb82xAcCAwEAAQ=="
	for _, c := range []struct {
		name   string
		rec    dnstest.Records
		reason string
	}{
		{"no key", dnstest.Records{}, "no key record"},
		{"revoked", dnstest.Records{TXT: []string{"v=DKIM1; k=rsa; p="}}, "revoked"},
		{"servfail", dnstest.Records{ServFail: true}, "temperror"},
		{"wrong type", dnstest.Records{TXT: []string{"v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="}}, "does not match"},
		{"not for email", dnstest.Records{TXT: []string{z["arc1._domainkey.lists.example"].TXT[0] + "; s=other"}}, "s= does not include email"},
		{"512 bits", dnstest.Records{TXT: []string{smallTXT}}, "too short"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := dnstest.NewResolver(dnstest.Zone{"arc1._domainkey.lists.example": c.rec})
			res := verifyMsg(t, r, msg)
			if res.Status != StatusFail || !strings.Contains(res.Reason, c.reason) {
				t.Errorf("got %s (%s), want fail with %q", res.Status, res.Reason, c.reason)
			}
		})
	}
}

func TestTimestampInTheFutureFails(t *testing.T) {
	h := hop{"lists.example", "arc1", testRSA(t)}
	z := dnstest.Zone{}
	h.publish(t, z)
	r := dnstest.NewResolver(z)
	msg := h.seal(t, r, testMessage)
	res, err := Verify(context.Background(), r, strings.NewReader(msg), &VerifyOptions{Now: func() time.Time { return testNow().Add(-time.Hour) }})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != StatusFail || !strings.Contains(res.Reason, "in the future") {
		t.Fatalf("got %s (%s)", res.Status, res.Reason)
	}
}

func TestSignRefusesWrongChainValidation(t *testing.T) {
	hops, r := threeHops(t)
	one := hops[0].seal(t, r, testMessage)
	base := SignOptions{Domain: "x.example", Selector: "s", Key: hops[0].key, AuthServID: "mx.x.example", Now: testNow}
	for _, c := range []struct {
		name string
		msg  string
		cv   Status
	}{
		{"pass without chain", testMessage, StatusPass},
		{"none with a chain", one, StatusNone},
		{"bogus", one, "maybe"},
		{"none with a broken ARC field", "ARC-Seal: i=x\r\n" + testMessage, StatusNone},
	} {
		o := base
		o.ChainValidation = c.cv
		if _, err := Sign(strings.NewReader(c.msg), &o); err == nil {
			t.Errorf("%s: Sign accepted it", c.name)
		}
	}
	o := base
	o.ChainValidation = StatusFail
	set, err := Sign(strings.NewReader("ARC-Seal: i=x\r\n"+testMessage), &o)
	if err != nil || !strings.Contains(set.Seal, "cv=fail; d=x.example; i=1;") {
		t.Errorf("sealing a broken chain as failed: %v %v", set, err)
	}
	o = base
	o.HeaderFields = []string{"From", "Authentication-Results"}
	if _, err := Sign(strings.NewReader(testMessage), &o); err == nil {
		t.Error("Sign accepted Authentication-Results in h=")
	}
}

func TestSignRefusesTheFifty1stSet(t *testing.T) {
	h := hop{"lists.example", "arc1", testEd25519(t)}
	z := dnstest.Zone{}
	h.publish(t, z)
	r := dnstest.NewResolver(z)
	msg := testMessage
	for i := 0; i < MaxInstances; i++ {
		msg = h.seal(t, r, msg)
	}
	if res := verifyMsg(t, r, msg); res.Status != StatusPass || res.Instances != 50 {
		t.Fatalf("50 sets: %s (%s)", res.Status, res.Reason)
	}
	_, err := Sign(strings.NewReader(msg), &SignOptions{Domain: h.domain, Selector: h.selector, Key: h.key, AuthServID: "mx", ChainValidation: StatusPass})
	if err == nil || !strings.Contains(err.Error(), "50 sets") {
		t.Fatalf("51st set: %v", err)
	}
}

func TestAuthResultsFromAuthresFormat(t *testing.T) {
	field := authres.Format("mx.lists.example", []authres.Result{
		authres.SPF("pass", "alice@origin.example", "mail.origin.example"),
		authres.DKIM("fail", "origin.example", "s1", "rsa-sha256", "abcdefghij", "body hash did not verify; really"),
	})
	got, err := payloadResults(field, "mx.lists.example")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"spf=pass smtp.mailfrom=alice@origin.example smtp.helo=mail.origin.example",
		`dkim=fail reason="body hash did not verify; really" header.d=origin.example header.s=s1 header.a=rsa-sha256 header.b=abcdefgh`,
	}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	if _, err := payloadResults(field, "other.example"); err == nil {
		t.Error("a field of another authserv-id was taken")
	}
}

func TestCollectAuthResultsKeepsOnlyOurs(t *testing.T) {
	msg := "Authentication-Results: mx.example; arc=none\r\n" +
		"Authentication-Results: evil.example; spf=pass\r\n" +
		"Authentication-Results: MX.example;\r\n  spf=pass smtp.mailfrom=a@b.example (comment; with semicolon)\r\n" +
		"Authentication-Results: mx.example; none\r\n" +
		testMessage
	got, err := CollectAuthResults(strings.NewReader(msg), "mx.example")
	if err != nil {
		t.Fatal(err)
	}
	if want := "arc=none; spf=pass smtp.mailfrom=a@b.example (comment; with semicolon); none"; got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}

func TestDefaultHeaderFieldsSignDKIMSignatures(t *testing.T) {
	h := hop{"lists.example", "arc1", testEd25519(t)}
	msg := "DKIM-Signature: v=1; a=ed25519-sha256; d=origin.example; s=x; h=from; bh=AA==; b=AA==\r\n" + testMessage
	set, err := Sign(strings.NewReader(msg), &SignOptions{Domain: h.domain, Selector: h.selector, Key: h.key, AuthServID: "mx", Now: testNow})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(set.MessageSignature, "h=from:subject:date:to:message-id:mime-version:dkim-signature;") {
		t.Errorf("AMS: %s", set.MessageSignature)
	}
	for _, l := range strings.Split(strings.TrimSuffix(set.String(), "\r\n"), "\r\n") {
		if len(l) > 998 {
			t.Errorf("line of %d octets", len(l))
		}
	}
}
