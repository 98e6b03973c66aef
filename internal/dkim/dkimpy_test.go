package dkim

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/posthorn/posthorn/internal/testutil"
)

// dkimpyScript verifies every signature of a message with dkimpy, keys
// given as a JSON map name -> TXT (dkimpy's dnsfunc), or signs one.
const dkimpyScript = `
import dkim, json, sys
mode, msgfile, arg = sys.argv[1], sys.argv[2], sys.argv[3]
msg = open(msgfile, 'rb').read()
if mode == 'verify':
    keys = json.load(open(arg))
    def dnsfunc(name, timeout=5):
        return keys.get(name.decode().rstrip('.'), '').encode()
    d = dkim.DKIM(msg)
    n = len([h for h in d.headers if h[0].lower() == b'dkim-signature'])
    out = []
    for i in range(n):
        try:
            out.append(bool(d.verify(idx=i, dnsfunc=dnsfunc)))
        except dkim.DKIMException:
            out.append(False)
    print(json.dumps(out))
else:
    selector, domain, keyfile, algo = arg.split(',')
    sig = dkim.sign(msg, selector.encode(), domain.encode(), open(keyfile, 'rb').read(),
        canonicalize=(b'relaxed', b'simple'), include_headers=[b'from', b'to', b'subject'],
        signature_algorithm=algo.encode())
    sys.stdout.buffer.write(sig)
`

func runDkimpy(t *testing.T, py string, args ...string) []byte {
	t.Helper()
	script := filepath.Join(t.TempDir(), "d.py")
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

func writeTemp(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestDkimpyVerifiesOurSignatures: what posthorn signs (dual, relaxed/relaxed,
// From oversigned) verifies in dkimpy, with the keys as we would publish them.
func TestDkimpyVerifiesOurSignatures(t *testing.T) {
	py := testutil.Python(t, "python3-dkim", "dkim")
	ed, rs := newEd25519(t), newRSA(t, 2048)
	s, err := NewSigner([]SigningKey{
		{Domain: "example.com", Selector: "ed1", Key: ed},
		{Domain: "example.com", Selector: "rsa1", Key: rs},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kj, _ := json.Marshal(map[string]string{
		"ed1._domainkey.example.com":  keyTXT(t, ed),
		"rsa1._domainkey.example.com": keyTXT(t, rs),
	})
	keyFile := writeTemp(t, "keys.json", kj)

	for name, msg := range map[string]string{
		"plain":     testMessage,
		"mbox":      string(crlf(readConf(t, "dkimpy/message.mbox"))),
		"rfc6376":   string(readConf(t, "rfc/rfc6376-appA1-unsigned.eml")),
		"tampered":  testMessage,
		"emptybody": "From: a@example.com\r\nSubject: x\r\n\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			sig, err := s.Sign("example.com", strings.NewReader(msg))
			if err != nil {
				t.Fatal(err)
			}
			signed := string(sig) + msg
			want := "[true, true]"
			if name == "mbox" {
				// The mbox message carries kitterman.com's own signature,
				// whose key dkimpy cannot fetch here.
				want = "[true, true, false]"
			}
			if name == "tampered" {
				signed = strings.Replace(signed, "lunch", "dinner", 1)
				want = "[false, false]"
			}
			msgFile := writeTemp(t, "m.eml", []byte(signed))
			if got := strings.TrimSpace(string(runDkimpy(t, py, "verify", msgFile, keyFile))); got != want {
				t.Errorf("dkimpy says %s, want %s", got, want)
			}
		})
	}
}

// TestWeVerifyDkimpySignatures: what dkimpy signs (relaxed/simple, RSA and
// Ed25519) verifies here.
func TestWeVerifyDkimpySignatures(t *testing.T) {
	py := testutil.Python(t, "python3-dkim", "dkim")
	msgFile := writeTemp(t, "m.eml", []byte(testMessage))
	for _, c := range []struct{ key, pub, algo string }{
		{"dkimpy/test.private", "dkimpy/test.txt", "rsa-sha256"},
		{"dkimpy/ed25519test.key", "dkimpy/ed25519test.dns", "ed25519-sha256"},
	} {
		t.Run(c.key, func(t *testing.T) {
			sig := runDkimpy(t, py, "sign", msgFile, "sel,example.com,"+filepath.Join(conformance, c.key)+","+c.algo)
			z := txtZone("sel._domainkey.example.com", strings.TrimSpace(string(readConf(t, c.pub))))
			res := verify(t, z, append(crlf(sig), testMessage...), nil)
			wantStatuses(t, res, StatusPass)
		})
	}
}

// The dkimsign command-line tool (python3-dkim) signs; we verify.
func TestWeVerifyDkimsignCLI(t *testing.T) {
	dkimsign, err := exec.LookPath("dkimsign")
	if err != nil {
		t.Skip("dkimsign not installed: apt-get install python3-dkim")
	}
	for _, c := range []struct{ key, pub string }{
		{"dkimpy/test.private", "dkimpy/test.txt"},
		{"dkimpy/ed25519test.key", "dkimpy/ed25519test.dns"},
	} {
		t.Run(c.key, func(t *testing.T) {
			args := []string{"sel", "example.com", filepath.Join(conformance, c.key)}
			if strings.Contains(c.key, "ed25519") {
				args = append([]string{"--signalg", "ed25519-sha256"}, args...)
			}
			cmd := exec.Command(dkimsign, args...)
			cmd.Stdin = strings.NewReader(testMessage)
			signed, err := cmd.Output()
			if err != nil {
				t.Fatalf("dkimsign: %v", err)
			}
			z := txtZone("sel._domainkey.example.com", strings.TrimSpace(string(readConf(t, c.pub))))
			wantStatuses(t, verify(t, z, crlf(signed), nil), StatusPass)
			tampered := strings.Replace(string(crlf(signed)), "\r\n\r\n", "\r\n\r\nX", 1)
			wantStatuses(t, verify(t, z, []byte(tampered), nil), StatusFail)
		})
	}
}
