package arc

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/posthorn/posthorn/internal/dns/dnstest"
	"github.com/posthorn/posthorn/internal/testutil"
)

// dkimpy (Debian python3-dkim) is an independent ARC implementation: it
// checks the chains we seal, and seals chains we check. Its ARC code knows
// rsa-sha256 only, so the hops here use RSA.
const dkimpyScript = `
import dkim, json, sys
mode, msgfile, arg = sys.argv[1], sys.argv[2], sys.argv[3]
msg = open(msgfile, 'rb').read()
if mode == 'verify':
    keys = json.load(open(arg))
    def dnsfunc(name, timeout=5):
        return keys.get(name.decode().rstrip('.'), '').encode()
    cv, results, comment = dkim.arc_verify(msg, dnsfunc=dnsfunc)
    print(json.dumps([cv.decode() if cv else None, comment]))
else:
    selector, domain, keyfile, srvid = arg.split(',')
    sigs = dkim.arc_sign(msg, selector.encode(), domain.encode(), open(keyfile, 'rb').read(),
        srvid.encode(), include_headers=[b'from', b'to', b'subject', b'date', b'message-id'])
    sys.stdout.buffer.write(b''.join(sigs))
`

func runDkimpy(t *testing.T, py string, args ...string) []byte {
	t.Helper()
	dir := t.TempDir()
	script := filepath.Join(dir, "arc.py")
	if err := os.WriteFile(script, []byte(dkimpyScript), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(py, append([]string{script}, args...)...).Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			t.Fatalf("dkimpy: %v\n%s", err, ee.Stderr)
		}
		t.Fatal(err)
	}
	return out
}

func tempFile(t *testing.T, name, data string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func dkimpyVerify(t *testing.T, py, msg string, z dnstest.Zone) (string, string) {
	t.Helper()
	keys := make(map[string]string)
	for name, rec := range z {
		keys[name] = rec.TXT[0]
	}
	kj, _ := json.Marshal(keys)
	out := runDkimpy(t, py, "verify", tempFile(t, "msg.eml", msg), tempFile(t, "keys.json", string(kj)))
	var res []*string
	if err := json.Unmarshal(out, &res); err != nil || len(res) != 2 {
		t.Fatalf("dkimpy output %q: %v", out, err)
	}
	cv := "<None>"
	if res[0] != nil {
		cv = *res[0]
	}
	return cv, *res[1]
}

// sealNow is hop.seal with the real clock: dkimpy checks t= against it.
func (h hop) sealNow(t *testing.T, r *dnstest.Resolver, msg string) string {
	t.Helper()
	v, err := Verify(context.Background(), r, strings.NewReader(msg), nil)
	if err != nil {
		t.Fatal(err)
	}
	set, err := Sign(strings.NewReader(msg), &SignOptions{
		Domain: h.domain, Selector: h.selector, Key: h.key,
		AuthServID:      "mx." + h.domain,
		AuthResults:     "spf=pass smtp.mailfrom=alice@origin.example",
		ChainValidation: v.Status,
	})
	if err != nil {
		t.Fatal(err)
	}
	return set.String() + msg
}

func TestDkimpyVerifiesOurChains(t *testing.T) {
	py := testutil.Python(t, "python3-dkim python3-authres", "dkim", "authres")
	hops := []hop{{"lists.example", "arc1", testRSA(t)}, {"relay.example", "arc2", testRSA(t)}}
	z := dnstest.Zone{}
	for _, h := range hops {
		h.publish(t, z)
	}
	r := dnstest.NewResolver(z)
	msg := testMessage
	for i, h := range hops {
		msg = h.sealNow(t, r, msg)
		if cv, why := dkimpyVerify(t, py, msg, z); cv != "pass" {
			t.Fatalf("hop %d: dkimpy says %s (%s)\n%s", i+1, cv, why, msg)
		}
	}
	broken := strings.Replace(msg, "Subject: ARC test", "Subject: changed", 1)
	if cv, _ := dkimpyVerify(t, py, broken, z); cv != "fail" {
		t.Errorf("dkimpy says %s of a changed message, want fail", cv)
	}
}

func TestWeVerifyDkimpyChains(t *testing.T) {
	py := testutil.Python(t, "python3-dkim python3-authres", "dkim", "authres")
	theirs := hop{"dkimpy.example", "py", testRSA(t)}
	ours := hop{"lists.example", "arc1", testRSA(t)}
	z := dnstest.Zone{}
	theirs.publish(t, z)
	ours.publish(t, z)
	r := dnstest.NewResolver(z)
	der := x509.MarshalPKCS1PrivateKey(testRSA(t))
	keyFile := tempFile(t, "key.pem", string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: der})))

	// dkimpy seals first (it takes its cv from the arc= result of its own
	// Authentication-Results), we seal on top, then dkimpy again.
	pySeal := func(msg, cv string) string {
		in := "Authentication-Results: mx.dkimpy.example; arc=" + cv + "; spf=pass smtp.mailfrom=alice@origin.example\r\n" + msg
		set := runDkimpy(t, py, "sign", tempFile(t, "msg.eml", in), "py,dkimpy.example,"+keyFile+",mx.dkimpy.example")
		if len(set) == 0 {
			t.Fatal("dkimpy added no ARC set")
		}
		return string(set) + msg
	}
	msg := pySeal(testMessage, "none")
	res, err := Verify(context.Background(), r, strings.NewReader(msg), nil)
	if err != nil || res.Status != StatusPass {
		t.Fatalf("dkimpy's first set: %s (%s)\n%s", res.Status, res.Reason, msg)
	}
	msg = ours.sealNow(t, r, msg)
	msg = pySeal(msg, "pass")
	res, err = Verify(context.Background(), r, strings.NewReader(msg), nil)
	if err != nil || res.Status != StatusPass || res.Instances != 3 {
		t.Fatalf("dkimpy, us, dkimpy: %s (%s), %d sets\n%s", res.Status, res.Reason, res.Instances, msg)
	}
	if cv, why := dkimpyVerify(t, py, msg, z); cv != "pass" {
		t.Errorf("dkimpy on the same chain: %s (%s)", cv, why)
	}
}
